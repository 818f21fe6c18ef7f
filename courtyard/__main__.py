"""``python -m courtyard``: the same as the ``courtyard`` command."""

from courtyard.cli import main

main()
