"""Refuse oversized uploads while they stream in, not after they have been read.

A pure ASGI middleware counts the request body as the server receives it. A declared
Content-Length over the limit is refused before a single body byte is parsed; a chunked or lying
upload is cut off as soon as the running total passes the limit, so memory and temporary files
stay bounded whatever the client sends. The limit covers the whole multipart body, so it is the
per-file limit plus a small allowance for the multipart envelope; the routes then check each
file's exact size.

An answer given before the body is in (a 413, or a body found malformed part-way) must still
reach the client. Many clients write the whole request before they read anything (Python's
urllib and http.client): if the server closed at once, the unread rest of the upload in its socket
would make the kernel reset the connection, and the reset throws away the answer on the client's
side ("Connection reset by peer" instead of the 413). So the answer is written, then the rest of
the body is read and dropped, a bounded amount for a bounded time, and only then is the
connection closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digitrec.server.problems import Problem, problem_body, problem_response, problem_type, upload_too_large

# Room for the multipart boundary lines and part headers around each file (bytes).
MULTIPART_OVERHEAD = 16 * 1024
# After an early answer: how much more of the body is read and dropped, and for how long, so the
# client finishes sending and reads the answer. 16 MB covers a phone photo (6-15 MB) sent as it
# is; a longer upload would not be finished anyway, so it is not read at all, and a client that
# sends slower than the time allows is closed on, as before.
DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_SECONDS = 10.0


class RequestBody:
    """The request body as the app pulls it: how much came in, and whether it all did."""

    def __init__(self, receive: Receive, declared: int | None) -> None:
        self._receive = receive
        self.declared = declared  # Content-Length, if the client sent one
        self.received = 0
        self.complete = False  # the last body message came in, or the client went away

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        else:  # http.disconnect: nothing more will come
            self.complete = True
        return message

    async def drain(self, budget: int, seconds: float) -> None:
        """Read and drop the rest of the body: at most `budget` bytes more, for at most `seconds`."""
        if self.declared is not None and self.declared - self.received > budget:
            return  # more than the budget is still to come: reading part of it would not help

        async def read_rest() -> None:
            stop = self.received + budget
            while not self.complete and self.received <= stop:
                await self.receive()

        try:
            await asyncio.wait_for(read_rest(), seconds)
        except asyncio.TimeoutError:
            pass  # a slow sender: it gets the close it would have got without the drain


class UploadLimitMiddleware:
    """`body_limit(path)` gives the largest request body accepted on `path` and the sentence a
    refused client reads, or None for no limit."""

    def __init__(
        self,
        app: ASGIApp,
        body_limit: Callable[[str], tuple[int, str] | None],
        drain_bytes: int = DRAIN_BYTES,
        drain_seconds: float = DRAIN_SECONDS,
    ) -> None:
        self.app = app
        self.body_limit = body_limit
        self.drain_bytes = drain_bytes
        self.drain_seconds = drain_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        rule = self.body_limit(scope["path"])
        if rule is None:
            await self.app(scope, receive, send)
            return
        limit, detail = rule
        body = RequestBody(receive, _content_length(scope))
        started = False

        async def answer(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body.complete and not any(name == b"connection" for name, _ in message.get("headers", ())):
                    # Answered before the body was read to the end (an error): after the drain below
                    # the server closes the connection instead of reading on to the next request.
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            elif message["type"] == "http.response.body" and not message.get("more_body", False) and not body.complete:
                # The whole answer is written, but finished only after the drain: finishing it
                # closes the connection, and the body must be read before that (module docstring).
                await send({**message, "more_body": True})
                await body.drain(self.drain_bytes, self.drain_seconds)
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        if body.declared is not None and body.declared > limit:
            # Refused on the headers alone: no body byte is parsed.
            await _refuse(scope, receive, answer, detail)
            return

        async def limited_receive() -> Message:
            message = await body.receive()
            if body.received > limit:
                # Raised inside the form parser; FastAPI re-raises HTTPExceptions from body
                # parsing, and the app's problem handler turns it into a 413.
                raise upload_too_large(detail)
            return message

        try:
            await self.app(scope, limited_receive, answer)
        except Problem as exc:
            # Reached only if the body was read outside a route's exception handling.
            if started or exc.status_code != 413:
                raise
            await _refuse(scope, receive, answer, str(exc.detail))


async def _refuse(scope: Scope, receive: Receive, send: Send, detail: str) -> None:
    """The 413 problem answer, sent through `send`."""
    exc = upload_too_large(detail)
    body = problem_body(413, exc.title, detail, problem_type(exc.slug), scope["path"])
    await problem_response(body, exc.headers)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
