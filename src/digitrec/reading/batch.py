"""Many inputs at once: folders of scans, lists of files and stdin, over one or several processes.

`expand_inputs` turns what a user named (files, directories, `-` for stdin) into `Source`s, in the
order given, each directory's images and PDFs sorted and found recursively. `run` hands them, in
chunks, to a task (`PredictTask`: one digit per image; `ReadTask`: a number per image;
`digitrec.reading.forms.task.FormTask`: the fields of every page of a form) and yields each
chunk's `Outcome`s in input order as soon as they are ready: with `jobs` > 1, chunks are shared
by that many processes (this one and `jobs` - 1 workers), each loading its `Recognizer` once. Only
paths wait in line; at most a few chunks are in flight, and an image is dropped as soon as it is answered, so memory stays flat however many
files there are. A bad file is an `Outcome` with an error (one line), never the end of the run.

    from digitrec.reading.batch import PredictTask, expand_inputs, run
    for outcomes in run(PredictTask(), expand_inputs(["scans/"]), jobs=2):
        for o in outcomes:
            print(o.file, o.error or o.answer)
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from PIL import Image

from digitrec.atomic import atomic_write
from digitrec.errors import BadImageError, ConfigError, DigitrecError, ImageError, NotAnImageError
from digitrec.reading.decode import MAX_FILE_BYTES, read_file
from digitrec.reading.forms.results import FieldReading
from digitrec.reading.pages import document_kind
from digitrec.reading.recognize import Recognizer
from digitrec.reading.results import Prediction, Prepared, Reading
from digitrec.reading.verifier import load_verifier
from digitrec.runtime.loading import DEFAULT_BACKEND
from digitrec.runtime.threads import inference_threads_set, set_inference_threads

# What a directory is searched for (lower case; `.JPG` from a camera counts). PDFs are form pages,
# read with a template; without one, each is named and refused, never silently skipped.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".heic", ".heif")
PDF_SUFFIXES = (".pdf",)
FORM_FLAGS = "digitrec read --template or --field"  # how a user gives a template, named when one is missing
IN_FLIGHT_PER_JOB = 2  # chunks sent to each worker ahead: one running, one waiting (more: a longer tail at the end)
WINDOW_PER_JOB = 8  # chunks answered but not yet printed, at most, per process: bounds what is held


@dataclass(frozen=True)
class Source:
    """One input: `path` as it is printed (a file argument, or a directory argument joined with the
    file's place in it), `relative` its place under its directory argument (its name for a file
    argument), `data` the bytes of stdin (read by the calling process: a worker has no stdin),
    `error` why it cannot be read at all (an empty or unreadable directory)."""

    path: str
    relative: str
    data: bytes | None = None
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What came of one input: its answer, or the one-line reason it could not be used. A form's
    answer is its `fields`, one reading per field of each page; it may come with an `error` too
    (a page that could not be read, a field off its page) when the rest was read."""

    file: str
    answer: Prediction | Reading | None = None
    error: str | None = None
    fields: tuple[FieldReading, ...] = ()

    @property
    def answers(self) -> list[Prediction | Reading | FieldReading]:
        """What to print for this input, one row each."""
        return list(self.fields) if self.fields else [] if self.answer is None else [self.answer]


def expand_inputs(paths: Iterable[str]) -> Iterator[Source]:
    """Files (any name: the decoder judges them), `-` (stdin) and directories (their images, found
    recursively, sorted), in the order given. A path that does not exist is passed on, to be
    reported as missing like any unreadable file."""
    for path in paths:
        if path == "-" or not os.path.isdir(path):
            yield Source(path, "stdin" if path == "-" else os.path.basename(path))
            continue
        found, problem = _images_under(path)
        for relative in found:
            yield Source(os.path.join(path, relative), relative)
        if problem or not found:
            kinds = ", ".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
            yield Source(path, "", error=problem or f"a directory with no image files ({kinds})")


def _images_under(root: str) -> tuple[list[str], str | None]:
    """The images below `root` (relative paths, sorted part by part) and the first directory that
    could not be listed. Hidden files and directories are skipped: macOS `._name.png` shadows and
    temporary files are not scans."""
    found: list[str] = []
    problems: list[OSError] = []
    for folder, dirs, files in os.walk(root, onerror=problems.append):  # symlinked folders not followed: no loops
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES + PDF_SUFFIXES):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    found.sort(key=lambda relative: Path(relative).parts)
    problem = f"cannot list {problems[0].filename}: {problems[0].strerror}" if problems else None
    return found, problem


