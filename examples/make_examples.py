"""Make the example pictures in this folder from MNIST *test* digits (digitrec.synth).

    python examples/make_examples.py          # rewrites the pictures next to this file

digit_7_photo.jpg, digit_2_chalk.jpg, digit_4_scan.png: one handwritten digit each, photographed
under uneven light, chalk on a board, scanned. number_photo.jpg and number_scan.png: numbers
written on a line (in the scan, the 3 and the 1 touch). smudge.png: not a digit (a filled blob).
number_scan_overlay.png: what `digitrec read --overlay` draws for number_scan.png.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digitrec.reading import synth
from digitrec.reading.recognize import Recognizer
from digitrec.training.data import load_mnist

HERE = Path(__file__).resolve().parent


def first_of(labels: np.ndarray, digit: int, skip: int = 0) -> int:
    return int(np.nonzero(labels == digit)[0][skip])


def main() -> None:
    data = load_mnist()
    images, labels = data.test_images.numpy(), data.test_labels.numpy()
    rng = np.random.default_rng(2024)
    photo = synth.Style(
        "photo",
        paper=(0.9, 0.88, 0.82),
        ink=(0.08, 0.1, 0.35),
        ink_opacity=0.95,
        gradient=0.35,
        gradient_angle=0.6,
        vignette=0.25,
        shadow=0.25,
        texture=0.015,
        noise=0.015,
        blur=1.0,
        rotation=-4,
        pen_sharpness=0.8,
        jpeg_quality=85,
    )
    synth.render_digit(images[first_of(labels, 7)], rng, photo, canvas=(360, 300)).save(
        HERE / "digit_7_photo.jpg", quality=85
    )
    chalk = synth.random_style(np.random.default_rng(7), "chalk")
    synth.render_digit(images[first_of(labels, 2)], rng, chalk, canvas=(300, 300)).save(
        HERE / "digit_2_chalk.jpg", quality=85
    )
    scan = synth.clean_style("scan")
    synth.render_digit(images[first_of(labels, 4)], rng, scan, canvas=(240, 240)).convert("L").save(
        HERE / "digit_4_scan.png", optimize=True
    )
    smudge = Image.new("L", (240, 240), 235)
    ImageDraw.Draw(smudge).ellipse([70, 60, 170, 180], fill=60)
    smudge.save(HERE / "smudge.png", optimize=True)

    text = "4096371"
    digits = [images[first_of(labels, int(c), k)] for k, c in enumerate(text)]
    number = synth.render_number(digits, [int(c) for c in text], rng, photo, height=70, touch_probability=0)
    number.image.save(HERE / "number_photo.jpg", quality=85)
    text = "20250317"
    digits = [images[first_of(labels, int(c), 5 + k)] for k, c in enumerate(text)]
    number = synth.render_number(digits, [int(c) for c in text], rng, scan, height=56, touch_probability=0.3)
    number.image.convert("L").save(HERE / "number_scan.png", optimize=True)

    recognizer = Recognizer.load()
    reading = recognizer.read(HERE / "number_scan.png", name="number_scan.png")
    overlay = recognizer.draw_overlay(HERE / "number_scan.png", reading)
    overlay.quantize(colors=32).save(HERE / "number_scan_overlay.png", optimize=True)
    for path in sorted(HERE.glob("*.*g")):
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
