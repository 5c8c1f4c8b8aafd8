"""``python -m dispatcher.ops.cli``, as the end-to-end tests run it."""

from dispatcher.ops.cli import main

main()
