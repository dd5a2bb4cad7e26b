"""Micro-batching: concurrent requests share one model call.

Requests put their image on a queue and wait on a future. One worker takes everything that is
queued (up to `max_batch`), preprocesses each image and classifies them all with one model call
(`Recognizer.prepare` + `Recognizer.classify`, what `predict_many` does, but a bad image fails
alone instead of failing the batch) on the inference thread, and hands each request its answer. Nothing waits on a timer: while one batch runs, the next requests
pile up and form the next batch, so a lone request is answered at once and a burst is answered
in a few large model calls instead of many small ones.

All model work happens on one dedicated thread, so the model never runs twice at once and the
event loop stays free to read and write HTTP.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable



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

    def __init__(self, recognizer: Any, executor: ThreadPoolExecutor, max_batch: int = 32,
                 on_batch: Callable[[int], None] | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.recognizer = recognizer
        self.executor = executor
        self.max_batch = max_batch
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._serve(), name="digitrec-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
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
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < self.max_batch and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            try:
                outcomes = await loop.run_in_executor(self.executor, self._run, jobs)
            except Exception as exc:  # a bug in the model call: every waiting request gets it (HTTP 500)
                outcomes = [exc] * len(jobs)
            for job, outcome in zip(jobs, outcomes):
                if job.future.done():  # the client went away
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    def _run(self, jobs: list[_Job]) -> list[Any]:
        """On the inference thread: preprocess each image (a bad one fails alone), then one
        model call per distinct top_k for all the usable digits."""
        if self.on_batch is not None:
            self.on_batch(len(jobs))
        outcomes: list[Any] = [None] * len(jobs)
        prepared: dict[int, Any] = {}
        for i, job in enumerate(jobs):
            try:
                prepared[i] = self.recognizer.prepare(job.image, job.name)
            except Exception as exc:  # ImageError (a 4xx), or a bug this image hit (a 500 for it alone)
                outcomes[i] = exc
        for top_k in sorted({jobs[i].top_k for i in prepared}):
            index = [i for i in prepared if jobs[i].top_k == top_k]
            answers = self.recognizer.classify([prepared[i] for i in index], top_k)
            for i, answer in zip(index, answers):
                outcomes[i] = answer
        return outcomes
