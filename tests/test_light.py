"""Light inference (issue 17): the shipped .onnx twins answer as their checkpoints do, predict,
read and the server run without torch, and a command that needs torch says so in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from digitrec.models.checkpoint import load_checkpoint, weights_sha256
from digitrec.models.inputs import normalize, to_model_input
from digitrec.probability import softmax
from digitrec.reading.recognize import Recognizer
from digitrec.runtime.backends import OnnxBackend
from digitrec.weights import CHECKER_PATH, DEFAULT_MODEL_PATH, MARKS_PATH, READER_PATH, onnx_twin

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix in (".png", ".jpg"))
SHIPPED = {"default": DEFAULT_MODEL_PATH, "reader": READER_PATH, "checker": CHECKER_PATH, "marks": MARKS_PATH}
QUICK = 2000  # test digits in the default run; the slow test takes all 10,000
TRAIN_ONLY = ("torch", "torchvision", "matplotlib", "sklearn")  # what inference and evaluation must never import

# Imported before anything else in a subprocess (sitecustomize): the [train] extra is not installed.
BLOCKER = textwrap.dedent(
    """
    import sys

    class NoTrainExtra:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {blocked!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, NoTrainExtra())
    """
)


def twin_answers(name: str, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities of the shipped checkpoint (eager torch, as trained) and of its .onnx twin."""
    checkpoint = load_checkpoint(str(SHIPPED[name]))
    twin = OnnxBackend.from_file(onnx_twin(SHIPPED[name]))
    x = to_model_input(torch.from_numpy(images), checkpoint.normalization)
    with torch.inference_mode():
        eager = checkpoint.model.eval()(x).float().numpy()
    temperature = checkpoint.temperature
    return softmax(eager / temperature), softmax(twin.logits(x.numpy()) / (twin.metadata.temperature or 1.0))


INT8 = ("reader", "checker")  # the twins `read` runs on every candidate digit are int8 (making/quantize.py)


def assert_twin_matches(name: str, images: np.ndarray) -> None:
    expected, got = twin_answers(name, images)
    if name in INT8:
        # int8 rounding moves a probability by 2e-4 on average (reader) and flips a top class only
        # where two classes were all but tied: on the whole test set, 2 (reader) and 33 (checker) in
        # 10,000; the checker's largest move is 0.126, its mean 0.0045 (14 flips and under 0.1
        # before it learnt marker candidates: its plain-digit answers sit nearer its boundary)
        assert (expected.argmax(1) == got.argmax(1)).mean() >= 0.995, f"{name}.onnx: other answers than {name}.pt"
        gap = np.abs(got - expected).max(axis=1)
        assert gap.mean() <= 0.006 and gap.max() <= 0.15, f"{name}.onnx: {gap.mean():.4f} mean, {gap.max():.4f} max"
        return
    assert np.array_equal(expected.argmax(1), got.argmax(1)), f"{name}.onnx: another answer than {name}.pt"
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_onnx_twin_carries_its_checkpoints_metadata(name):
    checkpoint = load_checkpoint(str(SHIPPED[name]))
    meta = OnnxBackend.from_file(onnx_twin(SHIPPED[name])).metadata
    calibration = checkpoint.meta.get("calibration", {})
    assert meta.weights_sha256 == weights_sha256(checkpoint.model.state_dict()) == checkpoint.meta["weights_sha256"]
    assert (meta.arch, meta.arch_kwargs) == (checkpoint.arch, checkpoint.arch_kwargs)
    assert (meta.mean, meta.std) == (checkpoint.normalization.mean, checkpoint.normalization.std)
    assert meta.temperature == calibration.get("temperature")
    # the mark classifier's threshold is on its "digit" class (`digitrec build-marks`)
    expected = calibration.get("reject_threshold", checkpoint.meta.get("marks", {}).get("digit_threshold"))
    assert meta.reject_threshold == expected
    assert list(meta.class_labels) == list(checkpoint.meta.get("class_labels") or [str(d) for d in range(10)])


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_only_the_reading_twins_are_int8_and_say_so(name):
    """The reading model and the checker run int8 (their metadata says how; their graphs quantise),
    `predict`'s model and the mark classifier stay float32."""
    path = onnx_twin(SHIPPED[name])
    meta = OnnxBackend.from_file(path).metadata
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    if name in INT8:
        assert meta.quantization.startswith("int8") and "7 bits" in meta.quantization
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    else:
        assert meta.quantization == "" and "QuantizeLinear" not in ops


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_onnx_twin_answers_as_its_checkpoint(name, mnist):
    assert_twin_matches(name, mnist.test_images[:QUICK].numpy())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_onnx_twin_answers_as_its_checkpoint_on_the_whole_test_set(name, mnist):
    assert_twin_matches(name, mnist.test_images.numpy())


