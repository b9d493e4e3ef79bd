"""The WSGI middleware's cost per request counted in instructions (valgrind's callgrind).

    python bindings/python/bench/middleware_instructions.py [n1] [n2] [variants]   (needs valgrind)

Instruction counts do not change with the load of a shared machine, unlike CPU time. A
hello-world WSGI app under werkzeug runs under callgrind and answers n1, then n2 requests;
(I(n2) - I(n1)) / (n2 - n1) is the server's work per request, start-up cancelled out.
Variants: bare; ``static4``, a pure-Python middleware adding four constant headers (what the
server charges for any four headers: the anchor for the headers' share); ``wrapbody``, a
pass-through middleware wrapping start_response and the body as ours does; memwarden's
middleware by default (``mw``, a read per reading at this rate), without headers (``mwnohdr``)
and with a 5 ms sampler (``mwsampler``).
"""

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


def hello(environ, start_response):
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


def make(variant):
    if variant == "bare":
        return hello
    if variant in ("static4", "wrapbody"):
        extra = STATIC if variant == "static4" else []

        def app(environ, start_response):
            def sr(status, headers, exc_info=None):
                return start_response(status, [*headers, *extra], exc_info)

            return _Body(hello(environ, sr))

        return app
    from memwarden.wsgi import MemoryTrackingMiddleware

    options = {"mw": {}, "mwnohdr": {"include_headers": False}, "mwsampler": {"sampler_interval_ms": 5}}[variant]
    return MemoryTrackingMiddleware(hello, **options)


def serve(variant, n):
    from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_request(self, *args, **kwargs):
            pass

    inner = make(variant)
    count = [0]

    def app(environ, start_response):
        count[0] += 1
        if count[0] == n:
            threading.Thread(target=server.shutdown).start()
        return inner(environ, start_response)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = BaseWSGIServer("127.0.0.1", port, app, handler=Handler)
    print(server.server_port, flush=True)
    server.serve_forever(poll_interval=0.05)
    server.server_close()


def instructions(variant, n):
    out = os.path.join(tempfile.gettempdir(), f"mw-cg-py.{os.getpid()}.{variant}.{n}")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, HERE, "--serve", variant, str(n)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for _ in range(n):
        conn.request("GET", "/hello")
        r = conn.getresponse()
        if r.read() != BODY:
            raise SystemExit(f"{variant}: bad answer")
    conn.close()
    _, err = proc.communicate(timeout=600)
    if os.path.exists(out):
        os.unlink(out)
    m = re.search(r"Collected : (\d+)", err)
    if not m:
        raise SystemExit(f"{variant}: callgrind said\n{err[-2000:]}")
    return int(m.group(1))


def main():
    n1 = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    n2 = int(sys.argv[2]) if len(sys.argv) > 2 else 1200
    variants = (sys.argv[3] if len(sys.argv) > 3 else "bare,static4,wrapbody,mw,mwnohdr,mwsampler").split(",")
    print(f"instructions per request under callgrind ({n1} then {n2} requests; bare = the anchor)")
    base = None
    for v in variants:
        per = (instructions(v, n2) - instructions(v, n1)) / (n2 - n1)
        base = per if base is None else base
        print(f"  {v:10} {per:10.0f} instructions/request  +{per - base:8.0f} ({(per - base) / per * 100:5.1f}% of the server's work)", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
