"""`digitrec predict|read` on folders and batches: directories (recursive, sorted), stdin, --jobs
(the same answers in the same order), --csv, --output (all or nothing), bad files one line each,
the progress bar (a terminal only), and results streamed rather than held."""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitrec.cli import main
from digitrec.reading import batch, synth


def digit_png(mnist, i: int, size: int = 64) -> bytes:
    rng = np.random.default_rng(i)
    image = synth.render_digit(
        mnist.test_images[i].numpy(), rng, synth.clean_style(), canvas=(size, size), height_fraction=(0.6, 0.6)
    )
    return synth.encode(image)


def number_png(mnist, start: int) -> bytes:
    rng = np.random.default_rng(start)
    digits = [mnist.test_images[i].numpy() for i in range(start, start + 3)]
    labels = mnist.test_labels[start : start + 3].tolist()
    return synth.encode(synth.render_number(digits, labels, rng, synth.clean_style(), height=40).image)


@pytest.fixture(scope="module")
def tree(tmp_path_factory, mnist) -> Path:
    """scans/ with images at two depths, upper-case suffixes, hidden files, a PDF and a text file."""
    root = tmp_path_factory.mktemp("scans")
    (root / "b" / "deep").mkdir(parents=True)
    (root / ".cache").mkdir()
    files = {
        "z.png": 0,
        "a.PNG": 1,
        "b/c.jpg": 2,
        "b/deep/a.tif": 3,
        "b/a.bmp": 4,
        ".hidden.png": 5,
        ".cache/x.png": 6,
    }
    for name, i in files.items():
        image = Image.open(io.BytesIO(digit_png(mnist, i))).convert("RGB")
        image.save(root / name, format={".jpg": "JPEG", ".tif": "TIFF", ".bmp": "BMP"}.get(Path(name).suffix, "PNG"))
    (root / "notes.txt").write_text("not a scan")
    (root / "b" / "form.pdf").write_bytes(b"%PDF-1.4\n")
    return root


def run(argv: list[str], capsys) -> tuple[int, list[str], list[str]]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_directories_are_searched_recursively_in_name_order(tree, tmp_path, capsys, mnist):
    loose = tmp_path / "loose.png"
    loose.write_bytes(digit_png(mnist, 7))
    code, out, err = run(["predict", "--json", str(loose), str(tree), str(loose)], capsys)
    files = [json.loads(line)["file"] for line in out]
    expected = ["a.PNG", "b/a.bmp", "b/c.jpg", "b/deep/a.tif", "z.png"]  # sorted part by part; no hidden files
    assert files == [str(loose), *(str(tree / name) for name in expected), str(loose)]
    assert code == 2  # the PDF, refused in one line; every other file answered
    assert err == [
        f"digitrec predict: {tree / 'b' / 'form.pdf'}: a PDF holds form pages: read them with a page template "
        "(digitrec read --template or --field)"
    ]
    assert [json.loads(line)["digit"] for line in out] == [mnist.test_labels[i].item() for i in (7, 1, 4, 2, 3, 0, 7)]


def test_an_empty_directory_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = run(["predict", str(tmp_path / "empty")], capsys)
    assert code == 2 and out == []
    assert len(err) == 1 and err[0].startswith(
        f"digitrec predict: {tmp_path / 'empty'}: a directory with no image files"
    )


@pytest.mark.parametrize("command", ["predict", "read"])
def test_dash_reads_stdin(command, tree, monkeypatch, capsys, mnist):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(digit_png(mnist, 0))))
    code, out, err = run([command, "--json", str(tree / "a.PNG"), "-"], capsys)
    answers = [json.loads(line) for line in out]
    assert code == 0 and err == []
    assert [a["file"] for a in answers] == [str(tree / "a.PNG"), "-"]
    assert str(answers[1].get("digit", answers[1].get("text"))) == str(mnist.test_labels[0].item())


