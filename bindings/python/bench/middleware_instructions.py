"""The WSGI and ASGI middlewares' cost per request counted in instructions (valgrind's callgrind).

    python bindings/python/bench/middleware_instructions.py [--server werkzeug|uvicorn|both]
        [--counts 300,900,1500] [--variants bare,static4,wrap,mw,mwnohdr,mwsampler]   (needs valgrind)

Instruction counts do not change with the load of a shared machine, unlike CPU time. A
hello-world app runs under callgrind: WSGI under werkzeug (``BaseWSGIServer``, one thread),
ASGI under uvicorn (one process, ``loop="asyncio"``, ``http="h11"``, which is what "auto"
picks without httptools, as run-tests.sh installs uvicorn; ``lifespan="off"``; uvicorn's
0.1 s tick, wall-time work, replaced by waiting for the n-th request). A client in this
process sends n requests over one keep-alive connection, for each n of ``--counts``;
(I(n2) - I(n1)) / (n2 - n1) is the server's work per request, start-up and warm-up cancelled
out. Three counts give two such estimates: they must agree (the warm-up is long enough). The
servers run with one hash seed (``--hash-seed``, 0), and at their first request the collector
is told to keep what start-up made (``gc.freeze()``): otherwise dicts probe differently in
each process, and a full collection walking the imports' objects falls into one window and
not another. So a run repeats to a few hundred instructions; another seed moves the counts by
about 1%: compare variants of one run.

Variants: ``bare``; ``static4``, a pure-Python middleware adding four constant headers (what
the server charges for any four headers: the anchor for the headers' share); ``wrap``, a
pass-through middleware wrapping start_response and the body (WSGI) or send (ASGI) as ours
does; memwarden's middleware by default (``mw``: at the rate callgrind allows, one read of the
process per reading), without headers (``mwnohdr``) and with a 5 ms sampler (``mwsampler``).
memwarden's own part is ``mwnohdr - bare`` and ``mw - static4``.

Threads are counted apart (``--separate-threads=yes``): the request thread's count is the
server's; the sampler thread wakes every 5 ms of wall time, and callgrind runs the server
~50x slower, so its count per request under callgrind is ~50x what it costs a real server.
It is charged instead at its real rate: its instructions per wake, times the wakes in a
second (1000 / 5), divided by the requests a second the bare server answers on one core
without valgrind (its CPU time over ``--native`` requests, measured in the same run); that
is its share of a saturated server's CPU, the throughput a sampler can cost.
"""

import argparse
import asyncio
import gc
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading

HERE = os.path.abspath(__file__)
BODY = b"Hello, World!"
STATIC = [("X-Memory-Usage", "45.7"), ("X-Memory-Peak", "52.3"), ("X-Memory-Limit", "128.0"), ("X-Memory-Efficiency", "89.2")]
STATIC_RAW = [(k.lower().encode(), v.encode()) for k, v in STATIC]
SAMPLER_MS = 5
HASH_SEED = ["0"]
VARIANTS = ("bare", "static4", "wrap", "mw", "mwnohdr", "mwsampler")
OPTIONS = {"mw": {}, "mwnohdr": {"include_headers": False}, "mwsampler": {"sampler_interval_ms": SAMPLER_MS}}


def settle():
    """At the first request, after start-up: what the server made so far is kept out of the
    collector. Otherwise a full collection, which walks every object the imports made
    (millions of instructions), falls into one window of requests and not into another.
    Collections of what the requests allocate are still counted."""
    gc.collect()
    gc.freeze()


# ---- WSGI ------------------------------------------------------------------------------------


def wsgi_hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]


class _Body:
    __slots__ = ("r",)

    def __init__(self, r):
        self.r = r

    def __iter__(self):
        return iter(self.r)

    def close(self):
        close = getattr(self.r, "close", None)
        if close:
            close()


def make_wsgi(variant):
    if variant == "bare":
        return wsgi_hello
    if variant in ("static4", "wrap"):
        extra = STATIC if variant == "static4" else []

        def app(environ, start_response):
            def sr(status, headers, exc_info=None):
                return start_response(status, [*headers, *extra], exc_info)

            return _Body(wsgi_hello(environ, sr))

        return app
    from memwarden.wsgi import MemoryTrackingMiddleware

    return MemoryTrackingMiddleware(wsgi_hello, **OPTIONS[variant])


