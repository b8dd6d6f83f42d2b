"""`python -m ckptvc`: the command line."""

from ckptvc.cli.main import run

run()
