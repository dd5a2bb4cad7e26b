"""Refuse oversized uploads while they stream in, not after they have been read.

A pure ASGI middleware counts the request body as the server receives it. A declared
Content-Length over the limit is refused before a single body byte is read; a chunked or lying
upload is cut off as soon as the running total passes the limit, so memory and temporary files
stay bounded whatever the client sends. The limit covers the whole multipart body, so it is the
per-file limit plus a small allowance for the multipart envelope; the routes then check each
file's exact size.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digitrec.server.problems import Problem, problem_body, problem_response, problem_type, upload_too_large

# Room for the multipart boundary lines and part headers around each file (bytes).
MULTIPART_OVERHEAD = 16 * 1024


class UploadLimitMiddleware:
    """`body_limit(path)` gives the largest request body accepted on `path` and the sentence a
    refused client reads, or None for no limit."""

    def __init__(self, app: ASGIApp, body_limit: Callable[[str], tuple[int, str] | None]) -> None:
        self.app = app
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        rule = self.body_limit(scope["path"])
        if rule is None:
            await self.app(scope, receive, send)
            return
        limit, detail = rule
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            # Refused on the headers alone: the body is never read.
            exc = upload_too_large(detail)
            body = problem_body(413, exc.title, detail, problem_type(exc.slug), scope["path"])
            await problem_response(body, exc.headers)(scope, receive, send)
            return

        received = 0
        complete = False

        async def limited_receive() -> Message:
            nonlocal received, complete
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > limit:
                    # Raised inside the form parser; FastAPI re-raises HTTPExceptions from body
                    # parsing, and the app's problem handler turns it into a 413.
                    raise upload_too_large(detail)
            return message

        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not complete and not any(name == b"connection" for name, _ in message.get("headers", ())):
                    # Answered before the body was read to the end (an error): close the connection
                    # rather than let the server drain whatever the client still sends.
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except Problem as exc:
            # Reached only if the body was read outside a route's exception handling.
            if started or exc.status_code != 413:
                raise
            body = problem_body(413, exc.title, str(exc.detail), problem_type(exc.slug), scope["path"])
            await problem_response(body, exc.headers)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
