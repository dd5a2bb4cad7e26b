"""Page templates: where a form's fields are, by name, and how many digits each should hold.

A template is JSON:

    {"units": "px", "page": [2480, 3508],
     "fields": [{"name": "amount", "box": [x, y, w, h], "length": 6}, ...]}

- `box` is the field's left, top, width and height; in pixels ("px", the default) or as
  fractions of the page's width and height ("fraction": the same template fits a scan at any
  resolution);
- `page` (pixel templates only, optional) is the size of the page the boxes were measured on: a
  page scanned at another resolution has its boxes scaled to it. Without it, boxes are taken as
  they are and must lie on the page read;
- `length` (optional) is the number of digits the field should hold: another count is flagged.

Everything is checked strictly, and a mistake is a one-line `ConfigError` naming it (not valid
JSON, an unknown key, a missing name, a box with a negative size or reaching outside the page):
a misspelt key silently ignored would read the wrong part of every page.

On the command line a field is `NAME=x,y,w,h` or `NAME=x,y,w,h,length` (`parse_field`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from digitrec.errors import ConfigError

UNITS = ("px", "fraction")
TEMPLATE_KEYS = ("fields", "units", "page")
FIELD_KEYS = ("name", "box", "length")
MIN_BOX_PX = 8  # a smaller field cannot hold a legible digit (decode refuses smaller images)
MAX_TEMPLATE_BYTES = 1024 * 1024
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in page pixels; x1 and y1 exclusive


@dataclass(frozen=True)
class FieldSpec:
    """One named field: its box (x, y, w, h in the template's units) and the digits expected."""

    name: str
    box: tuple[float, float, float, float]
    length: int | None = None


@dataclass(frozen=True)
class Template:
    """The fields of a form page."""

    fields: tuple[FieldSpec, ...]
    units: str = "px"
    page: tuple[int, int] | None = None  # (width, height) the pixel boxes were measured on

    def boxes_on(self, width: int, height: int) -> list[Box]:
        """Each field's box in the pixels of a page `width` x `height` (ConfigError when a box
        reaches outside it or is too small to hold a digit)."""
        return [self.box_on(spec, width, height) for spec in self.fields]

    def box_on(self, spec: FieldSpec, width: int, height: int) -> Box:
        """One field's box in the pixels of a page `width` x `height` (ConfigError naming the
        field when the box reaches outside the page or is too small to hold a digit)."""
        if self.units == "fraction":
            sx, sy = float(width), float(height)
        elif self.page is not None:
            sx, sy = width / self.page[0], height / self.page[1]
        else:
            sx = sy = 1.0
        x, y, w, h = spec.box
        box = (round(x * sx), round(y * sy), round((x + w) * sx), round((y + h) * sy))
        if box[2] > width or box[3] > height:
            raise ConfigError(
                f"template field {spec.name!r}: box {_show(spec.box)} reaches outside the {width}x{height} page"
            )
        if box[2] - box[0] < MIN_BOX_PX or box[3] - box[1] < MIN_BOX_PX:
            raise ConfigError(
                f"template field {spec.name!r}: box {_show(spec.box)} is {box[2] - box[0]}x{box[3] - box[1]} "
                f"pixels on this page, too small to hold a digit (at least {MIN_BOX_PX}x{MIN_BOX_PX})"
            )
        return box


def _show(box: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


# --- JSON -----------------------------------------------------------------------------------------------------


def load_template(source: str | os.PathLike) -> Template:
    """A template from a JSON file (ConfigError when it cannot be read or is not valid)."""
    path = Path(source)
    try:
        if path.stat().st_size > MAX_TEMPLATE_BYTES:
            raise ConfigError(f"template {path.name} is larger than {MAX_TEMPLATE_BYTES // 1024} KB")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"template {path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"template {path.name} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read template {path}: {exc.strerror or exc}") from None
    return parse_template(text)


def parse_template(text: str | bytes) -> Template:
    """A template from JSON text (ConfigError naming the first problem)."""
    if len(text) > MAX_TEMPLATE_BYTES:
        raise ConfigError(f"template is larger than {MAX_TEMPLATE_BYTES // 1024} KB")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"template is not valid JSON: {str(exc).splitlines()[0]}") from None
    return template_from_dict(data)


def template_from_dict(data: object) -> Template:
    """A template from parsed JSON (ConfigError naming the first problem)."""
    if not isinstance(data, dict):
        raise ConfigError('template must be a JSON object: {"fields": [...]}')
    _known(data, TEMPLATE_KEYS, "template")
    units = data.get("units", "px")
    if units not in UNITS:
        raise ConfigError(f"template: units must be one of {', '.join(map(repr, UNITS))}, got {units!r}")
    page = _page(data.get("page"), units)
    raw = data.get("fields")
    if not isinstance(raw, list) or not raw:
        raise ConfigError('template needs "fields": a non-empty list of {"name", "box", "length"} objects')
    fields = tuple(_field(item, i + 1) for i, item in enumerate(raw))
    return make_template(fields, units, page)


def make_template(fields: tuple[FieldSpec, ...], units: str = "px", page: tuple[int, int] | None = None) -> Template:
    """Check a template's fields against each other and against its units and page."""
    seen: set[str] = set()
    for spec in fields:
        if spec.name in seen:
            raise ConfigError(f"template: two fields are named {spec.name!r}")
        seen.add(spec.name)
        x, y, w, h = spec.box
        right, bottom = (1.0, 1.0) if units == "fraction" else page or (math.inf, math.inf)
        if x + w > right + 1e-9 or y + h > bottom + 1e-9:
            where = "the page (fractions of its size)" if units == "fraction" else f"the {right}x{bottom} page"
            raise ConfigError(f"template field {spec.name!r}: box {_show(spec.box)} reaches outside {where}")
    return Template(fields=fields, units=units, page=page)


def _known(data: dict, keys: tuple[str, ...], what: str) -> None:
    unknown = [k for k in data if k not in keys]
    if unknown:
        raise ConfigError(f"{what}: unknown key {unknown[0]!r} (known: {', '.join(keys)})")


def _number(value: object) -> float | None:
    """A finite JSON number (not a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _page(value: object, units: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if units == "fraction":
        raise ConfigError('template: "page" is for pixel templates; fraction boxes fit any page')
    sizes = [_number(v) for v in value] if isinstance(value, list) and len(value) == 2 else None
    if sizes is None or any(v is None or v < 1 or v != int(v) for v in sizes):
        raise ConfigError(f'template: "page" must be [width, height] in whole pixels, got {json.dumps(value)}')
    return int(sizes[0] or 0), int(sizes[1] or 0)


def _field(item: object, number: int) -> FieldSpec:
    if not isinstance(item, dict):
        raise ConfigError(f'template field {number} must be an object {{"name", "box", "length"}}')
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"template field {number}: needs a non-empty string name")
    _known(item, FIELD_KEYS, f"template field {name!r}")
    if "box" not in item:
        raise ConfigError(f"template field {name!r}: needs a box [x, y, w, h]")
    return check_field(name, item["box"], item.get("length"))


def check_field(name: str, box: object, length: object = None) -> FieldSpec:
    """A field from its parts, checked: 4 finite numbers, a position on the page (not negative)
    and a size above zero; a length that is a positive whole number when given."""
    values = [_number(v) for v in box] if isinstance(box, (list, tuple)) and len(box) == 4 else None
    if values is None or any(v is None for v in values):
        raise ConfigError(f"template field {name!r}: box must be 4 numbers [x, y, w, h], got {json.dumps(box)}")
    x, y, w, h = (float(v or 0.0) for v in values)
    if w <= 0 or h <= 0:
        raise ConfigError(f"template field {name!r}: box {_show((x, y, w, h))} has a negative or zero size")
    if x < 0 or y < 0:
        raise ConfigError(f"template field {name!r}: box {_show((x, y, w, h))} starts outside the page")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
        raise ConfigError(f"template field {name!r}: length must be a positive whole number, got {json.dumps(length)}")
    return FieldSpec(name=name, box=(x, y, w, h), length=length)


# --- the command line ------------------------------------------------------------------------------------------


def parse_field(text: str) -> FieldSpec:
    """`NAME=x,y,w,h` or `NAME=x,y,w,h,length` -> a field (ConfigError when malformed)."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"--field {text!r}: expected NAME=x,y,w,h or NAME=x,y,w,h,length")
    parts = [p.strip() for p in rest.split(",")]
    if len(parts) not in (4, 5):
        raise ConfigError(f"--field {text!r}: expected 4 numbers x,y,w,h (and optionally a length)")
    try:
        box = [float(p) for p in parts[:4]]
        length = int(parts[4]) if len(parts) == 5 else None
    except ValueError:
        raise ConfigError(f"--field {text!r}: x,y,w,h must be numbers and the length a whole number") from None
    return check_field(name.strip(), box, length)


def template_from_fields(texts: list[str]) -> Template:
    """A template from `--field` strings. Boxes of whole numbers are pixels; boxes of numbers
    between 0 and 1 with a fraction among them (0.1,0.2,0.5,0.05) are fractions of the page.
    All fields of one command use the same units."""
    fields = tuple(parse_field(t) for t in texts)
    if not fields:
        raise ConfigError("no fields given")
    fractional = [any(v != int(v) for v in f.box) and all(v <= 1 for v in f.box) for f in fields]
    if any(fractional) and not all(fractional):
        raise ConfigError("--field boxes mix pixels and fractions of the page; use one or the other")
    units = "fraction" if all(fractional) else "px"
    if units == "px" and any(v != int(v) for f in fields for v in f.box):
        raise ConfigError("--field pixel boxes must be whole numbers (fractions of the page are all between 0 and 1)")
    return make_template(fields, units)