def load_bytes(source: Source, pages: bool = False) -> bytes:
    """The bytes of one input, every failure as a one-line ImageError. Unless `pages` (a form
    task, which reads them page by page), a PDF or a TIFF of several pages is refused."""
    if source.error:
        raise BadImageError(source.error)
    if source.path != "-":
        data = read_file(source.path)
    else:
        data = source.data if source.data is not None else load_stdin()
        if len(data) > MAX_FILE_BYTES:
            raise BadImageError(f"input is larger than the {MAX_FILE_BYTES // 2**20} MB limit")
    kind = None if pages else document_kind(data)
    if kind:
        raise NotAnImageError(f"{kind} holds form pages: read them with a page template ({FORM_FLAGS})")
    return data


# --- what is done with each input ----------------------------------------------------------------


class Task(Protocol):
    """What to do with each input. Tasks are small picklable settings: each worker process gets a
    copy and loads its own recognizer from it."""

    @property
    def chunk_size(self) -> int:
        """Inputs handed to a process at a time."""
        ...

    def load(self) -> Recognizer: ...

    def answer(self, recognizer: Recognizer, sources: list[Source]) -> list[Outcome]: ...


@dataclass(frozen=True)
class PredictTask:
    """One digit per image, a chunk's usable digits classified in one model call. The chunk size is
    the same for any number of processes, so the batches, and so the answers, are too."""

    model: str | None = None
    backend: str = DEFAULT_BACKEND
    top_k: int = 3
    chunk_size: int = 32

    def load(self) -> Recognizer:
        return Recognizer.load(self.model, backend=self.backend)

    def answer(self, recognizer: Recognizer, sources: list[Source]) -> list[Outcome]:
        prepared: list[Prepared] = []
        errors: dict[int, str] = {}
        for i, source in enumerate(sources):
            try:
                prepared.append(recognizer.prepare(load_bytes(source), name=source.path))
            except ImageError as exc:  # this file alone fails
                errors[i] = str(exc)
        predictions = iter(recognizer.classify(prepared, self.top_k))
        return [
            Outcome(s.path, error=errors[i]) if i in errors else Outcome(s.path, next(predictions))
            for i, s in enumerate(sources)
        ]


@dataclass(frozen=True)
class ReadTask:
    """A number per image; with `overlay`, the boxes drawn too: into that file for a lone input,
    or (`several`) into that directory as RELATIVE.overlay.png, mirroring the folders read."""

    model: str | None = None
    backend: str = DEFAULT_BACKEND
    reader: str | None = None
    checker: str | None = None
    verifier: str | None = None
    overlay: str | None = None
    several: bool = False
    chunk_size: int = 2  # pages take ~0.5 s each: small chunks share the work out evenly

    def load(self) -> Recognizer:
        verifier = load_verifier(self.verifier) if self.verifier else None
        recognizer = Recognizer.load(
            self.model, backend=self.backend, reader=self.reader, checker=self.checker, verifier=verifier
        )
        _ = recognizer.reader, recognizer.checker  # load them now: a bad --reader or --checker fails before any image
        return recognizer

    def answer(self, recognizer: Recognizer, sources: list[Source]) -> list[Outcome]:
        outcomes = []
        for source in sources:
            try:
                data = load_bytes(source)
                reading = recognizer.read(data, name=source.path)
                if self.overlay:
                    save_atomic(recognizer.draw_overlay(data, reading), self.overlay_path(source))
            except ImageError as exc:  # this file alone fails
                outcomes.append(Outcome(source.path, error=str(exc)))
                continue
            outcomes.append(Outcome(source.path, reading))
        return outcomes

    def overlay_path(self, source: Source) -> Path:
        if not self.overlay or not self.several:
            return Path(self.overlay or "")
        return Path(self.overlay) / f"{os.path.splitext(source.relative)[0]}.overlay.png"


