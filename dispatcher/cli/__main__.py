"""``python -m dispatcher.cli``, as the end-to-end tests run it."""

from dispatcher.cli import main

main()
