"""`python -m replayer.cli`: the same as the `replayer` command."""

from . import main

main()
