"""`python -m replayer`: the same as the `replayer` command."""

from .cli import main

main()
