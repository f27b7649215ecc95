"""`python -m pipeline.cli`: the `erasure` command."""

from pipeline.cli import main

main()
