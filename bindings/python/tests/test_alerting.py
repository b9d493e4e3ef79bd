"""MemoryAlertingService against real endpoints on loopback: an aiosmtpd SMTP server and an
http.server standing in for Slack's incoming webhook, a generic webhook and Alertmanager's
/api/v2/alerts, made to answer, hang, refuse and fail.

Timing: nothing here asserts a duration. That check_and_alert() does not wait on a hanging
endpoint is shown by flush(0) returning False right after it (the delivery is still out)
while the server is still holding the request. Minutes-long throttling windows, cooldowns
and escalation intervals need the core's injectable clock and are tested in core/.
"""

import email
import email.policy
import gc
import json
import socket
import sys
import threading
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import memwarden
from memwarden import ConfigError, InvalidArgumentError, MemoryAlertingService, MemoryManager

import aiosmtpd.controller as aiosmtpd_controller  # installed by run-tests.sh; missing = a failure

FLUSH = 20  # seconds: a bound for flush() that only a broken delivery thread reaches


# ---- endpoints -----------------------------------------------------------------------------


class Http:
    """An HTTP server on 127.0.0.1:0 that records every POST as (path, json body).

    mode: "ok" (200), an int status (500), or "hang" (hold the request until released)."""

    def __init__(self, mode="ok"):
        self.mode = mode
        self.requests = []
        self.hits = 0
        self.lock = threading.Lock()
        self.entered = threading.Event()  # a request arrived (and, in "hang", is being held)
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                with outer.lock:
                    outer.hits += 1
                    mode = outer.mode
                outer.entered.set()
                if mode == "hang":
                    outer.release.wait(30)
                    return
                if mode == "ok":
                    with outer.lock:
                        outer.requests.append((self.path, json.loads(body or b"null")))
                    self.send_response(200)
                else:
                    self.send_response(int(mode))
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, prefix=""):
        with self.lock:
            return [b for p, b in self.requests if p.startswith(prefix)]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http():
    servers = []

    def start(mode="ok"):
        s = Http(mode)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    def __init__(self):
        self.mails = []  # (rcpt_tos, email.message.EmailMessage)

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        self.mails.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


@pytest.fixture
def smtp():
    sink = Sink()
    controller = aiosmtpd_controller.Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    sink.port = controller.port
    yield sink
    controller.stop()


def smtp_settings(sink):
    return {"host": "127.0.0.1", "port": sink.port, "tls": "none", "from": "memwarden@example.com", "timeout": 10}


def body_text(msg):
    part = msg.get_body(preferencelist=("plain", "html")) if msg.is_multipart() else msg
    return part.get_content()


# ---- usage ---------------------------------------------------------------------------------


def host_manager():
    m = MemoryManager(source="host", memory_limit=1000, gc_probability=0.0, host_gc=False)
    m.update_host_reading(current=100)
    return m


def at(svc, manager, percent):
    manager.update_host_reading(current=int(percent * 10))
    return svc.check_and_alert()


def webhook(url, **extra):
    cfg = {"enabled": True, "url": url, "threshold": "warning", "timeout": 5, "retry_attempts": 0, "throttle_minutes": 0}
    cfg.update(extra)
    return cfg


def service(channels, manager=None, **options):
    options.setdefault("alert_cooldown_minutes", 0)
    return MemoryAlertingService({"channels": channels}, manager, **options)


# ---- the seed's snippet --------------------------------------------------------------------


def test_basic_setup_from_the_seed(http, smtp):
    h = http()
    m = host_manager()
    alert_service = MemoryAlertingService(
        {
            "channels": {
                "email": {
                    "enabled": True,
                    "recipients": ["admin@example.com", "ops@example.com"],
                    "threshold": "warning",
                    "smtp": smtp_settings(smtp),  # the seed's mail goes through PHP's mailer
                },
                "slack": {
                    "enabled": True,
                    "webhook_url": h.url("/services/T000/B000/XXXX"),
                    "channel": "#alerts",
                    "threshold": "critical",
                },
            },
            "thresholds": {
                "warning": 75,  # 75% memory usage
                "critical": 90,  # 90% memory usage
                "emergency": 95,  # 95% memory usage
            },
        },
        m,
    )

    # Check memory and send alerts if needed
    assert alert_service.check_and_alert() == "normal"
    assert at(alert_service, m, 80) == "warning"
    assert alert_service.flush(FLUSH)
    assert len(smtp.mails) == 1
    assert h.bodies() == [], "slack's threshold is critical"
    assert at(alert_service, m, 92) == "critical"
    assert alert_service.flush(FLUSH)
    assert len(smtp.mails) == 2
    (slack,) = h.bodies("/services/")
    assert slack["channel"] == "#alerts"
    assert "CRITICAL" in slack["text"]
    assert alert_service.level == "critical"


