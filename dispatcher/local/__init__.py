"""Running the dispatcher on one machine: tables from the template, the sandbox, the stream."""