def test_numpy_normalisation_is_torchs_to_the_last_bit(mnist):
    checkpoint = load_checkpoint()
    images = mnist.test_images[:QUICK]
    expected = to_model_input(images, checkpoint.normalization).numpy()
    assert np.array_equal(
        normalize(images.numpy().astype(np.float32) / np.float32(255.0), checkpoint.normalization), expected
    )


@pytest.fixture(scope="module")
def recognizers() -> dict[str, Recognizer]:
    return {backend: Recognizer.load(backend=backend) for backend in ("onnx", "torch")}


def test_onnx_is_the_default_and_loads_the_shipped_twins(recognizers):
    default = Recognizer.load()
    assert default.backend_name == "onnx" and default.checkpoint is None
    assert default.model.path == str(onnx_twin(DEFAULT_MODEL_PATH))
    assert default.reader.model.path == str(onnx_twin(READER_PATH))
    assert default.checker is not None and default.checker.model.path == str(onnx_twin(CHECKER_PATH))
    assert recognizers["torch"].checkpoint is not None  # --backend torch still runs the .pt


def test_both_backends_predict_the_same_on_the_test_set(recognizers, mnist):
    digits = list(mnist.test_images[:QUICK].numpy().astype(np.float32) / 255.0)
    onnx, torch_ = (recognizers[b].probabilities(digits) for b in ("onnx", "torch"))
    assert np.array_equal(onnx.argmax(1), torch_.argmax(1))
    np.testing.assert_allclose(onnx, torch_, atol=1e-4, rtol=0)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_both_backends_answer_the_same_on_the_examples(recognizers, path):
    data = path.read_bytes()
    a, b = (recognizers[backend] for backend in ("onnx", "torch"))
    pa, pb = a.predict(data), b.predict(data)
    assert (pa.digit, pa.rejected, pa.reason) == (pb.digit, pb.rejected, pb.reason)
    assert pa.confidence == pytest.approx(pb.confidence, abs=1e-4)
    ra, rb = a.read(data), b.read(data)
    assert (ra.text, ra.needs_review, ra.rejected) == (rb.text, rb.needs_review, rb.rejected)
    assert [d["digit"] for d in ra.digits] == [d["digit"] for d in rb.digits]
    # the same reasons; their figures may differ in the last places (ONNX Runtime reads with int8 models)
    assert reason_kinds(ra.reason) == reason_kinds(rb.reason)


def reason_kinds(reason: str | None) -> list[str]:
    """A reading's reasons with their numbers blanked out."""
    return [re.sub(r"\d+(\.\d+)?", "#", clause) for clause in reason.split("; ")] if reason else []


# ---- without torch: subprocesses, the [train] extra blocked or merely watched ----------------------