# ---- channels ------------------------------------------------------------------------------


def test_email_reaches_the_smtp_server_with_recipients_subject_and_body(smtp):
    m = host_manager()
    svc = service(
        {
            "email": {
                "recipients": ["admin@example.com", "ops@example.com"],
                "threshold": "warning",
                "smtp": smtp_settings(smtp),
            }
        },
        m,
        include_system_info=True,
    )
    assert at(svc, m, 91) == "critical"
    assert svc.flush(FLUSH)
    (hist,) = svc.get_alert_history()
    assert [d["outcome"] for d in hist["deliveries"]] == ["ok"], hist
    assert len(smtp.mails) == 1
    rcpt, msg = smtp.mails[0]
    assert rcpt == ["admin@example.com", "ops@example.com"]
    assert msg["From"] == "memwarden@example.com"
    assert "admin@example.com" in msg["To"] and "ops@example.com" in msg["To"]
    assert msg["Subject"].startswith("[memwarden] CRITICAL: memory at 91")
    body = body_text(msg)
    assert "critical threshold (90%)" in body
    assert "memory_total_mb" in body  # include_system_info


def test_slack_webhook_and_alertmanager_receive_their_json_and_resolve_notices(http):
    h = http()
    m = host_manager()
    svc = service(
        {
            "slack": {
                "webhook_url": h.url("/services/T0/B0/SLACKSECRET"),
                "channel": "#alerts",
                "username": "Glueful Monitor",
                "threshold": "warning",
                "throttle_minutes": 0,
                "retry_attempts": 0,
            },
            "webhook": webhook(h.url("/hook")),
            "alertmanager": {"url": h.url(""), "threshold": "warning", "labels": {"team": "ops"}},
        },
        m,
    )
    assert at(svc, m, 80) == "warning"
    assert svc.flush(FLUSH)

    (slack,) = h.bodies("/services/")
    assert slack["channel"] == "#alerts"
    assert slack["username"] == "Glueful Monitor"
    assert "WARNING" in slack["text"]

    (hook,) = h.bodies("/hook")
    assert hook["source"] == "memwarden"
    assert hook["alerts"][0]["level"] == "warning"
    assert hook["alerts"][0]["kind"] == "alert"
    assert hook["alerts"][0]["usage_percent"] == 80.0

    (am,) = h.bodies("/api/v2/alerts")
    assert isinstance(am, list)
    assert am[0]["labels"]["severity"] == "warning"
    assert am[0]["labels"]["team"] == "ops"
    assert "endsAt" not in am[0]

    # Back to normal: a resolve notice on every channel that heard of it.
    assert at(svc, m, 40) == "normal"
    assert svc.flush(FLUSH)
    assert [b["alerts"][0]["kind"] for b in h.bodies("/hook")] == ["alert", "resolved"]
    assert len(h.bodies("/services/")) == 2
    resolved = h.bodies("/api/v2/alerts")[-1]
    assert isinstance(resolved[0]["endsAt"], str)
    assert svc.get_alert_history(kind="resolved")[0]["level"] == "warning"
    assert "SLACKSECRET" not in repr(svc.get_alert_history())


# ---- endpoints that hang, refuse, fail -----------------------------------------------------


def test_a_hanging_endpoint_does_not_block_check_and_alert(http):
    h = http("hang")
    m = host_manager()
    svc = service({"webhook": webhook(h.url("/hooks/HANGTOKEN"), timeout=0.5)}, m)
    assert at(svc, m, 80) == "warning"  # returned ...
    assert not svc.flush(0)  # ... while its delivery is still out
    assert h.entered.wait(FLUSH)  # the server holds the request
    assert not h.release.is_set()
    # More checks while the endpoint hangs also return.
    assert at(svc, m, 96) == "emergency"
    assert svc.send_alert("still here", "critical") > 0
    assert svc.flush(FLUSH), "the channel timeout must end the hanging delivery"
    hist = svc.get_alert_history(kind="alert")
    failed = [d for a in hist for d in a["deliveries"] if d["outcome"] == "failed"]
    assert failed, hist
    assert "timeout" in failed[0]["error"].lower(), failed
    assert "HANGTOKEN" not in repr(svc.get_alert_history())


