"""ASGI middleware: memory per request, the seed's response headers, per-route analytics.

    from starlette.applications import Starlette
    from memwarden.asgi import MemoryTrackingMiddleware

    app = MemoryTrackingMiddleware(Starlette(routes=[...]), threshold_mb=50)

Pure ASGI: ``send`` is wrapped to add ``X-Memory-Usage``, ``X-Memory-Peak``,
``X-Memory-Limit`` and ``X-Memory-Efficiency`` to ``http.response.start``; the body is never
buffered. The request ends, with its final figures, after the last ``http.response.body``
message is sent (or when the application returns or fails without one): that is when the
analytics are recorded and the high-usage and analytics handlers run. ``lifespan`` and
``websocket`` scopes pass through untouched.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, MutableMapping, Optional, Tuple

from ._middleware import UNMATCHED, MiddlewareBase

__all__ = ["MemoryTrackingMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _framework_route(scope: Scope) -> Optional[str]:
    """The matched route's path template: FastAPI's ``scope["route"]``, else the Starlette route
    whose endpoint the router put in ``scope["endpoint"]``; UNMATCHED when a router routed
    nothing; None without a router."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    router = scope.get("router")
    if router is None:
        return None
    endpoint = scope.get("endpoint")
    if endpoint is not None:
        for r in getattr(router, "routes", ()):
            if getattr(r, "endpoint", None) is endpoint and isinstance(getattr(r, "path", None), str):
                return str(r.path)
    return UNMATCHED


class _Cycle:
    """One request: its wrapped ``send``. Slots set by the middleware, no closure and no
    ``__init__``: fewer objects and calls per request."""

    __slots__ = ("mw", "token", "scope", "alloc", "send", "headers", "ended")

    mw: "MemoryTrackingMiddleware"
    token: Any
    scope: Scope
    alloc: Any
    send: Send
    headers: Optional[Callable[[Any, bool], Tuple[Tuple[bytes, bytes], ...]]]
    #: The request ends once: after its last body message is sent, else when the application
    #: returns or fails.
    ended: bool

    async def tracked_send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.headers is not None:
                try:
                    extra = self.headers(self.token, True)
                except Exception:  # a failed reading must not break the response
                    extra = ()
                message["headers"] = [*message.get("headers", ()), *extra]
        elif kind == "http.response.body" and not message.get("more_body", False):
            await self.send(message)
            if not self.ended:
                self.ended = True
                self.mw._finish(self.token, self.scope, self.alloc)
            return
        await self.send(message)


class MemoryTrackingMiddleware(MiddlewareBase):
    """Wraps an ASGI application: ``MemoryTrackingMiddleware(app, options=None, **options)``.

    Options as ``memwarden.wsgi.MemoryTrackingMiddleware``; ``route_template`` is
    ``callable(scope) -> str`` here, and by default the framework's route (FastAPI's
    ``scope["route"].path``, Starlette's matched route, ``"GET /users/{id}"``), else
    ``"METHOD /path"`` bounded by ``max_routes``.
    """

    def _default_route(self, scope: Scope) -> str:
        method = scope.get("method", "GET")
        if "route" in scope or "router" in scope:
            path = _framework_route(scope)
            if path is not None:
                return f"{method} {path}"
        return f"{method} {scope.get('root_path', '')}{scope.get('path', '/')}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = self._begin(UNMATCHED)
        if token is None:
            await self.app(scope, receive, send)
            return
        c = _Cycle()
        c.mw = self
        c.token = token
        c.scope = scope
        c.alloc = self._alloc_begin() if self._allocations else None
        c.send = send
        c.headers = self._response_headers if self._include_headers else None
        c.ended = False
        try:
            await self.app(scope, receive, c.tracked_send)
        finally:
            if not c.ended:
                c.ended = True
                self._finish(token, scope, c.alloc)