def run_python(tmp_path: Path, code: str, block: bool) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter; with `block`, importing the [train] extra fails there and in
    every process it starts (sitecustomize is read by each interpreter on PYTHONPATH)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    if block:
        (site / "sitecustomize.py").write_text(BLOCKER.format(blocked=set(TRAIN_ONLY)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


WATCH = """
import contextlib, io, json, sys
{body}
print(json.dumps(sorted(m for m in {modules!r} if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", *(str(p) for p in EXAMPLES), "--json"],
        ["read", *(str(p) for p in EXAMPLES), "--json"],
        [
            "read",
            str(ROOT / "examples" / "number_scan.png"),
            str(ROOT / "examples" / "number_photo.jpg"),
            "--jobs",
            "2",
        ],
        ["evaluate", "--backend", "onnx", "--limit", "500", "--tta", "--json"],
        [
            "evaluate",
            "--backend",
            "onnx",
            "--limit",
            "500",
            "--model",
            str(DEFAULT_MODEL_PATH),
            "--model",
            str(READER_PATH),
        ],
    ],
    ids=["predict", "read", "read-jobs-2", "evaluate-onnx", "evaluate-onnx-ensemble"],
)
@pytest.mark.parametrize("block", [False, True], ids=["watched", "absent"])
def test_inference_and_onnx_evaluation_never_import_torch(tmp_path, argv, block):
    body = f"from digitrec.cli import main\ncode = main({argv!r})"
    result = run_python(tmp_path, WATCH.format(body=body, modules=TRAIN_ONLY) + "sys.exit(code)", block)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []
    if argv[0] == "read":
        assert "20250317" in result.stdout  # examples/number_scan.png, read without torch
    if argv[0] == "evaluate":  # a .pt stands for its .onnx twin
        assert "default.onnx" in result.stdout and "default.pt" not in result.stdout


def test_evaluate_runs_on_onnx_by_itself_without_torch(tmp_path):
    body = "from digitrec.cli import main\ncode = main(['evaluate', '--limit', '300', '--json'])"
    result = run_python(tmp_path, WATCH.format(body=body, modules=TRAIN_ONLY) + "sys.exit(code)", block=True)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out["model"] == str(onnx_twin(DEFAULT_MODEL_PATH)) and out["n"] == 300 and out["test_accuracy"] > 0.95


@pytest.mark.parametrize("block", [False, True], ids=["watched", "absent"])
def test_the_server_starts_and_answers_without_torch(tmp_path, block):
    # the app with its preprocessing process (which must also start without torch: with the
    # extra blocked, a process that imported it would fail, and the service would run without it)
    body = textwrap.dedent(
        f"""
        import asyncio
        import httpx
        from digitrec.server import create_app

        async def go():
            app = create_app(preprocess_processes=1)
            async with app.router.lifespan_context(app):
                service = app.state.service
                await service.preprocess_joining
                assert service.batcher.preprocess is not None, "the preprocessing process did not start"
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    image = open({str(ROOT / "examples" / "digit_4_scan.png")!r}, "rb").read()
                    answer = (await client.post("/v1/predict", files={{"file": ("d.png", image)}})).json()
                    assert answer["digit"] == 4, answer
                    number = open({str(ROOT / "examples" / "number_scan.png")!r}, "rb").read()
                    reading = (await client.post("/v1/read", files={{"file": ("n.png", number)}})).json()
                    assert reading["text"] == "20250317", reading
                    assert (await client.get("/v1/model")).json()["backend"] == "onnx"

        asyncio.run(go())
        """
    )
    result = run_python(tmp_path, WATCH.format(body=body, modules=TRAIN_ONLY), block)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []


NEEDS_TORCH = [
    ["train", "--epochs", "1"],
    ["evaluate", "--backend", "torch"],
    ["evaluate", "--limit", "10", "--split", "val"],  # the split is drawn with torch's generator
    ["evaluate", "--limit", "10", "--report", "rep"],  # matplotlib
    ["compare", "all"],
    ["calibrate", "--model", "m.pt"],
    ["export", "--out", "m.onnx"],
    ["build-weights", "--onnx-only"],
    ["predict", "examples/digit_4_scan.png", "--backend", "torch"],
]


def test_commands_that_need_torch_say_so_in_one_line_without_it(tmp_path):
    body = textwrap.dedent(
        f"""
        from digitrec.cli import main
        answers = []
        for argv in {NEEDS_TORCH!r}:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(argv)
            answers.append([code, err.getvalue()])
        print(json.dumps(answers))
        """
    )
    result = run_python(tmp_path, WATCH.format(body=body, modules=()), block=True)
    assert result.returncode == 0, result.stderr[-2000:]
    for argv, (code, err) in zip(NEEDS_TORCH, json.loads(result.stdout)):
        expected = f'digitrec {argv[0]}: error: this needs digitrec[train]: pip install "digitrec[train]"\n'
        assert (code, err) == (2, expected), argv
    # and what does not need it still works there
    for argv in (["--help"], ["export", "--help"], ["predict", "--help"]):
        assert run_python(tmp_path, f"from digitrec.cli import main\nmain({argv!r})", block=True).returncode == 0