def test_a_refused_connection_is_recorded_without_the_token_and_reaches_the_callback():
    url = f"http://127.0.0.1:{free_port()}/hooks/SECRET-TOKEN"
    svc = service({"webhook": webhook(url)}, host_manager())
    failed = []
    done = threading.Event()

    @svc.on_delivery_failed
    def _(event):
        failed.append((event, threading.get_ident()))
        done.set()

    alert_id = svc.send_alert("memory is not fine", "warning")
    assert svc.flush(FLUSH)
    assert done.wait(FLUSH)
    (hist,) = svc.get_alert_history()
    assert hist["id"] == alert_id
    (d,) = hist["deliveries"]
    assert d["channel"] == "webhook"
    assert d["outcome"] == "failed"
    assert d["error"]
    event, ident = failed[0]
    assert event["kind"] == "delivery_failed"
    assert event["channel"] == "webhook"
    assert event["alert_id"] == alert_id
    assert ident != threading.get_ident(), "callbacks run on the delivery thread"
    everything = repr(svc.get_alert_history()) + repr(svc.poll_events()) + repr(failed)
    assert "SECRET-TOKEN" not in everything


def test_a_server_error_is_retried_then_recorded(http):
    h = http(500)
    m = host_manager()
    svc = service({"webhook": webhook(h.url("/hooks/T123/abc"), retry_attempts=1)}, m)
    assert at(svc, m, 80) == "warning"
    assert svc.flush(FLUSH)
    assert h.hits == 2
    (hist,) = svc.get_alert_history()
    assert [d["outcome"] for d in hist["deliveries"]] == ["failed", "failed"]
    assert hist["deliveries"][-1]["error"] == "HTTP 500"
    assert "T123" not in repr(hist)
    kinds = [e["kind"] for e in svc.poll_events()]
    assert kinds[0] == "alert_raised" and kinds[-1] == "delivery_failed", kinds


def test_smtp_refusing_leaves_no_password_in_history():
    svc = service(
        {
            "email": {
                "recipients": ["admin@example.com"],
                "smtp": {"host": "127.0.0.1", "port": free_port(), "tls": "none", "username": "u", "password": "hunter2"},
            }
        },
        host_manager(),
    )
    svc.send_alert("x", "critical")
    assert svc.flush(FLUSH)
    (hist,) = svc.get_alert_history()
    assert hist["deliveries"][0]["outcome"] == "failed"
    assert "hunter2" not in repr(hist) + repr(svc.poll_events())


# ---- policies ------------------------------------------------------------------------------


def test_two_checks_give_one_message(http):
    h = http()
    m = host_manager()
    svc = service({"webhook": webhook(h.url("/h"), throttle_minutes=10)}, m, hysteresis=0)
    assert at(svc, m, 80) == "warning"
    assert at(svc, m, 81) == "warning"
    assert svc.flush(FLUSH)
    assert len(h.bodies()) == 1
    # Resolved and raised again within the throttle window: the new alert is throttled.
    assert at(svc, m, 50) == "normal"
    assert at(svc, m, 80) == "warning"
    assert svc.flush(FLUSH)
    assert [b["alerts"][0]["kind"] for b in h.bodies()] == ["alert", "resolved"]
    outcomes = [d["outcome"] for a in svc.get_alert_history(kind="alert") for d in a["deliveries"]]
    assert sorted(outcomes) == ["ok", "throttled"]


def test_the_same_user_message_is_throttled(http):
    h = http()
    svc = service({"webhook": webhook(h.url("/h"), throttle_minutes=10)}, host_manager())
    first = svc.send_alert("disk full", "critical")
    second = svc.send_alert("disk full", "critical")
    other = svc.send_alert("disk full", "emergency")
    assert first < second < other
    assert svc.flush(FLUSH)
    assert [b["alerts"][0]["message"] for b in h.bodies()] == ["disk full", "disk full"]
    assert [b["alerts"][0]["level"] for b in h.bodies()] == ["critical", "emergency"]
    by_id = {a["id"]: a for a in svc.get_alert_history(kind="custom")}
    assert by_id[second]["deliveries"][0]["outcome"] == "throttled"


