"""`python -m jingzhun` runs the command line."""

from jingzhun.cli import main

main()