def save_atomic(image: Image.Image, path: Path) -> None:
    """Write an image to a temporary file beside `path`, then rename: never a half-written file."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{path}: unknown image extension {path.suffix!r} (use .png)")
    atomic_write(path, lambda handle: image.save(handle, fmt))


# --- running ---------------------------------------------------------------------------------------


def run(task: Task, sources: Iterable[Source], jobs: int = 1) -> Iterator[list[Outcome]]:
    """Each chunk's outcomes, in input order, as soon as they and all before them are done.

    `jobs` 1 answers in this process; N > 1 starts N - 1 worker processes and answers in this one
    too while it waits for them (so a few files never wait for workers to start), never more
    processes than there are chunks. A model that fails to load raises (a DigitrecError). Inference
    runs on one thread in this process while the iteration lasts (`one_thread`). With N > 1,
    call this under `if __name__ == "__main__":` in a script: workers are started with `spawn`,
    which imports the calling script again."""
    chunks = _chunks(sources, task.chunk_size)
    if isinstance(sources, list | tuple):
        jobs = min(jobs, max(1, -(-len(sources) // task.chunk_size)))
    with one_thread():
        recognizer = task.load()
        if jobs <= 1:
            for chunk in chunks:
                yield answer_chunk(task, recognizer, chunk)
        else:
            yield from _shared(task, recognizer, chunks, jobs - 1)


def answer_chunk(task: Task, recognizer: Recognizer, chunk: list[Source]) -> list[Outcome]:
    """One chunk's outcomes, then the heap pages its images used given back to the system. glibc
    keeps freed pages between live blocks and reuses them poorly: reading 300 dpi pages, a process
    grew by ~2.3 MB a page (900 MB to 1.08 GB over 80 pages); trimmed after each chunk (well under
    a millisecond), by ~0.2 MB a page and slowing (797 to 841 MB over 200), most of it oneDNN's
    cache of kernels for each batch shape met, which is bounded."""
    outcomes = task.answer(recognizer, chunk)
    if _LIBC is not None:
        with contextlib.suppress(AttributeError):
            _LIBC.malloc_trim(0)
    return outcomes


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


_LIBC = _load_libc()  # prctl and malloc_trim, on Linux (a libc without malloc_trim, e.g. musl, skips it)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """ONNX Runtime (or torch) on one thread, as in each worker process: `jobs` N then uses N
    cores, and the answers are the same to the last bit for any N (sums over several threads are
    added in another order: confidences would differ in the tenth decimal)."""
    with inference_threads_set(1):
        yield


def _chunks(sources: Iterable[Source], size: int) -> Iterator[list[Source]]:
    iterator = iter(sources)
    while chunk := list(itertools.islice(iterator, size)):
        # stdin is read here, by the calling process, whichever process answers it
        yield [replace(s, data=load_stdin()) if s.path == "-" and s.data is None else s for s in chunk]


def load_stdin() -> bytes:
    return sys.stdin.buffer.read(MAX_FILE_BYTES + 1)  # one byte over the limit: load_bytes refuses it


def _shared(
    task: Task, recognizer: Recognizer, chunks: Iterator[list[Source]], workers: int
) -> Iterator[list[Outcome]]:
    """Until a worker is ready (a second or more: it imports its libraries and loads its models), this process
    answers alone; then chunks go out to the workers, and this process answers the next chunk
    itself whenever the oldest one sent out is not back yet. The window holds the chunks in input
    order, each a Future (sent out) or a list (answered here)."""
    # spawn, not fork: a clean interpreter, no copy of this process's threads (the backend's among them)
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(task, os.getpid()),
    )
    ahead = IN_FLIGHT_PER_JOB * workers  # chunks sent out and not yet back
    window: deque[Future[list[Outcome]] | list[Outcome]] = deque()
    ready: list[Future[list[Outcome]]] = []
    try:
        with _sigint_ignored():  # the workers start now and inherit it: Ctrl-C is for this process to handle
            ready += [pool.submit(_answer_in_worker, []) for _ in range(workers)]
        while True:
            if any(probe.done() for probe in ready):
                for probe in ready:  # a worker that could not load its model raises here
                    _ = probe.result() if probe.done() else None
                sent = sum(isinstance(slot, Future) for slot in window)
                window.extend(pool.submit(_answer_in_worker, c) for c in itertools.islice(chunks, ahead - sent))
            head = window[0] if window else None
            if head is None or (
                isinstance(head, Future) and not head.done() and len(window) < WINDOW_PER_JOB * (workers + 1)
            ):
                chunk = next(chunks, None)
                if chunk is not None:  # answered here while the workers start or are busy
                    window.append(answer_chunk(task, recognizer, chunk))
                    continue
            if head is None:
                break
            window.popleft()
            yield head.result() if isinstance(head, Future) else head
    except BrokenProcessPool:
        raise DigitrecError("a worker process ended unexpectedly (out of memory?); try fewer --jobs") from None
    finally:
        if window or not all(probe.done() for probe in ready):  # stopped early, or done before the workers
            # end them now, whatever they are doing (the pool's own shutdown would let them finish;
            # it also forgets its processes, hence their list first)
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change signal handlers
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# In a worker process: the task and the recognizer it loaded (on the first chunk, so that a model
# that fails to load raises in the caller like any chunk's error).
_task: Task | None = None
_recognizer: Recognizer | None = None


def _start_worker(task: Task, parent: int) -> None:
    global _task
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _LIBC is not None:  # the kernel ends this process when its parent ends, even by SIGKILL
        with contextlib.suppress(AttributeError):
            _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before that was set
        os._exit(0)
    set_inference_threads(1)  # see one_thread
    _task = task


def _answer_in_worker(chunk: list[Source]) -> list[Outcome]:
    global _recognizer
    if _task is None:
        raise RuntimeError("_answer_in_worker runs in a process started by _start_worker")
    if _recognizer is None:
        _recognizer = _task.load()
    return answer_chunk(_task, _recognizer, chunk)
