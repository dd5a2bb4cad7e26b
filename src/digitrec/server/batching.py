"""Micro-batching: concurrent requests share one model call.

Requests put their image on a queue and wait on a future. One worker takes everything that is
queued (up to `max_batch`), preprocesses each image and classifies them all with one model call
(`Recognizer.prepare` + `Recognizer.classify`, what `predict_many` does, but a bad image fails
alone instead of failing the batch) on the inference thread, and hands each request its answer.
Nothing waits on a timer: while one batch runs, the next requests pile up and form the next batch, so a lone request is answered at once and a burst is answered
in a few large model calls instead of many small ones.

All model work happens on one dedicated thread, so the model never runs twice at once and the
event loop stays free to read and write HTTP.

Preprocessing (decoding, finding the ink, making the 28x28 digit: about two thirds of a request's
CPU) can run in a separate process instead (`preprocess=` a `PreprocessPool`): Python runs one
thread at a time per process, so in one process the HTTP work and the preprocessing take turns
on one core; in two they use two. Each batch crosses over once (its images there, its prepared
digits back), and the model still runs in the server process, once per batch. The process takes
a batch whenever it is free; a batch that arrives while it is busy is prepared on the inference
thread, so under load both cores preprocess.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("digitrec.server")


@dataclass
class _Job:
    image: bytes
    name: str | None
    top_k: int
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """`predict(image, name, top_k)` answers like `recognizer.predict` but batches concurrent calls.

    `recognizer` needs `prepare(image, name) -> Prepared` (raising ImageError for a bad image)
    and `classify(list[Prepared], top_k) -> list[Prediction]` (one model call)."""

    def __init__(
        self,
        recognizer: Any,
        executor: ThreadPoolExecutor,
        max_batch: int = 32,
        on_batch: Callable[[int], None] | None = None,
        preprocess: PreprocessPool | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.recognizer = recognizer
        self.executor = executor
        self.max_batch = max_batch
        self.on_batch = on_batch
        self.preprocess = preprocess  # None: preprocess on the inference thread
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        self._free: asyncio.Event | None = None  # set while the thread or the process can take a batch
        self._thread_busy = False  # the inference thread is preparing or classifying a batch
        self._process_busy = False  # the preprocessing process is preparing a batch
        self._running: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._free = asyncio.Event()
        self._free.set()
        self._worker = asyncio.create_task(self._serve(), name="digitrec-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the service is shutting down"))

    async def predict(self, image: bytes, name: str | None = None, top_k: int = 3) -> Any:
        """One Prediction; raises the recognizer's ImageError for a bad image."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(image, name, top_k, future))
        return await future

    async def _serve(self) -> None:
        """Hand each batch to whoever is free: the preprocessing process first, else the inference
        thread. With both busy, requests queue up and form the next batch.

        Both at once is what keeps two cores busy on costly images: while the process decodes one
        batch of photos, the inference thread prepares the next one itself instead of waiting (a
        photo's preprocessing costs twice the HTTP work around it), and the process takes a new
        batch as soon as it hands back its digits, while the model classifies them."""
        assert self._queue is not None and self._free is not None
        while True:
            await self._free.wait()
            jobs = [await self._queue.get()]
            while len(jobs) < self.max_batch and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            if self.preprocess is not None and not self._process_busy:
                self._process_busy = True
                self._spawn(self._answer_elsewhere(jobs), jobs)
            else:
                self._thread_busy = True
                self._spawn(self._answer_here(jobs), jobs)
            self._update_free()

    def _spawn(self, work: Any, jobs: list[_Job]) -> None:
        async def answered() -> None:
            try:
                await work
            except asyncio.CancelledError:  # stop(): no request is left waiting for ever
                _settle(jobs, [RuntimeError("the service is shutting down")] * len(jobs))
                raise

        task = asyncio.create_task(answered())
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def _update_free(self) -> None:
        assert self._free is not None
        thread_free = not self._thread_busy
        process_free = self.preprocess is not None and not self._process_busy
        if thread_free or process_free:
            self._free.set()
        else:
            self._free.clear()

    async def _answer_elsewhere(self, jobs: list[_Job]) -> None:
        """Prepare in the preprocessing process, then classify on the inference thread; the process
        is free for the next batch as soon as it has handed this one back."""
        try:
            prepared = await self._prepare_elsewhere(jobs)
        except Exception as exc:  # noqa: BLE001 - every waiting request gets it (HTTP 500)
            prepared = [exc] * len(jobs)
        finally:
            self._process_busy = False
            self._update_free()
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(self.executor, self._classify, jobs, prepared)
        except Exception as exc:  # a bug in the model call: every waiting request gets it (HTTP 500)
            outcomes = [exc] * len(jobs)
        _settle(jobs, outcomes)

    async def _answer_here(self, jobs: list[_Job]) -> None:
        """Prepare and classify on the inference thread."""
        try:
            outcomes = await asyncio.get_running_loop().run_in_executor(self.executor, self._run, jobs)
        except Exception as exc:  # a bug in the model call: every waiting request gets it (HTTP 500)
            outcomes = [exc] * len(jobs)
        finally:
            self._thread_busy = False
            self._update_free()
        _settle(jobs, outcomes)

    async def _prepare_elsewhere(self, jobs: list[_Job]) -> list[Any]:
        """The batch's images preprocessed in the preprocessing process: a Prepared or the
        exception, per image. Should that process die (a crash in an image decoder, the OOM
        killer), the service carries on preprocessing on its inference thread."""
        assert self.preprocess is not None
        try:
            return await self.preprocess.prepare([(job.image, job.name) for job in jobs])
        except BrokenProcessPool:
            log.error("the preprocessing process died; preprocessing in the server process from now on")
            pool, self.preprocess = self.preprocess, None
            pool.close()
            self._update_free()
            return await asyncio.get_running_loop().run_in_executor(self.executor, self._prepare_here, jobs)

    def use_process(self, pool: PreprocessPool) -> None:
        """From now on, hand batches to this preprocessing process whenever it is free."""
        self.preprocess = pool
        if self._free is not None:
            self._update_free()

    def _prepare_here(self, jobs: list[_Job]) -> list[Any]:
        return prepare_images(self.recognizer, [(job.image, job.name) for job in jobs])

    def _run(self, jobs: list[_Job]) -> list[Any]:
        """On the inference thread: preprocess each image (a bad one fails alone), then one
        model call per distinct top_k for all the usable digits."""
        return self._classify(jobs, self._prepare_here(jobs))

    def _classify(self, jobs: list[_Job], prepared_or_errors: list[Any]) -> list[Any]:
        """On the inference thread: one model call per distinct top_k for the usable digits."""
        if self.on_batch is not None:
            self.on_batch(len(jobs))
        outcomes: list[Any] = list(prepared_or_errors)
        prepared = {i: p for i, p in enumerate(prepared_or_errors) if not isinstance(p, BaseException)}
        for top_k in sorted({jobs[i].top_k for i in prepared}):
            index = [i for i in prepared if jobs[i].top_k == top_k]
            answers = self.recognizer.classify([prepared[i] for i in index], top_k)
            for i, answer in zip(index, answers):
                outcomes[i] = answer
        return outcomes


