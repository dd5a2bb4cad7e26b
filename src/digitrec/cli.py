"""The `digitrec` command: a thin argparse layer over the library.

Each subcommand lives in its own module under `digitrec.commands` with `NAME`, `HELP`,
`add_arguments(parser)` and `run(args) -> int`. User errors (`DigitrecError`) become one line on
stderr and exit code 2, and so does a command that needs the `[train]` extra (torch) where only
the base install is (`TRAIN_EXTRA_HINT`); nothing else is caught, so bugs keep their traceback.

Only the chosen command's flags are declared (`build_parser(command)`): declaring `train`'s needs
the model registry, which imports torch, and `digitrec predict` must start without it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

import digitrec
from digitrec import __version__
from digitrec.commands import COMMANDS
from digitrec.errors import DigitrecError, needs_train_extra

TRAIN_EXTRA_HINT = 'this needs digitrec[train]: pip install "digitrec[train]"'


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (and still exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or with only the flags of command `only` (the others listed)."""
    parser = OneLineParser(prog="digitrec", description=digitrec.__doc__)
    parser.add_argument("--version", action="version", version=f"digitrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for module in COMMANDS:
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        if only is None or only == module.NAME:
            module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command named on the command line: the first word not a flag (the top-level parser
    has only flags without values, --help and --version)."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if any(module.NAME == word for module in COMMANDS) else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = chosen_command(argv)
    try:
        # no command named (--help, --version, a typo): the list of commands, no command's flags
        parser = build_parser(command or "")
    except ImportError as exc:
        if not needs_train_extra(exc):
            raise
        print(f"digitrec {command}: error: {TRAIN_EXTRA_HINT}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except DigitrecError as exc:
        print(f"digitrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        if not needs_train_extra(exc):
            raise
        print(f"digitrec {args.command}: error: {TRAIN_EXTRA_HINT}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"digitrec {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
