"""memwarden.wsgi and memwarden.asgi MemoryTrackingMiddleware under real servers on
127.0.0.1: a Flask app under werkzeug's make_server and a Starlette app under uvicorn, each in
a thread, hit with real HTTP requests (urllib).

Nothing here asserts a duration. Where the server finishes a request after the client has read
its response (the WSGI close(), the last ASGI send), the test polls with a deadline."""

import asyncio
import logging
import threading
import time
import urllib.error
import urllib.request

import pytest

from memwarden import ConfigError
from memwarden import asgi as mw_asgi
from memwarden import wsgi as mw_wsgi

import flask  # installed by run-tests.sh; missing = a failure
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from werkzeug.serving import make_server

DEADLINE = 20.0  # seconds: a bound only a broken middleware or server reaches
HEADERS = ("X-Memory-Usage", "X-Memory-Peak", "X-Memory-Limit", "X-Memory-Efficiency")
HOLD = []  # memory a view keeps, so that a request grows the process for sure


def wait_for(cond, what):
    end = time.monotonic() + DEADLINE
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def get(url):
    """(status, headers, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=DEADLINE) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


# ---- servers ------------------------------------------------------------------------------


class WsgiServer:
    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.thread.join(DEADLINE)
        self.server.server_close()


class AsgiServer:
    def __init__(self, app):
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), "uvicorn to start")
        assert self.server.started, "uvicorn did not start"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(DEADLINE)


# ---- apps ---------------------------------------------------------------------------------


def flask_app():
    app = flask.Flask("memwarden-test")
    state = {"stream_done": False}

    @app.route("/")
    def index():
        return "hello"

    @app.route("/users/<int:user_id>")
    def user(user_id):
        return f"user {user_id}"

    @app.route("/grow")
    def grow():
        HOLD.append(b"g" * (24 << 20))
        return "grown"

    @app.route("/stream")
    def stream():
        def gen():
            for i in range(5):
                yield f"chunk {i}\n"
            state["stream_done"] = True

        return flask.Response(gen(), mimetype="text/plain")

    app.state = state
    return app


def wrap_flask(**options):
    app = flask_app()
    mw = mw_wsgi.MemoryTrackingMiddleware(app.wsgi_app, **options)
    app.wsgi_app = mw
    return app, mw


def starlette_app():
    state = {"stream_done": False, "started": False}

    async def index(request):
        return PlainTextResponse("hello")

    async def user(request):
        return PlainTextResponse(f"user {request.path_params['user_id']}")

    async def grow(request):
        HOLD.append(b"g" * (24 << 20))
        return PlainTextResponse("grown")

    async def stream(request):
        async def gen():
            for i in range(5):
                yield f"chunk {i}\n".encode()
                await asyncio.sleep(0)
            state["stream_done"] = True

        return StreamingResponse(gen(), media_type="text/plain")

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        state["started"] = True
        yield

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/users/{user_id:int}", user),
            Route("/grow", grow),
            Route("/stream", stream),
        ],
        lifespan=lifespan,
    )
    return app, state


def wrap_starlette(**options):
    app, state = starlette_app()
    mw = mw_asgi.MemoryTrackingMiddleware(app, **options)
    return mw, state


def assert_memory_headers(headers):
    values = {}
    for name in HEADERS:
        raw = headers.get(name)
        assert raw is not None, f"{name} missing from {dict(headers)}"
        values[name] = float(raw)
    assert values["X-Memory-Usage"] > 0
    assert values["X-Memory-Peak"] >= values["X-Memory-Usage"] - 0.1
    assert values["X-Memory-Limit"] >= values["X-Memory-Usage"]
    assert 0 < values["X-Memory-Efficiency"] <= 100.0
    return values


# ---- WSGI (Flask under werkzeug) ----------------------------------------------------------


def test_wsgi_headers_are_present_and_numeric():
    app, mw = wrap_flask()
    with WsgiServer(app) as s:
        status, headers, body = get(s.url + "/")
        assert (status, body) == (200, b"hello")
        assert_memory_headers(headers)
        wait_for(lambda: mw.analytics()["routes"].get("GET /", {}).get("count") == 1, "the request to end")
    assert mw.tracker.in_flight == 0


def test_wsgi_analytics_are_per_flask_route_template():
    app, mw = wrap_flask()
    with WsgiServer(app) as s:
        for i in (1, 2, 3):
            assert get(f"{s.url}/users/{i}")[0] == 200
        assert get(s.url + "/no/such/page")[0] == 404
        wait_for(lambda: mw.tracker.in_flight == 0 and len(mw.analytics()["routes"]) == 2, "4 requests to end")
    routes = mw.analytics()["routes"]
    assert set(routes) == {"GET /users/<int:user_id>", "GET unmatched"}, routes
    assert routes["GET /users/<int:user_id>"]["count"] == 3
    assert routes["GET unmatched"]["count"] == 1
    r = routes["GET /users/<int:user_id>"]
    assert r["peak_bytes"]["max"] > 0 and r["peak_bytes"]["p50"] is not None


def test_wsgi_route_template_option_and_max_routes_bound():
    app, mw = wrap_flask(route_template=lambda environ: "all " + environ["REQUEST_METHOD"])
    with WsgiServer(app) as s:
        get(s.url + "/")
        get(s.url + "/users/7")
        wait_for(lambda: mw.analytics()["routes"].get("all GET", {}).get("count") == 2, "2 requests")
    assert list(mw.analytics()["routes"]) == ["all GET"]

    # Without a framework route the raw path is the fallback, bounded by max_routes.
    def bare(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    mw = mw_wsgi.MemoryTrackingMiddleware(bare, max_routes=3)
    with WsgiServer(mw) as s:
        for i in range(10):
            assert get(f"{s.url}/p{i}")[0] == 200
        wait_for(lambda: mw.tracker.in_flight == 0, "10 requests")
    a = mw.analytics()
    assert len(a["routes"]) == 3 and a["routes"]["other"]["count"] == 8, a["routes"].keys()
    assert a["overflowed_routes"] == 8


def test_wsgi_sample_rate_zero_adds_no_headers():
    app, mw = wrap_flask(sample_rate=0)
    with WsgiServer(app) as s:
        status, headers, _ = get(s.url + "/")
    assert status == 200
    assert not [h for h in HEADERS if h in headers]
    a = mw.analytics()
    assert a["routes"] == {} and a["sampled_out"] == 1


def test_wsgi_include_headers_false_still_measures():
    app, mw = wrap_flask(include_headers=False)
    with WsgiServer(app) as s:
        status, headers, _ = get(s.url + "/")
        wait_for(lambda: mw.tracker.in_flight == 0 and mw.analytics()["routes"], "the request")
    assert status == 200 and "X-Memory-Usage" not in headers
    assert mw.analytics()["routes"]["GET /"]["count"] == 1


def test_wsgi_raising_high_usage_handler_does_not_break_the_request(caplog, tmp_path):
    log = tmp_path / "memory.log"
    app, mw = wrap_flask(threshold_mb=1, log_file=str(log))
    seen = []

    def handler(usage, request):
        seen.append((usage, request["PATH_INFO"]))
        raise RuntimeError("alert service down")

    mw.setHighUsageHandler(handler)
    with caplog.at_level(logging.ERROR, logger="memwarden"):
        with WsgiServer(app) as s:
            status, headers, body = get(s.url + "/grow")
            assert (status, body) == (200, b"grown")
            assert_memory_headers(headers)
            wait_for(lambda: mw.analytics()["handler_errors"] == 1, "the handler to run")
    assert len(seen) == 1 and seen[0][1] == "/grow" and seen[0][0] > 0
    assert mw.analytics()["routes"]["GET /grow"]["high_usage"] == 1
    assert any("alert service down" in r.getMessage() or "alert service down" in str(r.exc_info) for r in caplog.records)
    text = log.read_text()
    assert "high_memory_usage" in text and "alert service down" in text


def test_wsgi_streamed_body_gives_final_figures_to_the_analytics_handler():
    app, mw = wrap_flask()
    reports = []

    def on_analytics(report):
        reports.append((report, app.state["stream_done"]))

    mw.set_analytics_handler(on_analytics)
    with WsgiServer(app) as s:
        status, headers, body = get(s.url + "/stream")
        assert status == 200 and body.count(b"chunk") == 5
        assert_memory_headers(headers)  # sent before the body, from a snapshot
        wait_for(lambda: reports, "the analytics handler")
    report, done_when_called = reports[0]
    assert done_when_called, "the handler ran before the body ended"
    assert report["is_final"] and report["route"] == "GET /stream"
    assert report["end_bytes"] > 0 and report["peak_bytes"] >= report["end_bytes"]
    assert report["duration_ms"] >= 0


def test_wsgi_raising_analytics_handler_is_logged(caplog):
    app, mw = wrap_flask()
    mw.set_analytics_handler(lambda report: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="memwarden"):
        with WsgiServer(app) as s:
            assert get(s.url + "/")[0] == 200
            wait_for(lambda: any(r.exc_info for r in caplog.records), "the log record")
    rec = [r for r in caplog.records if r.exc_info][0]
    assert rec.exc_info[0] is ZeroDivisionError and "analytics handler" in rec.getMessage()


def test_wsgi_detailed_tracking_uses_tracemalloc():
    import tracemalloc

    app, mw = wrap_flask(detailed_tracking=True, track_allocations=True, track_deallocations=True)
    reports = []
    mw.set_analytics_handler(reports.append)
    try:
        with WsgiServer(app) as s:
            assert get(s.url + "/grow")[0] == 200
            wait_for(lambda: reports, "the analytics handler")
        alloc = reports[0]["allocations"]
        assert alloc["allocated_bytes"] >= 24 << 20, alloc
        assert alloc["net_bytes"] >= 24 << 20, alloc
        assert "freed_bytes" in alloc
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "options,key",
    [({"sample_rate": 2}, "sample_rate"), ({"threshold_mb": -1}, "threshold_mb"), ({"sample_rat": 1}, "sample_rate")],
)
def test_bad_options_raise_value_error_naming_the_key(options, key):
    for cls in (mw_wsgi.MemoryTrackingMiddleware, mw_asgi.MemoryTrackingMiddleware):
        with pytest.raises(ValueError, match=key) as e:
            cls(lambda *a: None, **options)
        assert isinstance(e.value, ConfigError)
    with pytest.raises(ConfigError, match="route_template"):
        mw_wsgi.MemoryTrackingMiddleware(lambda *a: None, route_template="GET /")
    with pytest.raises(TypeError, match="handler"):
        mw_wsgi.MemoryTrackingMiddleware(lambda *a: None).set_high_usage_handler(42)


def test_seed_options_are_accepted_as_a_dict():
    mw = mw_wsgi.MemoryTrackingMiddleware(
        lambda *a: None,
        {
            "enabled": True,
            "track_peak": True,
            "log_high_usage": True,
            "threshold_mb": 50,
            "detailed_tracking": False,
            "include_headers": True,
            "log_file": "memory.log",
            "sample_rate": 1.0,
        },
    )
    assert mw.tracker.threshold_mb == 50 and mw.tracker.sample_rate == 1.0
    assert mw.tracker.detailed_tracking == {
        "enabled": False,
        "track_allocations": False,
        "track_deallocations": False,
        "include_stack_traces": False,
    }
    off = mw_wsgi.MemoryTrackingMiddleware(lambda e, s: [b"x"], enabled=False)
    assert off.tracker.begin("GET /") is None


# ---- ASGI (Starlette under uvicorn) -------------------------------------------------------


def test_asgi_headers_and_lifespan():
    app, state = wrap_starlette()
    with AsgiServer(app) as s:
        assert state["started"], "the lifespan scope did not pass through"
        status, headers, body = get(s.url + "/")
        assert (status, body) == (200, b"hello")
        assert_memory_headers(headers)
        wait_for(lambda: app.tracker.in_flight == 0 and app.analytics()["routes"], "the request to end")
    assert app.analytics()["routes"]["GET /"]["count"] == 1


def test_asgi_analytics_are_per_starlette_route_template():
    app, _ = wrap_starlette()
    with AsgiServer(app) as s:
        for i in (1, 2, 3):
            assert get(f"{s.url}/users/{i}")[0] == 200
        assert get(s.url + "/missing/7")[0] == 404
        wait_for(lambda: app.tracker.in_flight == 0 and len(app.analytics()["routes"]) == 2, "4 requests")
    routes = app.analytics()["routes"]
    assert set(routes) == {"GET /users/{user_id:int}", "GET unmatched"}, routes
    assert routes["GET /users/{user_id:int}"]["count"] == 3


def test_asgi_sample_rate_zero_adds_no_headers():
    app, _ = wrap_starlette(sample_rate=0.0)
    with AsgiServer(app) as s:
        status, headers, _ = get(s.url + "/")
    assert status == 200 and not [h for h in HEADERS if h in headers]
    assert app.analytics()["routes"] == {} and app.analytics()["sampled_out"] == 1


def test_asgi_raising_high_usage_handler_does_not_break_the_request(caplog):
    app, _ = wrap_starlette(threshold_mb=1)
    seen = []

    def handler(usage, scope, report):
        seen.append((usage, scope["path"], report["route"]))
        raise RuntimeError("pager down")

    app.set_high_usage_handler(handler)
    with caplog.at_level(logging.ERROR, logger="memwarden"):
        with AsgiServer(app) as s:
            status, headers, body = get(s.url + "/grow")
            assert (status, body) == (200, b"grown")
            assert_memory_headers(headers)
            wait_for(lambda: app.analytics()["handler_errors"] == 1, "the handler")
    assert seen and seen[0][1:] == ("/grow", "GET /grow")
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)


def test_asgi_streamed_body_gives_final_figures_after_the_last_chunk():
    app, state = wrap_starlette()
    reports = []
    app.setAnalyticsHandler(lambda report: reports.append((report, state["stream_done"])))
    with AsgiServer(app) as s:
        status, headers, body = get(s.url + "/stream")
        assert status == 200 and body.count(b"chunk") == 5
        assert_memory_headers(headers)
        wait_for(lambda: reports, "the analytics handler")
    assert len(reports) == 1
    report, done = reports[0]
    assert done and report["is_final"] and report["route"] == "GET /stream"


def test_asgi_websocket_scope_passes_through_untouched():
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["type"])
        await send({"type": "websocket.accept"})

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "websocket.connect"}

    app = mw_asgi.MemoryTrackingMiddleware(inner)
    asyncio.run(app({"type": "websocket", "path": "/ws", "headers": []}, receive, send))
    assert seen == ["websocket"] and sent == [{"type": "websocket.accept"}]
    assert app.tracker.in_flight == 0 and app.analytics()["routes"] == {}


def test_asgi_app_that_fails_still_ends_the_request():
    async def broken(scope, receive, send):
        raise RuntimeError("boom")

    app = mw_asgi.MemoryTrackingMiddleware(broken)

    async def send(message):
        pass

    async def receive():
        return {"type": "http.request", "body": b""}

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(app({"type": "http", "method": "POST", "path": "/x", "headers": []}, receive, send))
    assert app.tracker.in_flight == 0
    assert app.analytics()["routes"]["POST /x"]["count"] == 1


def test_asgi_request_ends_once_and_the_app_headers_are_not_changed():
    # The app's header list is shared between its responses; the route template runs once per
    # request, however often the application sends a last body.
    shared = [(b"content-type", b"text/plain")]

    async def inner(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": shared})
        await send({"type": "http.response.body", "body": b"a"})
        await send({"type": "http.response.body", "body": b"b"})  # an app's bug: a second last body

    routes = []

    def route_template(scope):
        routes.append(scope["path"])
        return "GET /t"

    app = mw_asgi.MemoryTrackingMiddleware(inner, route_template=route_template)
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    for _ in range(2):
        asyncio.run(app({"type": "http", "method": "GET", "path": "/t", "headers": []}, receive, send))
    assert shared == [(b"content-type", b"text/plain")]
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 2 and all(len(m["headers"]) == 5 for m in starts)
    assert {k for k, _ in starts[0]["headers"]} >= {h.lower().encode() for h in HEADERS}
    assert routes == ["/t", "/t"]
    assert app.tracker.in_flight == 0 and app.analytics()["routes"]["GET /t"]["count"] == 2


def test_wsgi_close_twice_ends_the_request_once():
    routes = []

    def route_template(environ):
        routes.append(environ["PATH_INFO"])
        return "GET /t"

    def inner(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"x"]

    app = mw_wsgi.MemoryTrackingMiddleware(inner, route_template=route_template)
    seen = []
    body = app({"REQUEST_METHOD": "GET", "PATH_INFO": "/t"}, lambda status, headers, exc_info=None: seen.append(headers))
    assert list(body) == [b"x"]
    body.close()
    body.close()
    assert [n for n, _ in seen[0]] == ["Content-Type", *HEADERS]
    assert routes == ["/t"]
    assert app.tracker.in_flight == 0 and app.analytics()["routes"]["GET /t"]["count"] == 1


# ---- RequestTracker.response_headers: the middleware's per-request header call ------------


def test_response_headers_match_snapshot_and_are_reused_while_unchanged():
    from memwarden import InvalidArgumentError, RequestTracker

    # A sampler that reads once a minute: the figures cannot move during the test.
    t = RequestTracker(memory_limit="128M", sampler_interval_ms=60000)
    token = t.begin("GET /x")
    first = t.response_headers(token)
    assert first == tuple(t.headers(t.snapshot(token)))
    assert [name for name, _ in first] == ["X-Memory-Usage", "X-Memory-Peak", "X-Memory-Limit", "X-Memory-Efficiency"]
    assert dict(first)["X-Memory-Limit"] == "128.0"
    assert t.response_headers(token) is first, "unchanged figures give the same tuple"
    raw = t.response_headers(token, raw=True)
    assert raw == tuple(t.headers(t.snapshot(token), raw=True))
    assert raw[0][0] == b"x-memory-usage" and isinstance(raw[0][1], bytes)
    assert t.response_headers(token, True) is raw
    other = t.begin("GET /y")
    assert t.response_headers(other) is first, "another request with the same figures"
    t.end(token)
    t.end(other)
    with pytest.raises(InvalidArgumentError, match="response_headers\\(\\): the request has ended"):
        t.response_headers(token)
    with pytest.raises(TypeError, match="'token' must be a RequestToken"):
        t.response_headers("not a token")
    off = RequestTracker(include_headers=False)
    k = off.begin("GET /")
    assert off.response_headers(k) == ()
    off.end(k)