def _settle(jobs: list[_Job], outcomes: list[Any]) -> None:
    """Hand each waiting request its answer or its exception."""
    for job, outcome in zip(jobs, outcomes):
        if job.future.done():  # the client went away
            continue
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)


def prepare_images(recognizer: Any, images: list[tuple[bytes, str | None]]) -> list[Any]:
    """`recognizer.prepare` for each image; an exception (ImageError: a 4xx; or a bug this image
    hit: a 500 for it alone) is returned in the image's place rather than raised."""
    outcomes: list[Any] = []
    for image, name in images:
        try:
            outcomes.append(recognizer.prepare(image, name))
        except Exception as exc:  # noqa: BLE001 - handed to this image's request
            outcomes.append(exc)
    return outcomes


# --- the preprocessing process -------------------------------------------------------------------

_worker_recognizer: Any = None  # in the preprocessing process: the recognizer whose prepare runs


def _start_worker(model_path: str | None, server_pid: int, backend: str) -> None:
    """Initialiser of the preprocessing process: its own copy of the recognizer (prepare needs no
    model, but a Recognizer is what prepare belongs to), on the server's backend, one thread."""
    global _worker_recognizer
    _end_with_server(server_pid)
    from digitrec.reading.recognize import Recognizer
    from digitrec.runtime.threads import set_inference_threads

    set_inference_threads(1)
    _worker_recognizer = Recognizer.load(model_path, backend=backend)


def _end_with_server(server_pid: int) -> None:
    """On Linux, have the kernel end this process when the server process ends, however it ends
    (a SIGKILL included), so no preprocessing process outlives its server."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
    if os.getppid() != server_pid:  # the server ended before the request above
        os._exit(0)


def _prepare_in_worker(images: list[tuple[bytes, str | None]]) -> list[Any]:
    return prepare_images(_worker_recognizer, images)


class PreprocessPool:
    """A process that preprocesses images for the server, started (with `spawn`: a clean
    interpreter, no copy of the server's threads) and warmed up before the service is ready."""

    def __init__(self, model_path: str | None, processes: int = 1, backend: str = "onnx") -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.model_path = model_path
        self._pool = ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(model_path, os.getpid(), backend),
        )

    async def start(self) -> None:
        """Wait until the process has started and loaded what it needs (a few seconds)."""
        await self.prepare([])

    async def prepare(self, images: list[tuple[bytes, str | None]]) -> list[Any]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, _prepare_in_worker, images)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
