"""Micro-batching: concurrent requests share one model call.

Requests put their image on a queue and wait on a future. One worker takes everything that is
queued (up to `max_batch`), runs `Recognizer.predict_many` once in the inference thread, and hands
each request its own answer. Nothing waits on a timer: while one batch runs, the next requests
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

from ..errors import ImageError


@dataclass
class _Job:
    image: bytes
    name: str | None
    top_k: int
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """`predict(image, name, top_k)` answers like `recognizer.predict` but batches concurrent calls."""

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
        """On the inference thread: one predict_many per distinct top_k."""
        if self.on_batch is not None:
            self.on_batch(len(jobs))
        outcomes: list[Any] = [None] * len(jobs)
        for top_k in sorted({job.top_k for job in jobs}):
            index = [i for i, job in enumerate(jobs) if job.top_k == top_k]
            images = [jobs[i].image for i in index]
            names = [jobs[i].name for i in index]
            try:
                answers: list[Any] = self.recognizer.predict_many(images, top_k=top_k, names=names)
            except ImageError:
                # One bad image spoils the batch call; answer each alone so only it fails.
                answers = [self._predict_one(image, name, top_k) for image, name in zip(images, names)]
            for i, answer in zip(index, answers):
                outcomes[i] = answer
        return outcomes

    def _predict_one(self, image: bytes, name: str | None, top_k: int) -> Any:
        try:
            return self.recognizer.predict(image, top_k=top_k, name=name)
        except ImageError as exc:
            return exc
