"""Folders of scans: `digitrec read DIR` and `digitrec predict DIR`, with --jobs 1 and --jobs 2.

Makes two folders (once: they are kept in --dir and reused while their manifest matches):

- pages/: N scanned A4 pages at 300 dpi (2480 x 3508, grey), each with a number of 3-8 real MNIST
  *test* digits handwritten somewhere on it (`digitrec.reading.synth`, a random scan style), PNG or
  JPEG, 500 to a subfolder;
- digits/: M pictures of one MNIST test digit each (photo, scan or chalk, 160-640 px), for predict.

Then runs the `digitrec` command on each folder as a user would (start-up, model loading and
worker processes included), JSON lines on a pipe, and reports files/s, the speedup of --jobs 2 over
--jobs 1, whether both printed the same answers, how many numbers were read exactly, and memory:
the memory of the command and its workers (proportional set size, sampled every second) at its peak
and at its peak in each fifth of the run (flat memory: five similar figures, however many files
there are), and the largest process's peak resident memory.

Target (issue 18): --jobs 2 at >= 1.7x the files/s of --jobs 1 on 2,000 pages.

    python benchmarks/folder.py                           # 2,000 pages and 2,000 digits
    python benchmarks/folder.py --pages 200 --digits 500  # a busy machine: a smaller run
    python benchmarks/folder.py --pages 0 --digits 10000 --jobs 2  # memory over 10,000 files
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from digitrec.reading import synth
from digitrec.training.data import load_mnist

A4_300DPI = (2480, 3508)
PER_FOLDER = 500


def lscpu() -> str:
    """The CPU model and count as lscpu names them, and how busy the machine is."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    model = fields.get("Model name", "unknown CPU").strip()
    cpus = fields.get("CPU(s)", str(os.cpu_count())).strip()
    return f"{model}, {cpus} CPUs; load average {os.getloadavg()[0]:.1f}"


# --- the folders ------------------------------------------------------------------------------------


def make_folder(root: Path, kind: str, n: int, seed: int) -> dict[str, str]:
    """root/<kind>/ with n files and manifest.json {relative path: the digits written}; reused when
    the manifest says it was made the same way."""
    folder = root / kind
    manifest = folder / "manifest.json"
    wanted = {"kind": kind, "n": n, "seed": seed}
    if manifest.is_file():
        recorded = json.loads(manifest.read_text())
        if recorded["made"] == wanted:
            return recorded["truth"]
    shutil.rmtree(folder, ignore_errors=True)  # what another size left would be read too
    data = load_mnist()
    images, labels = data.test_images.numpy(), data.test_labels.numpy()
    rng = np.random.default_rng(seed)
    truth = {}
    for i in tqdm(range(n), desc=f"making {kind}", unit="file"):
        if kind == "pages":
            image, text = page(images, labels, rng)
        else:
            k = int(rng.integers(len(images)))
            image, text = synth.render_digit(images[k], rng, synth.random_style(rng)), str(labels[k])
        jpeg = rng.random() < 0.5
        name = f"box{i // PER_FOLDER:02d}/{kind[:-1]}{i:05d}.{'jpg' if jpeg else 'png'}"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(folder / name, **({"quality": 90} if jpeg else {}))
        truth[name] = text
    manifest.write_text(json.dumps({"made": wanted, "truth": truth}))
    return truth


