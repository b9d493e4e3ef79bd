"""Cost of memwarden's MemoryTrackingMiddleware per request, WSGI and ASGI, from one run.

    python bindings/python/bench/bench_middleware.py [--requests N] [--rounds R]

1. Servers: a hello-world WSGI app under werkzeug and a hello-world ASGI app under uvicorn,
   each in its own process on 127.0.0.1, bare and wrapped in the middleware, alternately
   (bare, wrapped, bare, wrapped, ...). A client in this process sends N requests over one
   keep-alive connection; the server's CPU time (utime + stime from /proc/PID/stat) over the
   requests, divided by N, is its cost per request. The middleware's cost is wrapped minus
   bare (best round of each); the ratio is wrapped / bare, and the throughput loss is the
   middleware's cost over the wrapped cost. Goals: <= 5 us per request for the whole Python
   middleware, <= 5% of throughput.
2. In process, without a server: the middleware called with a ready environ / scope against
   the bare app (timeit, minimum of repeats): the same cost without the server's noise.
3. A microbench of RequestTracker begin()+end() through PyO3 (memwarden's own part, goal
   <= 2 us), with the default reading (pread of /proc/self/statm) and with the sampler thread
   (sampler_interval_ms=1: no system call per request), and begin+snapshot+headers+end.
"""

import argparse
import asyncio
import http.client
import os
import socket
import subprocess
import sys
import time
import timeit

HERE = os.path.abspath(__file__)
BODY = b"Hello, World!"


# ---- the apps ----------------------------------------------------------------------------


def wsgi_hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]


async def asgi_hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def make_app(kind, mode, options):
    if kind == "wsgi":
        if mode == "bare":
            return wsgi_hello
        from memwarden.wsgi import MemoryTrackingMiddleware

        return MemoryTrackingMiddleware(wsgi_hello, **options)
    if mode == "bare":
        return asgi_hello
    from memwarden.asgi import MemoryTrackingMiddleware

    return MemoryTrackingMiddleware(asgi_hello, **options)


