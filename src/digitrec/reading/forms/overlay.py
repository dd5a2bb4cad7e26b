"""A form page's readings drawn on it, for a person to check (the README's example, the web page's
picture in print).

Each field's box is drawn with its name and what was read above it: blue when the reading is
clean, orange when it needs review (the reason written under the box), red when nothing could be
read; inside it, each digit's box, green when confident and orange when not. Boxes are in the
straightened page's pixels (`read_page` turns a skewed page upright before cutting the fields):
draw on the page as read, or on the original when it was straight.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

from digitrec.reading.forms.results import FieldReading
from digitrec.reading.overlay import overlay_font

CLEAN, REVIEW, NOTHING = (31, 111, 235), (230, 110, 0), (200, 30, 30)
CONFIDENT = (0, 150, 0)


def field_colour(reading: FieldReading) -> tuple[int, int, int]:
    return NOTHING if reading.rejected else REVIEW if reading.needs_review else CLEAN


def draw_fields(page: Image.Image, readings: Sequence[FieldReading], threshold: float) -> Image.Image:
    """The page in RGB with every reading of it drawn (readings without a field box are skipped);
    `threshold` is the confidence below which a digit is drawn as unsure."""
    canvas = page.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    line = max(2, round(max(canvas.size) / 600))
    label = overlay_font(max(12, round(max(canvas.size) / 60)))
    note = overlay_font(max(10, round(max(canvas.size) / 85)))
    for reading in readings:
        if reading.box is None:
            continue
        x0, y0, x1, y1 = reading.box
        colour = field_colour(reading)
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=line)
        text = "nothing read" if reading.rejected else reading.text
        _text_above(draw, (x0, y0 - line), f"{reading.field}: {text}", label, colour)
        if reading.reason:
            draw.text((x0, y1 + line), reading.reason[:90], fill=colour, font=note)
        for digit in reading.digits:
            dx0, dy0, dx1, dy1 = digit["box"]
            sure = digit["digit"] is not None and digit["confidence"] >= threshold
            draw.rectangle([dx0, dy0, dx1 - 1, dy1 - 1], outline=CONFIDENT if sure else REVIEW, width=max(1, line // 2))
    return canvas


def _text_above(draw: ImageDraw.ImageDraw, at: tuple[int, int], text: str, face, colour) -> None:
    """`text` on a band of its colour whose bottom-left corner is `at`."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    x, y = at[0], at[1] - (bottom - top) - 6
    draw.rectangle([x, y, x + right - left + 8, at[1]], fill=colour)
    draw.text((x + 4 - left, y + 3 - top), text, fill=(255, 255, 255), font=face)