def serve_werkzeug(app, sock, n, on_port):
    from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_request(self, *args, **kwargs):
            pass

    count = [0]

    def counting(environ, start_response):
        count[0] += 1
        if count[0] == 1:
            settle()
        if count[0] == n:
            threading.Thread(target=server.shutdown).start()
        return app(environ, start_response)

    port = sock.getsockname()[1]
    sock.close()
    server = BaseWSGIServer("127.0.0.1", port, counting, handler=Handler)
    on_port(server.server_port)
    server.serve_forever(poll_interval=0.05)
    server.server_close()


# ---- ASGI ------------------------------------------------------------------------------------


async def asgi_hello(scope, receive, send):
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def make_asgi(variant):
    if variant == "bare":
        return asgi_hello
    if variant in ("static4", "wrap"):
        extra = STATIC_RAW if variant == "static4" else []

        async def app(scope, receive, send):
            async def wrapped_send(message):
                if message["type"] == "http.response.start" and extra:
                    message["headers"] = [*message.get("headers", ()), *extra]
                await send(message)

            await asgi_hello(scope, receive, wrapped_send)

        return app
    from memwarden.asgi import MemoryTrackingMiddleware

    return MemoryTrackingMiddleware(asgi_hello, **OPTIONS[variant])


def serve_uvicorn(app, sock, n, on_port):
    import uvicorn

    # uvicorn writes the head and the body separately: without TCP_NODELAY (inherited by the
    # accepted socket) Nagle and delayed ACKs add ~40 ms per keep-alive request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(16)
    count = [0]
    done = asyncio.Event()

    async def counting(scope, receive, send):
        count[0] += 1
        if count[0] == 1:
            settle()
        if count[0] == n:
            done.set()
        await app(scope, receive, send)

    class Server(uvicorn.Server):
        async def main_loop(self):
            # uvicorn's loop wakes every 0.1 s of wall time (the Date header, should_exit):
            # under callgrind ~50x as often per request as in a real server, and more often
            # for a slower variant. One tick sets the Date header; then it waits for the n-th
            # request.
            await self.on_tick(0)
            await done.wait()

    config = uvicorn.Config(
        counting, loop="asyncio", http="h11", lifespan="off", log_level="warning", access_log=False
    )
    server = Server(config)
    on_port(sock.getsockname()[1])
    server.run(sockets=[sock])


SERVERS = {"werkzeug": (make_wsgi, serve_werkzeug), "uvicorn": (make_asgi, serve_uvicorn)}


def serve(server, variant, n):
    make, run = SERVERS[server]
    app = make(variant)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    run(app, sock, n, lambda port: print(port, flush=True))


# ---- the client and callgrind's files ----------------------------------------------------


def load(port, n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for _ in range(n):
        conn.request("GET", "/hello")
        r = conn.getresponse()
        if r.status != 200 or r.read() != BODY:
            raise SystemExit(f"bad answer {r.status}")
    conn.close()


def thread_file(path):
    """(total instructions, calls to nanosleep) of one of callgrind's per-thread files."""
    names = {}
    total = sleeps = 0
    callee = None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("fn=", "cfn=")):
                m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
                if m:
                    if m.group(2) is not None:
                        names[m.group(1)] = m.group(2)
                    name = names.get(m.group(1), "")
                else:
                    name = line.split("=", 1)[1].strip()
                callee = name if line.startswith("cfn=") else None
            elif line.startswith("calls=") and callee is not None:
                # Calls into the C library's sleep from anything that is not itself a sleep.
                if callee in ("nanosleep", "__nanosleep", "clock_nanosleep", "__clock_nanosleep") or callee.startswith(
                    ("nanosleep@", "clock_nanosleep@")
                ):
                    sleeps += int(line.split()[0].split("=")[1])
                callee = None
            elif line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total, sleeps


