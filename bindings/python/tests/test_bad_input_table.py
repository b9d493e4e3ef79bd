"""The bad-input table for Python (README "Reliability"): wrong types, None, huge values,
empty strings, invalid text, use after close/dispose. Each row is one call that must raise the
given exception type with a message naming the problem; none may crash the interpreter."""

import re

import pytest

import memwarden
from memwarden import (
    ClosedError,
    ConfigError,
    InvalidArgumentError,
    LazyContainer,
    MemoryAlertingService,
    MemoryManager,
    MemoryPool,
    NotFoundError,
    StreamingIterator,
)


def _closed_pool():
    p = MemoryPool(factory=lambda: object(), max_size=1)
    p.close()
    return p


def _disposed_container():
    c = LazyContainer()
    c.singleton("db", lambda c: object())
    c.dispose()
    return c


def _released_twice():
    p = MemoryPool(factory=lambda: object(), max_size=1, min_size=0)
    o = p.acquire()
    p.release(o)
    p.release(o)


# (case, call, exception type, regex the message must match)
CASES = [
    ("size: empty string", lambda: memwarden.parse_size(""), InvalidArgumentError, r"invalid size ''"),
    ("size: unknown unit", lambda: memwarden.parse_size("12X"), InvalidArgumentError, r"'12X'"),
    ("size: huge", lambda: memwarden.parse_size("99999999999999999999G"), InvalidArgumentError, r"too large"),
    ("size: None", lambda: memwarden.parse_size(None), TypeError, r"str"),
    ("size: lone surrogate", lambda: memwarden.parse_size("\ud800"), (UnicodeEncodeError, InvalidArgumentError), r"surrogate|UTF-8"),
    ("format_size: negative", lambda: memwarden.format_size(-1), OverflowError, r"negative|unsigned"),
    ("manager: unknown key", lambda: MemoryManager(warning_treshold=0.5), ConfigError, r"did you mean 'warning_threshold'"),
    ("manager: wrong type", lambda: MemoryManager(warning_threshold="high"), ConfigError, r"'warning_threshold'.*'high'"),
    ("manager: config not a mapping", lambda: MemoryManager([1, 2]), TypeError, r"mapping|dict"),
    ("manager: NaN threshold", lambda: MemoryManager(warning_threshold=float("nan")), ConfigError, r"'warning_threshold'"),
    ("manager: bad limit", lambda: MemoryManager().set_memory_limit("lots"), InvalidArgumentError, r"'lots'"),
    ("manager: limit of wrong type", lambda: MemoryManager().set_memory_limit(1.5), TypeError, r"'limit' must be a str .* or an int .*got float"),
    ("manager: limit None", lambda: MemoryManager().set_memory_limit(None), TypeError, r"'limit' must be a str .*got NoneType"),
    ("manager: huge limit", lambda: MemoryManager().set_memory_limit(2**70), InvalidArgumentError, r"invalid memory limit 1180591620717411303424: out of range"),
    ("manager: negative limit", lambda: MemoryManager().set_memory_limit(-7), InvalidArgumentError, r"-7"),
    ("manager: callback not callable", lambda: MemoryManager().on_state_change(5), TypeError, r"callable"),
    ("pool: max_size 0", lambda: MemoryPool(factory=object, max_size=0), ConfigError, r"'max_size'"),
    ("pool: min above max", lambda: MemoryPool(factory=object, min_size=5, max_size=2), ConfigError, r"must not exceed"),
    ("pool: negative timeout", lambda: MemoryPool(factory=object, acquire_timeout=-1), ConfigError, r"'acquire_timeout'"),
    ("pool: factory None", lambda: MemoryPool(factory=None), (TypeError, ConfigError), r"factory"),
    ("pool: acquire after close", lambda: _closed_pool().acquire(), ClosedError, r"closed"),
    ("pool: foreign object released", lambda: MemoryPool(factory=object).release(object()), InvalidArgumentError, r"pool"),
    ("pool: released twice", _released_twice, InvalidArgumentError, r"pool"),
    ("container: unknown name", lambda: LazyContainer().get("missing"), NotFoundError, r"'missing'"),
    ("container: get(None)", lambda: LazyContainer().get(None), TypeError, r"str"),
    ("container: get after dispose", lambda: _disposed_container().get("db"), ClosedError, r"dispose|closed"),
    ("container: unknown config key", lambda: LazyContainer(nope=1), ConfigError, r"unknown key 'nope'"),
    ("iterator: source not iterable", lambda: StreamingIterator(5), TypeError, r"iterable"),
    ("iterator: chunk_size 0", lambda: StreamingIterator([1], chunk_size=0), ConfigError, r"'chunk_size'"),
    ("iterator: bad error_handling", lambda: StreamingIterator([1], error_handling="ignore"), ConfigError, r"'error_handling'"),
    ("chunk: malformed connection", lambda: memwarden.ChunkedDatabaseProcessor("nowhere"), InvalidArgumentError, r"malformed connection string 'nowhere'"),
    ("chunk: chunk_size 0", lambda: memwarden.ChunkedDatabaseProcessor("sqlite::memory:", chunk_size=0), ConfigError, r"'chunk_size'"),
    ("alert: unknown channel", lambda: MemoryAlertingService({"channels": {"pager": {}}}), ConfigError, r"pager"),
    ("alert: bad level", lambda: MemoryAlertingService().send_alert("x", level="loud"), InvalidArgumentError, r"loud"),
]


@pytest.mark.parametrize("case,call,exc,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(case, call, exc, pattern):
    with pytest.raises(exc) as info:
        call()
    assert re.search(pattern, str(info.value)), f"{case}: {info.type.__name__}: {info.value}"

