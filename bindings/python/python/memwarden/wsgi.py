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
    """One request: its ``start_response`` (adds the headers, notes the route) and the
    application's iterable, passed through chunk by chunk; ``close()`` ends the request.
    Slots set by the middleware, no closure and no ``__init__``: fewer objects and calls per
    request."""

    __slots__ = ("_result", "_mw", "_token", "_environ", "_alloc", "_route", "_start_response", "_headers")

    _result: Iterable[bytes]
    _mw: "MemoryTrackingMiddleware"
    _token: Any
    _environ: Dict[str, Any]
    _alloc: Any
    _route: Optional[str]
    _start_response: Callable[..., Any]
    _headers: Optional[Callable[[Any, bool], Tuple[Tuple[str, str], ...]]]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def tracked_start_response(self, status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
        # The route, taken while the framework's request is still there (Flask drops it from
        # the environ before the server closes the body).
        if self._route is None:
            self._route = self._mw._route_of(self._environ)
        if self._headers is not None:
            try:
                headers = [*headers, *self._headers(self._token, False)]
            except Exception:  # a failed reading must not break the response
                pass
        return self._start_response(status, headers, exc_info)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._mw._finish(self._token, self._environ, self._alloc, self._route)


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
        if "werkzeug.request" in environ:
            rule = _flask_rule(environ)
            if rule is not None:
                return f"{method} {rule}"
        return f"{method} {environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '/')}"

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        token = self._begin(UNMATCHED)
        if token is None:
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        body = _Body()
        body._result = ()
        body._mw = self
        body._token = token
        body._environ = environ
        body._alloc = self._alloc_begin() if self._allocations else None
        body._route = None
        body._start_response = start_response
        body._headers = self._response_headers if self._include_headers else None
        try:
            body._result = self.app(environ, body.tracked_start_response)
        except BaseException:
            self._finish(token, environ, body._alloc, body._route)
            raise
        return body
