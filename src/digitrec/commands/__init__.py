"""CLI subcommands, one module each; `COMMANDS` is the order shown in `digitrec --help`."""

from . import evaluate, train

COMMANDS = [train, evaluate]