def run_callgrind(server, variant, n):
    """{thread number: (instructions, sleeps)} of the server answering n requests."""
    out = os.path.join(tempfile.gettempdir(), f"mw-cg-py.{os.getpid()}.{server}.{variant}.{n}")
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        f"--callgrind-out-file={out}",
        sys.executable,
        HERE,
        "--serve",
        server,
        variant,
        str(n),
    ]
    # One hash seed for every run: with random ones, dicts' probe sequences (and so counts)
    # differ from one process to the next. Another seed shifts every count a little: compare
    # variants measured with the same one.
    env = dict(os.environ, PYTHONHASHSEED=HASH_SEED[0])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    port = int(proc.stdout.readline())
    load(port, n)
    _, err = proc.communicate(timeout=900)
    if os.path.exists(out):  # left empty: the counts are in the per-thread files
        os.unlink(out)
    threads = {}
    d, base = os.path.split(out)
    for name in os.listdir(d):
        m = re.fullmatch(re.escape(base) + r"-(\d+)", name)
        if m:
            threads[int(m.group(1))] = thread_file(os.path.join(d, name))
            os.unlink(os.path.join(d, name))
    if not threads:
        raise SystemExit(f"{server} {variant}: callgrind said\n{err[-2000:]}")
    return threads


def native_rate(server, n):
    """Requests a CPU-second the bare server answers without valgrind (utime + stime)."""
    proc = subprocess.Popen(
        [sys.executable, HERE, "--serve", server, "bare", str(10 * n)], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(proc.stdout.readline())
        load(port, n)  # warm-up
        best = float("inf")
        for _ in range(3):
            c0 = cpu_seconds(proc.pid)
            load(port, n)
            best = min(best, cpu_seconds(proc.pid) - c0)
        return n / best
    finally:
        proc.kill()
        proc.wait(30)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(server, variant, counts):
    """Per request: the request thread's slopes (one per pair of counts), and the other
    threads' instructions per request under callgrind and per sleep (wake)."""
    runs = [run_callgrind(server, variant, n) for n in counts]
    main_counts = [r[1][0] for r in runs]
    slopes = [(main_counts[i + 1] - main_counts[i]) / (counts[i + 1] - counts[i]) for i in range(len(counts) - 1)]
    other = [(sum(v[0] for k, v in r.items() if k != 1), sum(v[1] for k, v in r.items() if k != 1)) for r in runs]
    other_per_req = (other[-1][0] - other[0][0]) / (counts[-1] - counts[0])
    per_wake = other[-1][0] / other[-1][1] if other[-1][1] else 0.0
    return slopes, other_per_req, per_wake


def bench(server, counts, variants, native_n):
    rate = native_rate(server, native_n)
    print(
        f"{server}: instructions per request under callgrind (counts {','.join(map(str, counts))}; "
        f"the bare server answers {rate:,.0f} requests per CPU-second without valgrind)",
        flush=True,
    )
    print(f"  {'variant':10} {'per request':>12} {'(slopes)':>22} {'vs bare':>16} {'other threads':>36}")
    base = None
    results = {}
    for v in variants:
        slopes, other_per_req, per_wake = measure(server, v, counts)
        per = sum(slopes) / len(slopes)
        results[v] = per
        base = per if base is None else base
        extra = ""
        if per_wake:
            real = per_wake * (1000 / SAMPLER_MS) / rate
            extra = f"{other_per_req:8.0f}/req under callgrind; {per_wake:,.0f}/wake -> {real:6.1f}/req real"
        print(
            f"  {v:10} {per:12.0f} ({' / '.join(f'{s:.0f}' for s in slopes):>20}) "
            f"{per - base:+8.0f} {(per - base) / base * 100:5.1f}%  {extra}",
            flush=True,
        )
    print("  memwarden's own part:", end="")
    if "bare" in results and "mwnohdr" in results:
        d = results["mwnohdr"] - results["bare"]
        print(f" mwnohdr - bare {d:+.0f} ({d / results['bare'] * 100:.1f}% of bare)", end="")
    if "static4" in results and "mw" in results:
        d = results["mw"] - results["static4"]
        print(f"; mw - static4 {d:+.0f} ({d / results['bare'] * 100:.1f}% of bare)", end="")
    print(flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("werkzeug", "uvicorn", "both"), default="both")
    parser.add_argument("--counts", default="300,900,1500", help="three (or more) request counts, ascending")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--native", type=int, default=3000, help="requests per native round (sampler charge)")
    parser.add_argument("--hash-seed", default="0", help="PYTHONHASHSEED of the servers (another seed, other counts)")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    HASH_SEED[0] = args.hash_seed
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]))
        return
    counts = [int(c) for c in args.counts.split(",")]
    servers = ("werkzeug", "uvicorn") if args.server == "both" else (args.server,)
    for s in servers:
        bench(s, counts, args.variants.split(","), args.native)


if __name__ == "__main__":
    main()
