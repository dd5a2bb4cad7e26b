"""Make the form example in this folder from MNIST *training* digits (digitrec.reading.forms.synth).

    python examples/make_forms.py          # rewrites form_page.png, form_template.json, ../docs/form_overlay.png

form_page.png: a scanned form page (1400x990 pixels, about 170 dpi) with three fields: an account
number in a comb of 7 boxes (one left empty), an amount written on a printed line, and a code on
plain paper. form_template.json: where those fields are, and how many digits each should hold.
docs/form_overlay.png: the fields as `digitrec read --template` reads them, drawn on the page.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digitrec.reading import synth
from digitrec.reading.forms import synth as fs
from digitrec.reading.forms.overlay import draw_fields
from digitrec.reading.forms.page import read_page
from digitrec.reading.forms.template import template_from_dict
from digitrec.reading.overlay import overlay_font
from digitrec.reading.recognize import Recognizer
from digitrec.training.data import load_mnist

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"
PAGE = (1400, 990)  # width, height
PAPER = 250
MARGIN = 24  # paper around each field inside its template box
SEED = 15


def digits_for(text: str, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """One training image per character of `text`, each a random one of that digit."""
    return [images[rng.choice(np.nonzero(labels == int(c))[0])] for c in text]


def paste(page: np.ndarray, image: np.ndarray, x: int, y: int) -> list[int]:
    """Print a field on the page (the darker of the two wins); its template box [x, y, w, h]."""
    region = page[y : y + image.shape[0], x : x + image.shape[1]]
    np.minimum(region, image, out=region)
    return [x - MARGIN, y - MARGIN, image.shape[1] + 2 * MARGIN, image.shape[0] + 2 * MARGIN]


def main() -> None:
    data = load_mnist()
    images, labels = data.train_images.numpy(), data.train_labels.numpy()
    rng = np.random.default_rng(SEED)
    style = synth.clean_style("scan")
    account, amount, code = "407152", "2380", "91736"
    comb = fs.render_comb(
        digits_for(account, images, labels, rng),
        [int(c) for c in account],
        rng,
        n_boxes=7,
        cross_probability=0.2,
        max_skew=0,
        style=style,
    )
    ruled = fs.render_ruled(
        digits_for(amount, images, labels, rng), [int(c) for c in amount], rng, max_skew=0, style=style
    )
    plain = fs.render_ruled(digits_for(code, images, labels, rng), [int(c) for c in code], rng, max_skew=0, style=style)
    page = np.full(PAGE[::-1], PAPER, np.uint8)
    boxes = {
        "account": paste(page, comb.image, 330, 170),
        "amount": paste(page, ruled.image, 330, 420),
        "code": paste(page, plain.unprinted, 330, 700),
    }
    picture = Image.fromarray(page)
    draw = ImageDraw.Draw(picture)
    draw.text((60, 50), "Claim form", fill=20, font=overlay_font(44))
    for box, label in zip(boxes.values(), ("Account no.", "Amount", "Code")):
        draw.text((60, box[1] + box[3] // 2 - 16), label, fill=40, font=overlay_font(30))
    picture.save(HERE / "form_page.png", optimize=True)
    lengths = {"account": len(account), "amount": None, "code": len(code)}
    template = {
        "units": "px",
        "page": list(PAGE),
        "fields": [
            {"name": name, "box": box, **({"length": lengths[name]} if lengths[name] else {})}
            for name, box in boxes.items()
        ],
    }
    lines = ",\n".join(f"    {json.dumps(f)}" for f in template["fields"])  # one field a line: easy to edit
    head = f'"units": "px",\n  "page": {json.dumps(template["page"])}'
    (HERE / "form_template.json").write_text(f'{{\n  {head},\n  "fields": [\n{lines}\n  ]\n}}\n')

    recognizer = Recognizer.load()
    readings = read_page(recognizer, HERE / "form_page.png", template_from_dict(template), name="form_page.png")
    for reading in readings:
        print(f"{reading.field}: read {reading.text!r} ({reading.layout}), review: {reading.reason}")
    overlay = draw_fields(picture, readings, recognizer.reject_threshold)
    overlay.quantize(colors=32).save(DOCS / "form_overlay.png", optimize=True)
    for path in (HERE / "form_page.png", HERE / "form_template.json", DOCS / "form_overlay.png"):
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
