"""The command line: thin click commands over ckptvc.Repo."""
