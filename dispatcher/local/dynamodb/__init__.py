"""DynamoDB on this machine: moto's server in a process of its own (``server``,
``process``), the tables from template.yaml (``tables``), the stream (``stream``), three
adapters onto moto's internals (``moto_transactions``, ``moto_expressions``,
``moto_retention``, pinned by ``moto_pin``), the rules AWS enforces that moto does not
(``rules``), and saving the tables between runs (``persistence``)."""