def page(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """A scanned A4 page with one handwritten number (6-10 mm tall) on it."""
    idx = rng.choice(len(images), size=int(rng.integers(3, 9)), replace=False)
    number = synth.render_number(
        list(images[idx]), labels[idx].tolist(), rng, synth.random_style(rng, "scan"), height=int(rng.integers(70, 120))
    )
    line = number.image.convert("L")
    sheet = Image.new("L", A4_300DPI, int(np.median(np.asarray(line))))  # the scan's paper, all over
    x = int(rng.integers(150, A4_300DPI[0] - line.width - 150))
    y = int(rng.integers(200, A4_300DPI[1] - line.height - 200))
    sheet.paste(line, (x, y))
    return sheet, number.text


# --- timing -----------------------------------------------------------------------------------------


def memory(pid: int) -> tuple[int, int]:
    """(proportional, largest resident) bytes of `pid` and its descendants. The proportional set
    size shares each page among the processes mapping it (torch's libraries are mapped by every
    worker), so the first is what the family costs the machine; the second is its largest member."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
    family = {pid}
    while grown := {child for child, parent in parents.items() if parent in family} - family:
        family |= grown
    pss, rss = 0, 0
    for member in family:
        with contextlib.suppress(OSError, KeyError):
            lines = Path(f"/proc/{member}/smaps_rollup").read_text().splitlines()[1:]
            fields = {name: int(value.split()[0]) * 1024 for name, value in (line.split(":", 1) for line in lines)}
            pss, rss = pss + fields["Pss"], max(rss, fields["Rss"])
    return pss, rss


def time_command(command: str, folder: Path, jobs: int, total: int) -> dict:
    """Run `digitrec COMMAND --json --jobs JOBS FOLDER`; wall time, answers and memory."""
    script = Path(sys.executable).with_name("digitrec")
    argv = [str(script)] if script.is_file() else [sys.executable, "-m", "digitrec"]
    start = time.perf_counter()
    process = subprocess.Popen(
        [*argv, command, "--json", "--jobs", str(jobs), str(folder)], stdout=subprocess.PIPE, text=True
    )
    done, samples, finished = [0], [], threading.Event()

    def sample() -> None:
        while not finished.wait(1.0):  # a sample costs ~25 ms of CPU: keep it off the cores measured
            samples.append((done[0], *memory(process.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    answers = []
    assert process.stdout is not None
    for line in process.stdout:
        answers.append(line)
        done[0] += 1
    code = process.wait()
    seconds = time.perf_counter() - start
    finished.set()
    sampler.join()

    def peaks_by_fifth() -> list[float]:
        """The family's largest memory while each fifth of the files was being answered: flat
        memory shows as five similar figures (one sample catches a page mid-way or between pages)."""
        fifths: list[list[int]] = [[] for _ in range(5)]
        for n, pss, _ in samples:
            fifths[min(4, n * 5 // max(1, total))].append(pss)
        return [max(f, default=0) / 2**20 for f in fifths]

    return {
        "seconds": seconds,
        "files_per_s": total / seconds,
        "code": code,
        "answers": answers,
        "peak_pss_mb": max((s[1] for s in samples), default=0) / 2**20,
        "peak_rss_mb": max((s[2] for s in samples), default=0) / 2**20,
        "pss_by_fifth_mb": peaks_by_fifth(),
    }


def report(command: str, folder: Path, truth: dict[str, str], jobs_list: list[int]) -> None:
    results = {}
    for jobs in jobs_list:
        print(f"{command} --jobs {jobs} on {len(truth)} files ...", flush=True)
        r = results[jobs] = time_command(command, folder, jobs, len(truth))
        key = "text" if command == "read" else "digit"
        right = sum(str(a[key]) == truth[os.path.relpath(a["file"], folder)] for a in map(json.loads, r["answers"]))
        print(
            f"  {r['seconds']:.1f} s, {r['files_per_s']:.2f} files/s, exit {r['code']}, {len(r['answers'])} answers, "
            f"{right / len(truth):.1%} right; memory (PSS, all processes): peak {r['peak_pss_mb']:.0f} MB, "
            f"by fifths of the files {' / '.join(f'{m:.0f}' for m in r['pss_by_fifth_mb'])} MB; "
            f"largest process: peak RSS {r['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    if 1 in results and len(results) > 1:
        for jobs, r in results.items():
            if jobs != 1:
                same = digest(r["answers"]) == digest(results[1]["answers"])
                print(
                    f"  --jobs {jobs}: {results[1]['seconds'] / r['seconds']:.2f}x --jobs 1; "
                    f"answers {'identical' if same else 'DIFFERENT'}"
                )


def digest(lines: list[str]) -> str:
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=2000, help="scanned A4 pages for read (0: skip read)")
    parser.add_argument("--digits", type=int, default=2000, help="single-digit pictures for predict (0: skip)")
    parser.add_argument("--jobs", default="1,2", help="--jobs values to time, comma-separated (default 1,2)")
    parser.add_argument("--dir", type=Path, default=Path("runs/folder_benchmark"), help="where the folders are kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    jobs_list = [int(j) for j in args.jobs.split(",")]
    print(f"machine: {lscpu()}")
    for command, kind, n in (("read", "pages", args.pages), ("predict", "digits", args.digits)):
        if n > 0:
            truth = make_folder(args.dir, kind, n, args.seed)
            report(command, args.dir / kind, truth, jobs_list)
    print(f"machine after: {lscpu()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
