"""CLI subcommands, one module each (`*_cmd.py` with a `register(subparsers)` function).

`monitor.cli.COMMANDS` lists them: a new command is one module here plus one line there.
"""
