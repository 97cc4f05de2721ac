"""ASGI fast path for ``POST /v1/score`` and ``POST /v1/score/batch``.

FastAPI's routing, request objects and dependency resolution cost more per request
than the model (~60 % of a single-impression request's CPU here). This middleware
answers the two scoring routes directly with the same :class:`ScoreHandlers` the
FastAPI routes use (which stay: they define the OpenAPI document and serve when the
fast path is switched off with ``FEDCTR_SERVE_FAST_PATH=false``).
"""

from __future__ import annotations

from typing import Any

from fedctr.server.scoring.api.handlers import TOO_LARGE, Reply, ScoreHandlers

_HEADERS = [(b"content-type", b"application/json")]
BAD_LENGTH = b"\x00bad-length"  # a sentinel, compared by identity (never a received body)


class ScoringFastPath:
    """Pure ASGI middleware: the scoring routes bypass the framework; the rest passes."""

    def __init__(self, app: Any, handlers: ScoreHandlers, routes: dict[str, str], limit: int):
        self.app = app
        self.limit = limit
        self.single = handlers.single
        self.batch = handlers.batch
        self.routes = routes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = None
        if scope["type"] == "http" and scope["method"] == "POST":
            kind = self.routes.get(scope["path"])
        if kind is None:
            await self.app(scope, receive, send)
            return
        body = await self._body(scope, receive)
        if body is None:
            reply: Reply = (413, TOO_LARGE)
        elif body is BAD_LENGTH:
            reply = (400, b'{"detail":"invalid Content-Length header"}')
        elif kind == "single":
            reply = self.single(body, scope["path"])
        else:
            content_type = next(
                (v for k, v in scope["headers"] if k == b"content-type"), b"application/json"
            )
            reply = self.batch(
                body,
                scope["path"],
                content_type=content_type.decode("latin-1"),
                query=scope.get("query_string", b"").decode("latin-1"),
            )
        await self._reply(send, reply)

    async def _body(self, scope: dict, receive: Any) -> bytes | None:
        """The body, None beyond the limit (declared or streamed), or :data:`BAD_LENGTH`."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    return BAD_LENGTH
                if int(value) > self.limit:
                    return None
                break
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @staticmethod
    async def _reply(send: Any, reply: Reply) -> None:
        status, payload = reply
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_HEADERS, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


__all__ = ["ScoringFastPath"]