def test_resolve_notice_when_usage_drops(http):
    h = http()
    m = host_manager()
    svc = service({"webhook": webhook(h.url("/h"))}, m)
    assert at(svc, m, 92) == "critical"
    assert svc.level == "critical"
    assert at(svc, m, 60) == "normal"
    assert svc.level == "normal"
    assert svc.flush(FLUSH)
    kinds = [b["alerts"][0]["kind"] for b in h.bodies()]
    assert kinds == ["alert", "resolved"]
    assert "normal" in h.bodies()[1]["alerts"][0]["message"]
    assert [e["kind"] for e in svc.poll_events()].count("alert_resolved") == 1


def test_send_alert_levels_and_history_filters(http):
    h = http()
    svc = service({"webhook": webhook(h.url("/h"), threshold="critical")}, host_manager())
    low = svc.send_alert("only history")  # warning: below the channel's threshold
    high = svc.send_alert("to the webhook", level="emergency")
    assert isinstance(low, int) and isinstance(high, int)
    assert svc.flush(FLUSH)
    assert [b["alerts"][0]["message"] for b in h.bodies()] == ["to the webhook"]
    assert [a["id"] for a in svc.get_alert_history()] == [high, low]
    assert [a["id"] for a in svc.get_alert_history({"level": "warning"})] == [low]
    assert [a["id"] for a in svc.get_alert_history(limit=1)] == [high]
    assert [a["id"] for a in svc.get_alert_history(channel="webhook")] == [high]
    assert svc.get_alert_history(since=0, kind="custom")[0]["message"] == "to the webhook"
    with pytest.raises(InvalidArgumentError, match="normal"):
        svc.send_alert("x", "normal")
    with pytest.raises(InvalidArgumentError, match="'severe'"):
        svc.send_alert("x", "severe")
    with pytest.raises(InvalidArgumentError, match="colour"):
        svc.get_alert_history(colour="red")
    with pytest.raises(InvalidArgumentError, match="both"):
        svc.get_alert_history({"limit": 1}, limit=2)
    with pytest.raises(InvalidArgumentError):
        svc.flush(-1)


# ---- callbacks -----------------------------------------------------------------------------


def test_callbacks_fire_for_raised_and_failed_and_survive_exceptions(http, monkeypatch):
    h = http()
    m = host_manager()
    svc = service({"webhook": webhook(h.url("/h"))}, m)
    raised, every = [], []
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    assert svc.on_alert(raised.append) is not None
    svc.on_event(lambda e: every.append(e["kind"]))

    @svc.on_alert
    def boom(event):
        raise RuntimeError("callback failed on purpose")

    assert at(svc, m, 80) == "warning"
    assert svc.flush(FLUSH)
    assert [e["kind"] for e in raised] == ["alert_raised"]
    assert raised[0]["level"] == "warning"
    assert "delivery_ok" in every
    assert any(isinstance(u.exc_value, RuntimeError) for u in unraisable), unraisable

    # The delivery thread survived the exception: the next alert is still delivered.
    assert at(svc, m, 96) == "emergency"
    assert svc.flush(FLUSH)
    assert [b["alerts"][0]["level"] for b in h.bodies()] == ["warning", "emergency"]
    assert [e["level"] for e in raised] == ["warning", "emergency"]
    with pytest.raises(TypeError, match="callable"):
        svc.on_event(42)


def test_flush_inside_a_callback_raises_instead_of_waiting_for_itself(monkeypatch):
    svc = MemoryAlertingService()
    unraisable, reported = [], threading.Event()

    def hook(u):
        unraisable.append(u)
        reported.set()

    monkeypatch.setattr(sys, "unraisablehook", hook)

    @svc.on_alert
    def flush_from_inside(event):
        svc.flush()

    svc.send_alert("x", "warning")
    assert reported.wait(FLUSH)
    assert svc.flush(FLUSH)
    assert any("delivery thread" in str(u.exc_value) for u in unraisable), unraisable


