"""How `predict` and `read` answer for many inputs: a table, JSON lines or CSV, on stdout or in one
file written all or nothing (`--output`), a progress bar on a terminal, and each bad file as one
line on stderr (exit code 2 once every other file is done). The work itself is library code:
`digitrec.reading.batch`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO

from tqdm import tqdm

from digitrec.atomic import atomic_write
from digitrec.commands.arguments import require_at_least
from digitrec.errors import ConfigError
from digitrec.reading.batch import Outcome, Source, Task, expand_inputs, run


@dataclass(frozen=True)
class Layout:
    """How one command prints an answer: a table row under `header` (predict prints the header
    only above answers, read always), or a CSV row under `csv_columns`. Without a `row`, JSON
    lines are the default (a form's fields: a table of them would hide their boxes and reasons)."""

    header: str
    header_always: bool
    row: Callable[[Any], str] | None
    csv_columns: Sequence[str]
    csv_row: Callable[[Any], list[object]]


def run_batch(args: argparse.Namespace, task: Task, layout: Layout) -> int:
    """Answer every input of `args.images` (files, directories, -) with `task`; 2 if any failed."""
    require_at_least("--jobs", args.jobs, 1)
    if args.output and Path(args.output).is_dir():
        raise ConfigError(f"--output {args.output}: is a directory; name the file to write")
    sources = list(expand_inputs(args.images))  # paths only: 10,000 of them are a megabyte
    failed = 0

    def emit(out: TextIO) -> None:
        nonlocal failed
        failed = _emit(out, args, task, sources, layout)

    try:
        if args.output:
            atomic_write(args.output, lambda handle: _as_text(handle, emit))
        else:
            emit(sys.stdout)
    except BrokenPipeError:  # `digitrec read DIR | head`: the reader has all it wants
        with contextlib.suppress(OSError, ValueError):  # no more writes to the closed pipe, even at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a process ended by SIGPIPE
    return 2 if failed else 0


def _as_text(handle: IO[bytes], emit: Callable[[TextIO], None]) -> None:
    text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
    try:
        emit(text)
        text.flush()
    finally:
        text.detach()  # atomic_write syncs and closes the file itself


def _emit(out: TextIO, args: argparse.Namespace, task: Task, sources: list[Source], layout: Layout) -> int:
    printer = _Printer(out, "csv" if args.csv else "json" if args.json or layout.row is None else "table", layout)
    on_terminal = sys.stderr is not None and sys.stderr.isatty()
    failed = 0
    with tqdm(total=len(sources), unit="file", file=sys.stderr, disable=len(sources) < 2 or not on_terminal) as bar:
        for outcomes in run(task, sources, args.jobs):
            # lines written while the bar is cleared, so that the two don't overwrite each other
            with contextlib.nullcontext() if bar.disable else bar.external_write_mode(file=sys.stderr):
                failed += printer.write(outcomes, args.command)
            bar.update(len(outcomes))
    return failed


class _Printer:
    def __init__(self, out: TextIO, form: str, layout: Layout) -> None:
        self.out, self.form, self.layout = out, form, layout
        self.csv = csv.writer(out, lineterminator="\n")
        self.headed = form == "json"

    def write(self, outcomes: list[Outcome], command: str) -> int:
        """One chunk's answers, the first chunk's under the header (written once the model has
        loaded); its errors on stderr. How many inputs failed, wholly or in part (a form page)."""
        if not self.headed and (self.form == "csv" or self.layout.header_always or any(o.answers for o in outcomes)):
            self.headed = True
            if self.form == "csv":
                self.csv.writerow(self.layout.csv_columns)
            else:
                self.out.write(self.layout.header + "\n")
        failed = 0
        for o in outcomes:
            for answer in o.answers:
                if self.form == "json":
                    self.out.write(json.dumps(answer.to_dict()) + "\n")
                elif self.form == "csv":
                    self.csv.writerow([_cell(value) for value in self.layout.csv_row(answer)])
                elif self.layout.row is not None:
                    self.out.write(self.layout.row(answer) + "\n")
            if o.error is not None:
                print(f"digitrec {command}: {o.file}: {o.error}", file=sys.stderr)
                failed += 1
        self.out.flush()  # a reader of the pipe sees each chunk as it is done
        return failed


def _cell(value: object) -> object:
    """CSV cells as JSON spells them: true/false, and an empty cell for null."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value
