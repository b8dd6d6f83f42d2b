"""`python -m ckptvc`: the command line."""

from ckptvc.cli.main import main

main()
