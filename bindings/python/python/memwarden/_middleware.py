"""What the WSGI and ASGI middlewares share: options, handlers, analytics, tracemalloc."""

from __future__ import annotations

import logging
import tracemalloc
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ._memwarden import ConfigError, RequestReport, RequestToken, RequestTracker

__all__ = ["MiddlewareBase"]

logger = logging.getLogger("memwarden")

#: The route of a request the framework did not route (a 404): one entry, not one per path.
UNMATCHED = "unmatched"

_DEBUG = logging.DEBUG

# Options the middleware itself handles; the rest are the core's (the seed's keys plus
# random_seed, max_routes, memory_limit, sampler_interval_ms) and are checked there.
_BINDING_KEYS = ("route_template",)


class MiddlewareBase:
    """Options, handlers and analytics of ``memwarden.wsgi`` / ``memwarden.asgi``."""

    def __init__(self, app: Any, options: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> None:
        merged: Dict[str, Any] = {}
        if options is not None:
            if not isinstance(options, Mapping):
                raise TypeError(
                    f"{type(self).__name__}() argument 'options' must be a dict or None, got {type(options).__name__}"
                )
            merged.update(options)
        for k, v in kwargs.items():
            if k in merged:
                raise ConfigError(
                    f"MemoryTrackingMiddleware config: '{k}' is given both in the options dict and as a keyword argument"
                )
            merged[k] = v
        route_template = merged.pop("route_template", None)
        if route_template is not None and not callable(route_template):
            raise ConfigError(
                "MemoryTrackingMiddleware config: invalid value for 'route_template': expected a callable "
                f"(request) -> str, got {type(route_template).__name__}"
            )
        self.app = app
        #: The native per-request tracker (``memwarden.RequestTracker``) doing the measuring.
        self.tracker = RequestTracker(merged)
        # The per-request calls, bound once (an attribute lookup on a native object makes a
        # new bound method each time).
        self._begin = self.tracker.begin
        self._end = self.tracker.end
        self._response_headers = self.tracker.response_headers
        self._route_template: Optional[Callable[[Any], str]] = route_template
        #: The route of a request: the template option's, else the framework's (one call).
        self._route_of: Callable[[Any], str] = self._route if route_template is not None else self._default_route
        self._include_headers = self.tracker.include_headers
        self._analytics_handler: Optional[Callable[[Dict[str, Any]], Any]] = None
        d = self.tracker.detailed_tracking
        self._allocations = bool(d["enabled"] and d["track_allocations"])
        self._deallocations = bool(d["enabled"] and d["track_deallocations"])
        self._stack_traces = bool(d["enabled"] and d["include_stack_traces"])

    # -- handlers ---------------------------------------------------------------------------

    def set_high_usage_handler(self, handler: Optional[Callable[..., Any]]) -> None:
        """``handler(usage_mb, request)`` (or ``(usage_mb, request, report)``) for every request
        whose growth (peak minus start) exceeds ``threshold_mb``; ``request`` is the WSGI
        environ or the ASGI scope. An exception it raises is logged to the ``memwarden`` logger
        and the request goes on. None removes it."""
        self.tracker.set_high_usage_handler(handler)

    def set_analytics_handler(self, handler: Optional[Callable[[Dict[str, Any]], Any]]) -> None:
        """``handler(report)`` after every measured request, with its final figures as a dict
        (``route``, ``usage_mb``, ``peak_mb``, ``delta_mb``, ``*_bytes``, ``duration_ms``,
        ``overlapped``, ``high_usage``, and ``allocations`` with detailed tracking). For a
        streamed body it runs when the body ends. An exception it raises is logged; the
        request goes on. None removes it."""
        if handler is not None and not callable(handler):
            raise TypeError(f"the analytics handler must be callable, got {type(handler).__name__}")
        self._analytics_handler = handler

    # The seed's camelCase names.
    setHighUsageHandler = set_high_usage_handler
    setAnalyticsHandler = set_analytics_handler

    def analytics(self) -> Dict[str, Any]:
        """Aggregates per route template (see ``RequestTracker.analytics``)."""
        return self.tracker.analytics()  # type: ignore[no-any-return]

    # -- per request --------------------------------------------------------------------------

    def _alloc_begin(self) -> Tuple[int, Any]:
        if not tracemalloc.is_tracing():
            tracemalloc.start(25 if self._stack_traces else 1)
        tracemalloc.reset_peak()
        current, _ = tracemalloc.get_traced_memory()
        snap = tracemalloc.take_snapshot() if self._stack_traces else None
        return current, snap

    def _alloc_end(self, start: Tuple[int, Any]) -> Dict[str, Any]:
        current, peak = tracemalloc.get_traced_memory()
        start_bytes, snap = start
        out: Dict[str, Any] = {
            "traced_start_bytes": start_bytes,
            "traced_end_bytes": current,
            "traced_peak_bytes": peak,
            # Python objects allocated on top of what was live at the start, at the highest point.
            "allocated_bytes": max(peak - start_bytes, 0),
            "net_bytes": current - start_bytes,
        }
        if self._deallocations:
            # What was allocated during the request and given back before it ended.
            out["freed_bytes"] = max(peak - current, 0)
        if snap is not None:
            diff = tracemalloc.take_snapshot().compare_to(snap, "traceback")
            out["top"] = [
                {
                    "size_diff": s.size_diff,
                    "count_diff": s.count_diff,
                    "traceback": [f"{f.filename}:{f.lineno}" for f in s.traceback],
                }
                for s in diff[:10]
            ]
        return out

    def _route(self, request: Any) -> str:
        if self._route_template is not None:
            try:
                return str(self._route_template(request))
            except Exception:
                logger.exception("memwarden: route_template raised; the request is counted as %r", UNMATCHED)
                return UNMATCHED
        return self._default_route(request)

    def _default_route(self, request: Any) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _finish(
        self, token: RequestToken, request: Any, alloc: Optional[Tuple[int, Any]], route: Optional[str] = None
    ) -> Optional[RequestReport]:
        """Ends the request (once: ``end`` returns None for a token that has ended): final
        figures to the analytics, the high-usage handler and log (the core), then the analytics
        handler."""
        try:
            report = self._end(token, request, route if route is not None else self._route_of(request))
        except Exception:  # a failed reading must not break the response
            logger.exception("memwarden: cannot end the measurement of a request")
            return None
        if report is None:
            return None
        handler = self._analytics_handler
        if handler is not None or alloc is not None or logger.isEnabledFor(_DEBUG):
            figures = report.to_dict()
            if alloc is not None:
                figures["allocations"] = self._alloc_end(alloc)
            logger.debug("memwarden: request %s", figures)
            if handler is not None:
                try:
                    handler(figures)
                except Exception:
                    logger.exception("memwarden: the analytics handler raised; the request goes on")
        return report
