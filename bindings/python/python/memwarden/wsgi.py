"""WSGI middleware: memory per request, the seed's response headers, per-route analytics.

    from flask import Flask
    from memwarden.wsgi import MemoryTrackingMiddleware

    app = Flask(__name__)
    app.wsgi_app = MemoryTrackingMiddleware(app.wsgi_app, threshold_mb=50, sample_rate=1.0)

The headers ``X-Memory-Usage``, ``X-Memory-Peak``, ``X-Memory-Limit`` and
``X-Memory-Efficiency`` are added when the application calls ``start_response``; the body is
never buffered. The request ends, with its final figures, when the server closes the response
iterable (after the last chunk of a streamed body): that is when the analytics are recorded and
the high-usage and analytics handlers run.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from ._middleware import UNMATCHED, MiddlewareBase

__all__ = ["MemoryTrackingMiddleware"]


def _flask_rule(environ: Dict[str, Any]) -> Optional[str]:
    """Flask's (werkzeug's) matched rule, ``"/users/<int:id>"``; UNMATCHED when it routed nothing."""
    req = environ.get("werkzeug.request")
    if req is None:
        return None
    rule = getattr(req, "url_rule", None)
    if rule is None:
        return UNMATCHED if hasattr(req, "url_rule") else None
    return str(rule.rule)


class _Body:
    """The application's iterable, passed through chunk by chunk; ``close()`` ends the request."""

    __slots__ = ("_result", "_mw", "_token", "_environ", "_alloc", "_route")

    def __init__(
        self, result: Iterable[bytes], mw: "MemoryTrackingMiddleware", token: Any, environ: Any, alloc: Any, route: Any
    ):
        self._result = result
        self._mw = mw
        self._token = token
        self._environ = environ
        self._alloc = alloc
        self._route = route

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._mw._finish(self._token, self._environ, self._alloc, self._route[0])


class MemoryTrackingMiddleware(MiddlewareBase):
    """Wraps a WSGI application: ``MemoryTrackingMiddleware(app, options=None, **options)``.

    Options (the seed's): ``enabled`` (True), ``track_peak`` (True), ``log_high_usage``
    (True), ``threshold_mb`` (50: growth during a request above this is high usage),
    ``detailed_tracking`` (False; with ``track_allocations``, ``track_deallocations``,
    ``include_stack_traces`` it uses ``tracemalloc``, which slows every request several times),
    ``include_headers`` (True), ``log_file`` (JSON lines; default stderr), ``sample_rate``
    (1.0). Also ``route_template``: ``callable(environ) -> str``, called when the application
    calls ``start_response``; by default Flask's matched rule (``"GET /users/<int:id>"``), else
    ``"METHOD /path"``, bounded by ``max_routes`` (200; the rest are counted as ``"other"``).
    ``random_seed``, ``memory_limit`` and ``sampler_interval_ms`` go to the core. A bad option
    raises ``ConfigError`` (a ``ValueError``) naming it.
    """

    def _default_route(self, environ: Dict[str, Any]) -> str:
        method = environ.get("REQUEST_METHOD", "GET")
        rule = _flask_rule(environ)
        if rule is not None:
            return f"{method} {rule}"
        return f"{method} {environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '/')}"

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        token = self.tracker.begin(UNMATCHED)
        if token is None:
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        alloc = self._alloc_begin() if self._allocations else None
        include_headers = self._include_headers
        # The route, taken while the framework's request is still there (Flask drops it from
        # the environ before the server closes the body).
        route: List[Optional[str]] = [None]

        def tracked_start_response(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
            if route[0] is None:
                route[0] = self._route(environ)
            if include_headers:
                try:
                    headers = [*headers, *self._headers(token, False)]
                except Exception:  # a failed reading must not break the response
                    pass
            return start_response(status, headers, exc_info)

        try:
            result = self.app(environ, tracked_start_response)
        except BaseException:
            self._finish(token, environ, alloc, route[0])
            raise
        return _Body(result, self, token, environ, alloc, route)
