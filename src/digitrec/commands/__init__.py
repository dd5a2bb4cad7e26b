"""CLI subcommands, one module each; `COMMANDS` is the order shown in `digitrec --help`."""

from . import calibrate, evaluate, export, serve, train

COMMANDS = [train, evaluate, calibrate, export, serve]