def test_csv_has_a_header_and_one_row_per_file(tree, capsys):
    code, out, _ = run(["predict", "--csv", "--top-k", "2", str(tree)], capsys)
    rows = list(csv.DictReader(out))
    assert code == 2  # the PDF
    assert list(rows[0]) == ["file", "digit", "confidence", "rejected", "reason", "top_k"]
    assert [r["file"] for r in rows] == [
        str(tree / name) for name in ("a.PNG", "b/a.bmp", "b/c.jpg", "b/deep/a.tif", "z.png")
    ]
    assert all(r["rejected"] == "false" and r["reason"] == "" and len(r["top_k"].split(" ")) == 2 for r in rows)
    assert float(rows[0]["confidence"]) == float(rows[0]["top_k"].split(" ")[0].split(":")[1])

    code, out, _ = run(["read", "--csv", str(tree / "z.png"), str(tree / "b/a.bmp")], capsys)
    rows = list(csv.DictReader(out))
    assert code == 0 and len(rows) == 2
    assert list(rows[0]) == ["file", "text", "needs_review", "rejected", "reason", "digits", "min_confidence"]
    assert (
        rows[0]["digits"] == "1"
        and rows[0]["text"] == rows[0]["text"].strip()
        and 0 < float(rows[0]["min_confidence"]) <= 1
    )


def test_jobs_give_the_same_answers_in_the_same_order(tmp_path, capsys, mnist):
    """70 digits (three chunks, shared by two processes), a bad file in the middle, and numbers."""
    folder = tmp_path / "digits"
    folder.mkdir()
    for i in range(70):
        (folder / f"{i:03d}.png").write_bytes(digit_png(mnist, i))
    (folder / "040.png").write_bytes(b"not an image")
    runs = [run(["predict", "--json", "--jobs", jobs, str(folder)], capsys) for jobs in ("1", "2")]
    assert runs[0] == runs[1]
    code, out, err = runs[0]
    assert (
        code == 2
        and len(out) == 69
        and len(err) == 1
        and err[0].startswith(f"digitrec predict: {folder / '040.png'}: ")
    )
    assert [json.loads(line)["file"] for line in out] == [str(folder / f"{i:03d}.png") for i in range(70) if i != 40]

    numbers = tmp_path / "numbers"
    numbers.mkdir()
    for i in range(9):  # chunks of 4: three, over two processes
        (numbers / f"{i}.png").write_bytes(number_png(mnist, 3 * i))
    reads = [run(["read", "--json", "--jobs", jobs, str(numbers)], capsys) for jobs in ("1", "2")]
    assert reads[0] == reads[1] and reads[0][0] == 0 and len(reads[0][1]) == 9


def test_output_is_written_all_at_once(tree, tmp_path, capsys):
    target = tmp_path / "answers.csv"
    code, out, _ = run(["predict", "--csv", "--output", str(target), str(tree / "a.PNG"), str(tree / "z.png")], capsys)
    assert code == 0 and out == []
    assert (
        run(["predict", "--csv", str(tree / "a.PNG"), str(tree / "z.png")], capsys)[1]
        == target.read_text().splitlines()
    )
    assert [p.name for p in tmp_path.iterdir()] == ["answers.csv"]  # no temporary file left
    code, out, err = run(["predict", "--output", str(tmp_path), str(tree / "a.PNG")], capsys)
    assert code == 2 and out == [] and len(err) == 1 and "is a directory" in err[0]


def test_a_closed_pipe_ends_the_run_quietly(tree, capsys, monkeypatch):
    """`digitrec predict DIR | head -1`: once the reader is gone, stop, without a traceback."""

    class ClosedAfterOneLine(io.StringIO):
        def write(self, text: str) -> int:
            if self.getvalue():
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    monkeypatch.setattr(batch.PredictTask, "__init__", _one_file_chunks(batch.PredictTask.__init__))
    monkeypatch.setattr("sys.stdout", ClosedAfterOneLine())
    assert main(["predict", "--json", str(tree)]) == 141
    assert capsys.readouterr().err == ""


def _one_file_chunks(init):
    def one_file_chunks(self, *args, **kwargs):
        init(self, *args, **kwargs)
        object.__setattr__(self, "chunk_size", 1)  # so that there is a second chunk to write

    return one_file_chunks


