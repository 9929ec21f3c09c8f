"""`python -m services.cli`: the `roundtable` command, for processes started without the entry point."""

from services.cli import main

main()
