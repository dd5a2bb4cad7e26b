"""The fields of form pages, many files at once: the batch task behind `digitrec read --template`.

`FormTask` plugs into `digitrec.reading.batch.run` like `ReadTask` (the same models, loaded once
per process) and answers each input, an image, a PDF or a multi-page TIFF, with every field of
every page (`Outcome.fields`, numbered by page from 1). What goes wrong with one page (it cannot be
rendered, a field's box is not on it) is one line in `Outcome.error`; the pages and fields read
before and beside it are kept. With `overlay`, each page is drawn with its fields
(`digitrec.reading.forms.overlay`), straightened as it was read so that the boxes fit it: page 1
where `ReadTask` puts a number's overlay, page N > 1 beside it as NAME.pageN.png.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from digitrec.errors import ImageError
from digitrec.reading import preprocess as pp
from digitrec.reading.batch import Outcome, ReadTask, Source, load_bytes, save_atomic
from digitrec.reading.forms.overlay import draw_fields
from digitrec.reading.forms.page import deskew, read_page
from digitrec.reading.forms.results import FieldReading
from digitrec.reading.forms.template import Template
from digitrec.reading.pages import DEFAULT_DPI, iter_pages
from digitrec.reading.recognize import Recognizer


@dataclass(frozen=True)
class FormTask(ReadTask):
    """Every field of `template` on each page of each input; PDFs rasterised at `dpi`; with
    `overlay`, each page drawn with its readings (see the module's docstring for where)."""

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
                readings += self.read_one(recognizer, source, image, number, off_page)
                problems += [f"page {number}: {problem}" for problem in off_page]
                done = number
        except ImageError as exc:  # this page cannot be rendered or decoded: the pages before it are kept
            problems.append(f"page {done + 1}: {exc}")
        return Outcome(source.path, error="; ".join(problems) or None, fields=tuple(readings))

    def read_one(
        self, recognizer: Recognizer, source: Source, image: Image.Image, number: int, problems: list[str]
    ) -> list[FieldReading]:
        """One page's fields, and its overlay when asked for."""
        if not self.overlay:
            return read_page(recognizer, image, self.template, name=source.path, page=number, problems=problems)
        gray, _ = deskew(np.clip(pp.to_gray(image) * 255 + 0.5, 0, 255).astype(np.uint8))  # as read_page does
        readings = read_page(
            recognizer, gray, self.template, name=source.path, page=number, straighten=False, problems=problems
        )
        drawn = draw_fields(Image.fromarray(gray), readings, recognizer.reject_threshold)
        save_atomic(drawn, self.page_overlay_path(source, number))
        return readings

    def page_overlay_path(self, source: Source, number: int) -> Path:
        path = self.overlay_path(source)
        return path if number == 1 else path.with_name(f"{path.stem}.page{number}{path.suffix}")