def test_a_service_whose_callback_refers_to_it_is_collected():
    svc = MemoryAlertingService()
    svc.on_event(lambda e, s=svc: s.level)
    ref = weakref.ref(svc)
    del svc
    gc.collect()
    assert ref() is None


# ---- construction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, match",
    [
        ({"channels": {"pagerduty": {}}}, "unknown channel 'pagerduty'"),
        ({"channels": {"slak": {"webhook_url": "http://127.0.0.1/x"}}}, "did you mean 'slack'"),
        ({"channels": {"webhook": {"url": "ftp://127.0.0.1/x"}}}, r"bad URL for 'channels\.webhook\.url'"),
        ({"channels": {"slack": {"webhook_url": "not a url"}}}, "bad URL"),
        ({"channels": {"email": {"recipients": ["admin@example.com", "not-an-address"]}}}, "not-an-address"),
        ({"channels": {"email": {"recipients": ["a@example.com"], "threshold": "severe"}}}, "unknown threshold name 'severe'"),
        ({"thresholds": {"warning": 75, "panic": 99}}, "panic"),
        ({"escalation": {"enabled": True, "levels": {"1": {"pager": True}}}}, "unknown channel 'pager'"),
        ({"escalation": {"escalation_intervals": [5, -1]}}, r"escalation_intervals\[1\] is negative"),
        ({"channels": {"webhook": webhook("http://127.0.0.1/x", throttle_minutes=-1)}}, "throttle_minutes"),
        ({"alert_cooldown_minutes": -5}, "alert_cooldown_minutes"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_config_is_refused_at_construction_naming_it(config, match):
    with pytest.raises(ConfigError, match=match):
        MemoryAlertingService(config)


def test_bad_url_error_hides_the_token():
    with pytest.raises(ConfigError) as e:
        MemoryAlertingService({"channels": {"webhook": {"url": "ftp://hooks.example.com/T0/SECRETPATH"}}})
    assert "SECRETPATH" not in str(e.value)


def test_keyword_options_and_argument_checks(http):
    h = http()
    m = host_manager()
    svc = MemoryAlertingService(channels={"webhook": webhook(h.url("/h"))}, thresholds={"warning": 50}, manager=None)
    assert svc.check_and_alert() in ("normal", "warning", "critical", "emergency")
    svc = MemoryAlertingService({"thresholds": {"warning": 50}}, m, channels={"webhook": webhook(h.url("/h"))})
    assert at(svc, m, 55) == "warning"
    with pytest.raises(ConfigError, match="both"):
        MemoryAlertingService({"batch_alerts": True}, batch_alerts=False)
    with pytest.raises(TypeError, match="MemoryManager"):
        MemoryAlertingService({}, "not a manager")
    with pytest.raises(TypeError, match="dict"):
        MemoryAlertingService(["channels"])


def test_manager_as_a_keyword(http):
    h = http()
    m = host_manager()
    svc = MemoryAlertingService({"channels": {"webhook": webhook(h.url("/h"))}}, manager=m)
    assert at(svc, m, 80) == "warning"
    with pytest.raises(TypeError, match="both"):
        MemoryAlertingService({}, m, manager=m)


def test_default_manager_watches_this_process():
    svc = MemoryAlertingService()
    assert svc.check_and_alert() in ("normal", "warning", "critical", "emergency")
    assert svc.flush(1)
    assert MemoryAlertingService.LEVEL_CRITICAL == "critical"


def test_context_manager_flushes_on_exit(http):
    h = http()
    with MemoryAlertingService({"channels": {"webhook": webhook(h.url("/h"))}}, host_manager()) as svc:
        svc.send_alert("from the with block", "warning")
    assert [b["alerts"][0]["message"] for b in h.bodies()] == ["from the with block"]


def test_history_on_disk(tmp_path):
    path = str(tmp_path / "alerts.db")
    svc = MemoryAlertingService({"history_path": path}, host_manager())
    svc.send_alert("persisted", "critical")
    del svc
    gc.collect()
    again = MemoryAlertingService(history_path=path)
    assert again.get_alert_history()[0]["message"] == "persisted"


def test_exported():
    assert memwarden.MemoryAlertingService is MemoryAlertingService
    assert "MemoryAlertingService" in memwarden.__all__