def test_an_interrupted_run_leaves_no_output_file(tmp_path, capsys, monkeypatch, mnist):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(40):  # two chunks: the first is written, then Ctrl-C
        (folder / f"{i}.png").write_bytes(digit_png(mnist, 0, size=32))
    answered = []
    real_answer = batch.PredictTask.answer

    def answer_then_stop(self, recognizer, sources):
        answered.append(len(sources))
        if len(answered) == 2:
            raise KeyboardInterrupt
        return real_answer(self, recognizer, sources)

    monkeypatch.setattr(batch.PredictTask, "answer", answer_then_stop)
    target = tmp_path / "out" / "answers.json"
    code = main(["predict", "--json", "--output", str(target), str(folder)])
    assert code == 130 and "interrupted" in capsys.readouterr().err
    assert answered == [32, 8] and list(target.parent.iterdir()) == []  # neither the file nor a temporary one
    target.write_text("the previous answers\n")
    answered.clear()
    assert main(["predict", "--json", "--output", str(target), str(folder)]) == 130
    assert target.read_text() == "the previous answers\n"  # kept whole
    assert [p.name for p in target.parent.iterdir()] == ["answers.json"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_is_shown_on_a_terminal_only(tree, capsys, monkeypatch):
    code, out, err = run(["predict", str(tree / "a.PNG"), str(tree / "z.png")], capsys)
    assert code == 0 and err == [] and len(out) == 3  # not a terminal: no bar
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["predict", str(tree / "a.PNG"), str(tree / "z.png")]) == 0
    assert "2/2" in terminal.getvalue() and "100%" in terminal.getvalue()
    terminal.seek(0), terminal.truncate()
    assert main(["predict", str(tree / "a.PNG")]) == 0
    assert terminal.getvalue() == ""  # one input: no bar


def test_results_are_streamed_not_held(tmp_path, capsys, monkeypatch, mnist):
    """300 files: the first answers are written after one chunk is read, not after all 300."""
    folder = tmp_path / "many"
    folder.mkdir()
    png = digit_png(mnist, 0, size=32)
    for i in range(300):
        (folder / f"{i:03d}.png").write_bytes(png)
    read_so_far: list[int] = []
    written_after: list[int] = []
    real_read_file = batch.read_file

    def counting_read_file(path):
        read_so_far.append(1)
        return real_read_file(path)

    class Watched(io.StringIO):
        def write(self, text: str) -> int:
            written_after.append(len(read_so_far))
            return super().write(text)

    monkeypatch.setattr(batch, "read_file", counting_read_file)
    monkeypatch.setattr("sys.stdout", Watched())
    assert main(["predict", "--json", str(folder)]) == 0
    assert len(read_so_far) == 300 and written_after[0] <= batch.PredictTask.chunk_size
    assert len(set(written_after)) >= 300 // batch.PredictTask.chunk_size  # written chunk by chunk


def test_with_jobs_inputs_are_still_taken_as_they_are_needed(tmp_path, mnist):
    """With processes too, inputs are taken as they are needed: a first answer comes back while
    most of a long stream of inputs is still untouched."""
    path = tmp_path / "one.png"
    path.write_bytes(digit_png(mnist, 0, size=32))
    taken = []

    def sources():
        for i in range(3000):
            taken.append(i)
            yield batch.Source(str(path), path.name)

    task = batch.PredictTask(chunk_size=10)
    outcomes = batch.run(task, sources(), jobs=2)
    first = next(outcomes)
    assert len(first) == 10 and first[0].answer is not None and first[0].answer.digit == 7
    assert len(taken) <= (batch.WINDOW_PER_JOB * 2 + batch.IN_FLIGHT_PER_JOB) * 10
    outcomes.close()  # stops the processes


def test_chunks_answered_by_a_worker_equal_those_answered_here(tmp_path, monkeypatch, mnist):
    """This process waits for the worker before answering anything, so that both answer chunks;
    together they answer exactly as this process alone does, a bad file included."""
    for i in range(30):
        (tmp_path / f"{i:02d}.png").write_bytes(digit_png(mnist, i, size=32))
    (tmp_path / "07.png").write_bytes(b"not an image")
    sources = list(batch.expand_inputs([str(tmp_path)]))
    task = batch.PredictTask(chunk_size=3)
    alone = [o for chunk in batch.run(task, sources, jobs=1) for o in chunk]

    submitted: list[concurrent.futures.Future] = []
    here: list[int] = []
    real_answer = batch.answer_chunk

    class Recording(concurrent.futures.ProcessPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            submitted.append(super().submit(fn, *args, **kwargs))
            return submitted[-1]

    def answer_once_a_worker_is_ready(task, recognizer, chunk):
        concurrent.futures.wait(submitted[:1])  # the first submission is the worker's readiness probe
        here.append(len(chunk))
        return real_answer(task, recognizer, chunk)

    monkeypatch.setattr(batch, "ProcessPoolExecutor", Recording)
    monkeypatch.setattr(batch, "answer_chunk", answer_once_a_worker_is_ready)
    shared = [o for chunk in batch.run(task, sources, jobs=2) for o in chunk]
    assert shared == alone
    assert alone[7].error and alone[8].answer is not None
    assert 0 < len(here) < 10 and len(submitted) > 1  # both processes answered chunks
