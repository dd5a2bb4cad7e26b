"""Recognise one digit per image (`predict`) or a whole number on a line (`read`).

Both go through `digitrec.reading.preprocess` (the one path from an image to the model's input)
and a backend (`digitrec.runtime.backends`: ONNX Runtime by default, which needs no torch, or eager
torch), and turn logits into calibrated probabilities: softmax(logits / T) with the model's
temperature T (1.0 until calibrated). Numbers are segmented by `digitrec.reading.segment`, scored with a segment verifier
(`digitrec.reading.verifier`, the shipped one unless another is given). The results are the types
of `digitrec.reading.results`, importable from here too.

Reject instead of guessing: a picture is rejected, with a reason, when there is no ink, when the
ink is not shaped like one digit (runs off the image, too wide, several marks side by side), when
the mark classifier (`digitrec.reading.marks`) says it is not a digit at all (a blob, a scribble,
a letter...), or when the model's confidence is below the reject threshold. The threshold is stored in
the checkpoint by calibration (`meta["calibration"]["reject_threshold"]`, chosen with
`digitrec.evaluation.calibration.choose_reject_threshold` on the validation split); without one,
`DEFAULT_REJECT_THRESHOLD`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from scipy import ndimage

from digitrec.probability import softmax
from digitrec.reading import preprocess as pp
from digitrec.reading.marks import DEFAULT_DIGIT_THRESHOLD, EXPECTED_DIGIT_THRESHOLD, MarkOpinions, mark_reasons
from digitrec.reading.overlay import draw_reading
from digitrec.reading.pieces import Piece, box_union
from digitrec.reading.results import Prediction, Prepared, Reading
from digitrec.reading.search import read_line
from digitrec.reading.verifier import Verifier, load_verifier
from digitrec.runtime.loading import DEFAULT_BACKEND, InferenceModel, load_model, model_from_checkpoint
from digitrec.weights import CHECKER_PATH, DEFAULT_MODEL_PATH, MARKS_PATH, READER_PATH, onnx_twin

if TYPE_CHECKING:
    from digitrec.models.checkpoint import Checkpoint

# The reject threshold when the checkpoint has none (not calibrated): choose_reject_threshold(p, y)
# with the defaults below, on the 5000-image validation split, for the shipped fast_bn_cnn
# (weights fa756cf3b64d) at temperature 1, gave 0.583: 99.0% of validation digits accepted, 99.82%
# of those right (all accepted: 99.50%). A calibrated checkpoint carries its own threshold.
DEFAULT_REJECT_THRESHOLD = 0.58

# Input checks for one digit (the ink's bounding box at working resolution).
MAX_ASPECT = 2.2  # width / height; MNIST's widest digit is 2.0, 99.9% are below 1.7
# Without a mark classifier only: a box this full of ink is a blob. A marker's thick strokes fill
# their box too, which is why the mark classifier replaces this rule when it is installed.
BLOB_DENSITY = 0.75  # ink fraction of the box; MNIST 99.9% below 0.69, a filled disk is 0.79
BLOB_MIN_ASPECT = 0.4  # ... for boxes wider than this (a straight "1" fills its thin box)
OTHER_MARK_HEIGHT = 0.5  # a separate mark this tall (fraction of the digit) means several digits
OTHER_MARK_AREA = 0.1  # ... or this much ink (fraction of the digit's)
SIDE_BY_SIDE_HEIGHT = 0.75  # two pieces this tall (fraction of the digit) ...
SIDE_BY_SIDE_OVERLAP = 0.3  # ... overlapping horizontally less than this are two digits


def check_single_digit(digit: pp.DigitImage, blob_rule: bool = True) -> str | None:
    """Why this ink is not one written digit, or None when it may be. `blob_rule` False leaves
    blobs to the mark classifier (the filled-area rule also refuses felt-tip digits)."""
    ink, chosen, rest = digit.ink, digit.chosen, digit.rest
    box = box_union([p.box for p in chosen])
    w, h = box[2] - box[0], box[3] - box[1]
    height, width = ink.mask.shape
    sides = (box[0] == 0) + (box[1] == 0) + (box[2] >= width) + (box[3] >= height)
    if sides >= 3:
        return f"ink runs off the image on {sides} sides; not a single written digit"
    area = sum(p.area for p in chosen)
    for p in rest:
        if p.height >= OTHER_MARK_HEIGHT * h or p.area >= OTHER_MARK_AREA * area:
            return "more than one digit or mark (use `digitrec read` for a number)"
    tall = sorted((p for p in chosen if p.height >= SIDE_BY_SIDE_HEIGHT * h), key=lambda p: p.box[0])
    for a, b in zip(tall, tall[1:]):
        overlap = max(0, min(a.box[2], b.box[2]) - max(a.box[0], b.box[0]))
        if overlap < SIDE_BY_SIDE_OVERLAP * min(a.width, b.width):
            return "more than one digit or mark (use `digitrec read` for a number)"
    if w > MAX_ASPECT * h:
        return "too wide to be a digit"
    if blob_rule and w > BLOB_MIN_ASPECT * h and area / (w * h) > BLOB_DENSITY:
        return "a filled blob or smudge, not a written digit"
    if marks_inside_loop(digit.labels, chosen):
        return "marks inside a closed loop: a drawing, not a digit"
    return None


def marks_inside_loop(labels: np.ndarray, chosen: list[Piece]) -> bool:
    """Does a piece lie inside a loop of the largest piece (the eyes of a face)? A digit's loops
    (0, 6, 8, 9) are empty."""
    if len(chosen) < 2:
        return False
    main = max(chosen, key=lambda p: p.area)
    x0, y0, x1, y1 = main.box
    inside = ndimage.binary_fill_holes(labels[y0:y1, x0:x1] == main.label) & (labels[y0:y1, x0:x1] != main.label)
    for p in chosen:
        if p is not main:
            own = labels[y0:y1, x0:x1] == p.label
            if own.sum() >= 0.8 * p.area and (own & inside).sum() >= 0.8 * p.area:
                return True
    return False


def _installed(path: Path) -> Path | None:
    """A shipped checkpoint when it, or its ONNX twin, is installed."""
    twin = onnx_twin(path)
    return path if path.is_file() or (twin is not None and twin.is_file()) else None


class Recognizer:
    """A model on a backend: predict digits and read numbers from images."""

    def __init__(
        self,
        model: InferenceModel | Checkpoint,
        backend: str = DEFAULT_BACKEND,
        reader: InferenceModel | Checkpoint | str | None = None,
        device: str = "cpu",
        verifier: Verifier | None = None,
        checker: InferenceModel | Checkpoint | str | None = None,
        marks: InferenceModel | Checkpoint | str | bool | None = None,
    ) -> None:
        """`model`: a loaded model (`load_model`), or a torch checkpoint to run on `backend`."""
        self.model = model if isinstance(model, InferenceModel) else model_from_checkpoint(model, backend)
        self.backend = self.model.backend
        self.backend_name = self.backend.name
        self.normalization = self.model.normalization
        self.temperature = self.model.temperature
        stored = self.model.reject_threshold
        self.reject_threshold = float(stored) if stored is not None else DEFAULT_REJECT_THRESHOLD
        self._reader_source = reader  # a model, checkpoint or path; None: this model reads numbers too
        # the one-digit checker: a model, checkpoint or path; None: the shipped one, when installed
        self._checker_source = checker if checker is not None else _installed(CHECKER_PATH)
        # the mark classifier: a model, checkpoint or path; None: the shipped one, when installed;
        # False: none (the filled-area blob rule instead)
        self._marks_source: InferenceModel | Checkpoint | str | Path | None = (
            None if marks is False else _installed(MARKS_PATH) if marks is None or marks is True else marks
        )
        self._companions: dict[str, Recognizer | None] = {}  # reader, checker: loaded on first use
        self._lock = threading.Lock()  # the server reads from several threads
        self._device = device
        # The segment verifier reading numbers scores with: the shipped one unless given.
        self.verifier = verifier if verifier is not None else load_verifier()

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The torch checkpoint the model was loaded from; None for an ONNX model."""
        return self.model.checkpoint

    @classmethod
    def load(
        cls,
        path: str | None = None,
        backend: str = DEFAULT_BACKEND,
        device: str = "cpu",
        reader: str | None = None,
        verifier: Verifier | None = None,
        checker: str | None = None,
        marks: str | bool | None = None,
    ) -> Recognizer:
        """`path` None loads the shipped model, which reads numbers with the shipped reading
        model; `reader` names a reading model explicitly (a custom `path` alone reads with itself).
        `verifier` and `checker` None read numbers with the shipped segment verifier and one-digit
        checker (a set made by `digitrec build-weights` is used by naming all three). `marks` None
        uses the shipped mark classifier, a path another, False none (the blob rule instead)."""
        shipped = path is None or Path(path).resolve() == DEFAULT_MODEL_PATH.resolve()
        if reader is None and shipped and _installed(READER_PATH):
            reader = str(READER_PATH)
        return cls(
            load_model(path, backend, device),
            backend=backend,
            reader=reader,
            device=device,
            verifier=verifier,
            checker=checker,
            marks=marks,
        )

    def _companion(self, role: str, source: InferenceModel | Checkpoint | str | Path | None) -> Recognizer | None:
        """A second model for reading numbers, loaded once on first use (a process that only
        predicts never pays for it), on this recognizer's backend."""
        with self._lock:
            if role not in self._companions:
                model = (
                    load_model(source, self.backend_name, self._device) if isinstance(source, str | Path) else source
                )
                # The companions share this recognizer's verifier rather than reading the file again.
                self._companions[role] = (
                    Recognizer(model, self.backend_name, device=self._device, verifier=self.verifier)
                    if model is not None
                    else None
                )
            return self._companions[role]

    @property
    def reader(self) -> Recognizer:
        """The recogniser of the candidate digits cut out of a number: the reading model, or this one."""
        return self._companion("reader", self._reader_source) or self

    @property
    def pen_model(self) -> Recognizer | None:
        """Averaged in with the reading model on a number's candidates whose strokes were a marker's
        (`segment.candidate_probabilities`): this recogniser's own model (the shipped one is trained
        with the pen augmentations); None when it is the reading model."""
        reader = self.reader
        return None if reader is self else self

    @property
    def checker(self) -> Recognizer | None:
        """The segmenter's one-digit checker (the same for every model); None when not installed."""
        return self._companion("checker", self._checker_source)

    @property
    def marks(self) -> Recognizer | None:
        """The mark classifier (is this a digit at all?), the same for every model; None when off."""
        return self._companion("marks", self._marks_source)

    def mark_opinions(self, digits28: Sequence[np.ndarray], most: float | None = None) -> MarkOpinions:
        """What the mark classifier says of each 28x28 image: why it is not a digit (or None), and
        its probability of "digit" (no reasons and no probabilities without a classifier). `most`:
        a threshold on p(digit) to use when lower than the classifier's own (where a digit is
        expected, as in a form's box, the classifier must be surer)."""
        marks = self.marks
        if marks is None or not len(digits28):
            return MarkOpinions([None] * len(digits28))
        stored = marks.model.reject_threshold  # the classifier's: on its "digit" class
        threshold = float(stored if stored is not None else DEFAULT_DIGIT_THRESHOLD)
        probabilities = marks.probabilities(digits28)
        return MarkOpinions(
            mark_reasons(probabilities, threshold if most is None else min(threshold, most)),
            tuple(float(p) for p in probabilities[:, 0]),
        )

    def not_digit_reasons(self, digits28: Sequence[np.ndarray], most: float | None = None) -> list[str | None]:
        """Per 28x28 image, why the mark classifier says it is not a digit, or None (`mark_opinions`)."""
        return self.mark_opinions(digits28, most).reasons

    # --- the model -------------------------------------------------------------------------------

    def logits(self, digits28: Sequence[np.ndarray]) -> np.ndarray:
        """(B, 28, 28) float 0-1 digits -> (B, 10) logits divided by the temperature, one model call."""
        if len(digits28) == 0:
            return np.zeros((0, 10))
        x = pp.model_input(list(digits28), self.normalization)  # (B, 1, 28, 28)
        return np.asarray(self.backend.logits(x), dtype=np.float64) / self.temperature

    def probabilities(self, digits28: Sequence[np.ndarray]) -> np.ndarray:
        """(B, 28, 28) float 0-1 digits -> (B, 10) calibrated probabilities, one model call."""
        return softmax(self.logits(digits28))

    # --- one digit per image ---------------------------------------------------------------------

    def prepare(self, image: pp.ImageInput, name: str | None = None, fast: bool = True) -> Prepared:
        """Preprocess one image (raises NotAnImageError / BadImageError for unusable input).
        `fast` False: the reference path (`digitrec.reading.preprocess.prepare_digit`)."""
        digit = pp.prepare_digit(image, fast=fast)
        if digit.digit28 is None or digit.input_box is None:  # the box is None only when there is no digit
            return Prepared(name=name, digit28=None, reason=digit.reason or "no ink found")
        box = digit.input_box
        reason = check_single_digit(digit, blob_rule=self._marks_source is None)  # no need to load it here
        if reason:
            return Prepared(name=name, digit28=None, reason=reason, box=box)
        return Prepared(name=name, digit28=digit.digit28, box=box, written28=digit.written28)

    def classify(self, prepared: Sequence[Prepared], top_k: int = 3) -> list[Prediction]:
        """Prepared images -> predictions; every usable digit goes through the model in one call."""
        top_k = max(1, min(10, int(top_k)))
        usable = [(p, p.digit28) for p in prepared if p.digit28 is not None]
        probs = self.probabilities([digit28 for _, digit28 in usable])
        by_id = {id(p): row for (p, _), row in zip(usable, probs)}
        as_written = [d if p.written28 is None else p.written28 for p, d in usable]  # the mark classifier's view
        not_digit = dict(zip((id(p) for p, _ in usable), self.not_digit_reasons(as_written)))
        out = []
        for p in prepared:
            reason = (p.reason or "no ink found") if p.digit28 is None else not_digit[id(p)]
            if reason is not None:
                out.append(Prediction(file=p.name, digit=None, confidence=0.0, rejected=True, reason=reason))
                continue
            row = by_id[id(p)]
            ranked = np.argsort(-row, kind="stable")[:top_k]
            top = [{"digit": int(d), "probability": float(row[d])} for d in ranked]
            confidence = float(row[ranked[0]])
            if confidence < self.reject_threshold:
                out.append(
                    Prediction(
                        file=p.name,
                        digit=None,
                        confidence=confidence,
                        top_k=top,
                        rejected=True,
                        reason="low confidence",
                    )
                )
            else:
                out.append(Prediction(file=p.name, digit=int(ranked[0]), confidence=confidence, top_k=top))
        return out

    def predict(self, image: pp.ImageInput, top_k: int = 3, name: str | None = None) -> Prediction:
        return self.classify([self.prepare(image, name)], top_k)[0]

    def predict_many(self, images: list, top_k: int = 3, names: Sequence[str | None] | None = None) -> list[Prediction]:
        """Several images, batched through the model in one call. An unusable image raises (use
        `prepare` + `classify` to handle errors per image, as the CLI does)."""
        named: list[str | None] = list(names) if names is not None else [None] * len(images)
        if len(named) != len(images):
            raise ValueError("need one name per image")
        return self.classify([self.prepare(image, name) for image, name in zip(images, named)], top_k)

    # --- a number per image ----------------------------------------------------------------------

    def read(self, image: pp.ImageInput, name: str | None = None) -> Reading:
        """The number on a line: `digitrec.reading.search.read_line`, which reads as the full
        search (`digitrec.reading.segment.read_number`) does, classifying fewer candidates. A
        digit read that the mark classifier says is no digit (a letter, a blob) flags the reading."""
        if self._marks_source is None:
            return read_line(self, image, name=name)
        return read_line(self, image, name=name, not_digit=self.expected_digit_opinions)

    def expected_digit_opinions(self, digits28: Sequence[np.ndarray]) -> MarkOpinions:
        """`mark_opinions` where a digit is expected (a digit of a number read, a form's box): the
        classifier must be surer there (`EXPECTED_DIGIT_THRESHOLD`)."""
        return self.mark_opinions(digits28, most=EXPECTED_DIGIT_THRESHOLD)

    def draw_overlay(self, image: pp.ImageInput, reading: Reading) -> Image.Image:
        """The (upright) input image with each digit's box and reading drawn on it: green when
        confident, orange when the digit needs a person's look."""
        return draw_reading(pp.decode(image), reading, self.reject_threshold)
