"""The fields of form pages, many files at once: the batch task behind `digitrec read --template`.

`FormTask` plugs into `digitrec.reading.batch.run` like `ReadTask` (the same models, loaded once
per process) and answers each input, an image, a PDF or a multi-page TIFF, with every field of
every page (`Outcome.fields`, numbered by page from 1). What goes wrong with one page (it cannot be
rendered, a field's box is not on it) is one line in `Outcome.error`; the pages and fields read
before and beside it are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from digitrec.errors import ImageError
from digitrec.reading.batch import Outcome, ReadTask, Source, load_bytes
from digitrec.reading.forms.page import read_page
from digitrec.reading.forms.results import FieldReading
from digitrec.reading.forms.template import Template
from digitrec.reading.pages import DEFAULT_DPI, iter_pages
from digitrec.reading.recognize import Recognizer


@dataclass(frozen=True)
class FormTask(ReadTask):
    """Every field of `template` on each page of each input; PDFs rasterised at `dpi`. (No
    overlay: `digitrec.reading.forms.overlay.draw_fields` draws a page's readings.)"""

    template: Template = field(default_factory=lambda: Template(fields=()))
    dpi: int = DEFAULT_DPI
    chunk_size: int = 1  # a page takes a second or two, a document many: one input at a time

    def answer(self, recognizer: Recognizer, sources: list[Source]) -> list[Outcome]:
        return [self.read_document(recognizer, source) for source in sources]

    def read_document(self, recognizer: Recognizer, source: Source) -> Outcome:
        try:
            pages = iter_pages(load_bytes(source, pages=True), dpi=self.dpi)  # a bad document: refused at once
        except ImageError as exc:
            return Outcome(source.path, error=str(exc))
        readings: list[FieldReading] = []
        problems: list[str] = []
        done = 0  # pages read
        try:
            for number, image in pages:
                off_page: list[str] = []
                readings += read_page(
                    recognizer, image, self.template, name=source.path, page=number, problems=off_page
                )
                problems += [f"page {number}: {problem}" for problem in off_page]
                done = number
        except ImageError as exc:  # this page cannot be rendered or decoded: the pages before it are kept
            problems.append(f"page {done + 1}: {exc}")
        return Outcome(source.path, error="; ".join(problems) or None, fields=tuple(readings))