def serve(kind, mode, sampler):
    options = {"sampler_interval_ms": 1} if sampler else {}
    app = make_app(kind, mode, options)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    if kind == "wsgi":
        from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler

        class Handler(WSGIRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, one connection for the whole run

            def log_request(self, *args, **kwargs):
                pass

        port = sock.getsockname()[1]
        sock.close()
        server = BaseWSGIServer("127.0.0.1", port, app, handler=Handler)
        print(server.server_port, flush=True)
        server.serve_forever()
    else:
        import uvicorn

        # uvicorn writes the head and the body separately: without TCP_NODELAY (inherited by
        # accepted sockets) Nagle and delayed ACKs add ~40 ms per keep-alive request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.listen(128)
        print(sock.getsockname()[1], flush=True)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        uvicorn.Server(config).run(sockets=[sock])


# ---- the client --------------------------------------------------------------------------


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(port, n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(n):
        conn.request("GET", "/hello")
        r = conn.getresponse()
        body = r.read()
        if r.status != 200 or body != BODY:
            raise SystemExit(f"bad answer {r.status} {body!r}")
    conn.close()


def one_round(kind, mode, n, sampler):
    cmd = [sys.executable, HERE, "--serve", kind, "--mode", mode] + (["--sampler"] if sampler else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        load(port, min(n, 500))  # warm-up
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        load(port, n)
        cpu1, t1 = cpu_seconds(proc.pid), time.perf_counter()
        return (cpu1 - cpu0) / n * 1e6, n / (t1 - t0)
    finally:
        proc.terminate()
        proc.wait(30)


def server_bench(kind, n, rounds, sampler):
    best = {"bare": (float("inf"), 0.0), "wrapped": (float("inf"), 0.0)}
    for _ in range(rounds):
        for mode in ("bare", "wrapped"):
            cpu, rps = one_round(kind, mode, n, sampler)
            if cpu < best[mode][0]:
                best[mode] = (cpu, rps)
    (bare, bare_rps), (wrapped, wrapped_rps) = best["bare"], best["wrapped"]
    cost = wrapped - bare
    label = f"{kind.upper()} server{' (sampler 1 ms)' if sampler else ' (default)'}"
    print(f"{label:<24} anchor (bare app)      {bare:8.1f} us CPU/request  {bare_rps:8.0f} req/s")
    print(f"{'':<24} memwarden middleware  {wrapped:8.1f} us CPU/request  {wrapped_rps:8.0f} req/s")
    print(
        f"{'':<24} middleware cost {cost:6.1f} us/request, ratio {wrapped / bare:.3f}x, "
        f"throughput cost {cost / wrapped * 100:.1f}%"
    )


# ---- in process --------------------------------------------------------------------------


def per_call_us(fn, repeat=7):
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def in_process(sampler):
    from memwarden.asgi import MemoryTrackingMiddleware as Asgi
    from memwarden.wsgi import MemoryTrackingMiddleware as Wsgi

    # A tight loop would switch the default ("auto") to the sampler: ask for each mode.
    options = {"sampler_interval_ms": 1} if sampler else {"sampler_interval_ms": 0}
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/hello", "SCRIPT_NAME": ""}

    def start_response(status, headers, exc_info=None):
        return None

    def call_wsgi(app):
        def run():
            body = app(environ, start_response)
            for _ in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()

        return run

    wrapped = Wsgi(wsgi_hello, **options)
    bare_us = per_call_us(call_wsgi(wsgi_hello))
    mw_us = per_call_us(call_wsgi(wrapped))
    tag = " (sampler)" if sampler else ""
    print(f"WSGI in process{tag:<10} anchor {bare_us:6.2f} us, with middleware {mw_us:6.2f} us: cost {mw_us - bare_us:5.2f} us")

    scope = {"type": "http", "method": "GET", "path": "/hello", "root_path": "", "headers": []}

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        pass

    def call_asgi(app, n):
        async def many():
            for _ in range(n):
                await app(scope, receive, send)

        return many

    def asgi_us(app):
        loop = asyncio.new_event_loop()
        try:
            best = float("inf")
            n = 20000
            for _ in range(7):
                t0 = time.perf_counter()
                loop.run_until_complete(call_asgi(app, n)())
                best = min(best, (time.perf_counter() - t0) / n * 1e6)
            return best
        finally:
            loop.close()

    wrapped = Asgi(asgi_hello, **options)
    bare_us = asgi_us(asgi_hello)
    mw_us = asgi_us(wrapped)
    print(f"ASGI in process{tag:<10} anchor {bare_us:6.2f} us, with middleware {mw_us:6.2f} us: cost {mw_us - bare_us:5.2f} us")


def micro():
    import memwarden

    for label, options in (("pread", {"sampler_interval_ms": 0}), ("sampler", {"sampler_interval_ms": 1})):
        t = memwarden.RequestTracker(**options)

        def begin_end():
            t.end(t.begin("GET /"))

        def full():
            k = t.begin("GET /")
            t.headers(t.snapshot(k))
            t.end(k)

        print(
            f"PyO3 RequestTracker ({label:<7}) begin+end {per_call_us(begin_end):5.2f} us, "
            f"begin+snapshot+headers+end {per_call_us(full):5.2f} us"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3, help="bare/wrapped rounds (the best of each is kept)")
    parser.add_argument("--serve", choices=("wsgi", "asgi"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("bare", "wrapped"), help=argparse.SUPPRESS)
    parser.add_argument("--sampler", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.mode, args.sampler)
        return
    micro()
    in_process(False)
    in_process(True)
    for kind in ("wsgi", "asgi"):
        server_bench(kind, args.requests, args.rounds, False)
    server_bench("wsgi", args.requests, args.rounds, True)


if __name__ == "__main__":
    main()
