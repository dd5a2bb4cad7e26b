"""CLI subcommands, one module each; `COMMANDS` is the order shown in `digitrec --help`."""

from digitrec.commands import calibrate, compare, evaluate, export, predict, read, serve, train

COMMANDS = [train, evaluate, compare, calibrate, export, predict, read, serve]
