"""What every CLI command and HTTP route answers on `examples/`, recorded once and replayed.

`tests/test_golden.py` replays these cases and compares them with `tests/golden/outputs.json`,
which was recorded before the package was restructured (issue "One house"), so a move that
changes an answer fails. When an answer changes on purpose (a retrained shipped model), record
again and say why in the commit:

    python tests/golden_cases.py --record

Only public entry points are used (`digitrec.cli.main`, `digitrec.server.create_app`), so the
cases do not depend on where modules live.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden" / "outputs.json"
FORM_PAGE, FORM_TEMPLATE = EXAMPLES / "form_page.png", EXAMPLES / "form_template.json"
IMAGES = [
    "digit_7_photo.jpg",
    "digit_4_scan.png",
    "digit_2_chalk.jpg",
    "smudge.png",
    "number_scan.png",
    "number_photo.jpg",
]
COMMANDS = [
    "train",
    "evaluate",
    "predict",
    "read",
    "serve",
    "export",
    "compare",
    "calibrate",
    "build-weights",
    "build-marks",
    "build-default",
]


def _normalise(text: str, tmp: Path) -> str:
    """Outputs name files by path: make them independent of the checkout and the temp folder."""
    return text.replace(str(tmp), "<tmp>").replace(str(ROOT), "<root>")


def run_cli(argv: list[str], tmp: Path) -> dict[str, Any]:
    from digitrec.cli import main

    os.environ["COLUMNS"] = "100"  # argparse wraps --help to the terminal's width
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's --help and usage errors
            code = int(exc.code or 0)
    return {"code": code, "stdout": _normalise(out.getvalue(), tmp), "stderr": _normalise(err.getvalue(), tmp)}


def image_digest(path: Path) -> str:
    """The decoded pixels' checksum (not the file's: PNG encoders may differ in compression)."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return hashlib.sha256(pixels.tobytes()).hexdigest()[:16]


def cli_cases(tmp: Path) -> dict[str, dict[str, Any]]:
    images = [str(EXAMPLES / name) for name in IMAGES]
    bad = tmp / "not_an_image.png"
    bad.write_text("hello, this is text")
    truncated = tmp / "truncated.png"
    truncated.write_bytes((EXAMPLES / "digit_4_scan.png").read_bytes()[:300])
    cases: dict[str, Callable[[], dict[str, Any]]] = {
        "predict --json": lambda: run_cli(["predict", "--json", *images], tmp),
        "predict table": lambda: run_cli(["predict", "--top-k", "2", *images], tmp),
        "predict bad files": lambda: run_cli(
            ["predict", "--json", str(bad), images[0], str(truncated), str(tmp / "missing.png")], tmp
        ),
        "read --json": lambda: run_cli(["read", "--json", *images[4:], images[0]], tmp),
        "read table": lambda: run_cli(["read", *images[4:]], tmp),
        "read bad files": lambda: run_cli(["read", str(bad), images[4]], tmp),
        "read --template": lambda: run_cli(["read", str(FORM_PAGE), "--template", str(FORM_TEMPLATE)], tmp),
        "read --template --csv": lambda: run_cli(
            [
                "read",
                "--csv",
                str(FORM_PAGE),
                "--field",
                "account=306,146,684,176,6",
                "--field",
                "code=306,676,466,204",
            ],
            tmp,
        ),
        "predict onnx": lambda: run_cli(["predict", "--json", "--backend", "onnx", *images[:4]], tmp),
        "evaluate --json": lambda: run_cli(["evaluate", "--json", "--data-dir", str(ROOT / "data" / "mnist")], tmp),
        "unknown command": lambda: run_cli(["frobnicate"], tmp),
    }
    for command in COMMANDS:
        cases[f"{command} --help"] = lambda command=command: run_cli([command, "--help"], tmp)
    out = {name: case() for name, case in cases.items()}
    overlay = tmp / "overlay.png"
    result = run_cli(["read", "--json", images[4], "--overlay", str(overlay)], tmp)
    result["overlay"] = image_digest(overlay) if overlay.is_file() else None
    out["read --overlay"] = result
    return out


def http_cases() -> dict[str, dict[str, Any]]:
    from fastapi.testclient import TestClient

    from digitrec.server import create_app

    def upload(name: str, data: bytes | None = None) -> tuple[str, bytes, str]:
        return (name, data if data is not None else (EXAMPLES / name).read_bytes(), "application/octet-stream")

    def answer(response: Any) -> dict[str, Any]:
        kind = response.headers.get("content-type", "").split(";")[0]
        body = response.json() if kind.endswith("json") else response.text
        if isinstance(body, dict):
            body.pop("model_path", None)  # where the package is installed
        return {"status": response.status_code, "content_type": kind, "body": body}

    out: dict[str, dict[str, Any]] = {}
    with TestClient(create_app()) as client:
        for path in ("/healthz", "/readyz", "/v1/model"):
            out[f"GET {path}"] = answer(client.get(path))
        out["GET /"] = {"status": client.get("/").status_code}
        for name in IMAGES:
            out[f"POST /v1/predict {name}"] = answer(client.post("/v1/predict", files={"file": upload(name)}))
        for name in ("number_scan.png", "number_photo.jpg"):
            out[f"POST /v1/read {name}"] = answer(client.post("/v1/read", files={"file": upload(name)}))
        out["POST /v1/predict top_k=5"] = answer(client.post("/v1/predict?top_k=5", files={"file": upload(IMAGES[0])}))
        out["POST /v1/predict/batch"] = answer(
            client.post(
                "/v1/predict/batch",
                files=[("files", upload(IMAGES[0])), ("files", upload(IMAGES[1])), ("files", upload("x.txt", b"text"))],
            )
        )
        out["POST /v1/predict text"] = answer(client.post("/v1/predict", files={"file": upload("x.png", b"text")}))
        truncated = (EXAMPLES / "digit_4_scan.png").read_bytes()[:300]
        out["POST /v1/predict truncated"] = answer(
            client.post("/v1/predict", files={"file": upload("t.png", truncated)})
        )
        out["POST /v1/read text"] = answer(client.post("/v1/read", files={"file": upload("x.png", b"text")}))
        page, template = upload(FORM_PAGE.name), FORM_TEMPLATE.read_text()
        out["POST /v1/read template"] = answer(
            client.post("/v1/read", files={"file": page}, data={"template": template})
        )
        out["POST /v1/read bad template"] = answer(
            client.post("/v1/read", files={"file": page}, data={"template": '{"fields": [], "dpi": 3}'})
        )
        out["POST /v1/read PDF"] = answer(client.post("/v1/read", files={"file": upload("x.pdf", b"%PDF-1.4\n")}))
        out["POST /v1/predict no file"] = {"status": client.post("/v1/predict").status_code}
        out["GET /nowhere"] = answer(client.get("/nowhere"))
    return out


def record_all(tmp: Path) -> dict[str, Any]:
    return {"cli": cli_cases(tmp), "http": http_cases()}


def main() -> int:
    if sys.argv[1:] != ["--record"]:
        print(__doc__)
        return 2
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    try:
        outputs = record_all(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
