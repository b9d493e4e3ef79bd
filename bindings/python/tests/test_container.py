"""LazyContainer through the Python binding: the seed's scenarios, lifetimes, scopes,
cycles, failing factories, auto-wiring, errors, threads, the manager and garbage collection."""

import gc
import threading
import time
import weakref

import pytest

from memwarden import (
    CircularDependencyError,
    ClosedError,
    ConfigError,
    InvalidArgumentError,
    LazyContainer,
    MemoryManager,
    NotFoundError,
)


class DatabaseConnection:
    def __init__(self, config=None):
        self.config = config


class UserService:
    def __init__(self, db):
        self.db = db


class Logger:
    def __init__(self, name):
        self.name = name


class EmailService:
    def __init__(self, logger, config):
        self.logger = logger
        self.config = config


# ---- the seed ------------------------------------------------------------------


def test_seed_basic_usage():
    container = LazyContainer()
    made = []
    container.lazy("database", lambda: made.append("db") or DatabaseConnection({"dsn": "x"}))
    container.lazy("userService", lambda c: UserService(c.get("database")))
    assert made == []
    user_service = container.get("userService")
    assert made == ["db"]
    assert isinstance(user_service.db, DatabaseConnection)
    assert container.get("userService") is user_service


def test_seed_service_registration_and_configuration():
    container = LazyContainer(
        {"auto_wire": True, "circular_detection": True, "cache_instances": True, "debug_mode": False}
    )
    container.lazy("config", lambda: {"app": "demo"})
    container.lazy("logger", lambda: Logger("app"))
    container.lazy("emailService", lambda c: EmailService(c.get("logger"), c.get("config")))
    container.singleton("cache", lambda: {"redis": True})
    email = container.get("emailService")
    assert email.logger.name == "app" and email.config == {"app": "demo"}
    assert container.get("cache") is container.get("cache")
    assert LazyContainer(debug_mode=True).get_statistics()["created"] == 0
    with pytest.raises(ConfigError, match="did you mean 'cache_instances'"):
        LazyContainer(cache_instance=True)


def test_seed_advanced_features_aliases_tags_statistics():
    container = LazyContainer()
    container.lazy("config", lambda: {"payment.provider": "stripe"})
    container.lazy(
        "paymentProcessor",
        lambda c: "stripe" if c.get("config")["payment.provider"] == "stripe" else "paypal",
    )
    container.lazy("database", DatabaseConnection)
    container.lazy("logger", lambda: Logger("app"))
    container.lazy("emailService", lambda: "email")
    container.lazy("smsService", lambda: "sms")
    assert container.get("paymentProcessor") == "stripe"
    container.alias("db", "database")
    container.alias("log", "logger")
    assert container.get("db") is container.get("database")
    assert container.get("log").name == "app"
    container.tag("emailService", ["notification", "communication"])
    container.tag("smsService", ["notification", "communication"])
    assert container.get_by_tag("notification") == ["email", "sms"]
    assert container.get_by_tag("communication") == ["email", "sms"]
    assert container.get_by_tag("nothing") == []
    stats = container.get_statistics()
    for key in ("created", "cached", "avg_creation_time", "memory_saved"):
        assert key in stats
    assert stats["created"] == 6 and stats["cached"] == 6
    assert stats["avg_creation_time"] >= 0 and stats["memory_saved"] >= 0


# ---- lifetimes -------------------------------------------------------------------


def test_lazy_creates_on_first_get_only():
    calls = []
    container = LazyContainer()
    container.lazy("x", lambda: calls.append(1) or object())
    assert calls == [] and container.has("x") and "x" in container and "y" not in container
    first = container.get("x")
    assert container.get("x") is first and calls == [1]
    assert container.release_lazy() == 1
    assert container.get("x") is not first and calls == [1, 1]


def test_singleton_transient_and_no_cache():
    container = LazyContainer()
    container.singleton("s", object)
    container.factory("t", object)
    assert container.get("s") is container.get("s")
    assert container.get("t") is not container.get("t")
    nc = LazyContainer(cache_instances=False)
    nc.lazy("l", object)
    assert nc.get("l") is not nc.get("l")


def test_scoped_one_per_scope_and_disposal_in_reverse_order():
    log = []
    container = LazyContainer()
    container.scoped("request", lambda: "request", dispose=lambda v: log.append("dispose " + v))
    container.scoped(
        "handler", lambda c: "handler(%s)" % c.get("request"), dispose=lambda v: log.append("dispose " + v)
    )
    # Language-neutral: no other binding's spelling of how to get a scope.
    with pytest.raises(InvalidArgumentError, match=r"^service 'request' is scoped: resolve it through a scope$"):
        container.get("request")
    with container.create_scope() as scope:
        assert scope.get("handler") == "handler(request)"
        assert scope.get("request") is scope.get("request")
        other = container.create_scope()
        assert other.get("handler") is not scope.get("handler")
        other.dispose()
        log.clear()
    assert log == ["dispose handler(request)", "dispose request"]
    with pytest.raises(ClosedError):
        scope.get("request")


def test_singleton_capturing_scoped_is_an_error():
    container = LazyContainer()
    container.scoped("request", lambda: "r")
    container.singleton("cache", lambda c: c.get("request"))
    scope = container.create_scope()
    with pytest.raises(InvalidArgumentError, match="singleton 'cache' cannot depend on scoped service 'request'"):
        scope.get("cache")
    assert container.get_statistics()["cached"] == 0


def test_container_dispose_runs_hooks_in_reverse_creation_order():
    log = []
    container = LazyContainer()
    for n in ("a", "b", "c"):
        container.singleton(n, lambda n=n: n, dispose=log.append)
    container.get("b")
    container.get("a")
    container.get("c")
    container.dispose()
    assert log == ["c", "a", "b"]
    with pytest.raises(ClosedError):
        container.get("a")
    with pytest.raises(ClosedError):
        container.lazy("d", object)


# ---- failures ----------------------------------------------------------------------


def test_cycle_has_its_path():
    container = LazyContainer()
    container.lazy("a", lambda c: c.get("b"))
    container.lazy("b", lambda c: c.get("c"))
    container.lazy("c", lambda c: c.get("a"))
    for _ in range(2):
        with pytest.raises(CircularDependencyError, match=r"^circular dependency: a -> b -> c -> a$"):
            container.get("a")
    container.lazy("c", lambda: "c", override=True)
    assert container.get("a") == "c"


def test_failing_factory_reraises_its_exception_caches_nothing_and_recovers():
    state = {"fail": True}

    def db():
        if state["fail"]:
            raise ValueError("connection refused")
        return "db"

    container = LazyContainer()
    container.singleton("db", db)
    container.lazy("users", lambda c: ("users", c.get("db")))
    with pytest.raises(ValueError, match="connection refused"):
        container.get("users")
    assert container.get_statistics()["cached"] == 0
    state["fail"] = False
    assert container.get("users") == ("users", "db")


def test_factory_returning_none_names_the_service():
    container = LazyContainer()
    container.lazy("nothing", lambda: None)
    with pytest.raises(TypeError, match="service 'nothing' returned None"):
        container.get("nothing")


def test_unknown_alias_duplicate_and_empty_names():
    container = LazyContainer()
    container.lazy("database", object)
    with pytest.raises(NotFoundError, match="did you mean 'database'"):
        container.get("databse")
    with pytest.raises(LookupError):
        container.get("nothing")
    with pytest.raises(TypeError, match="must be str"):
        container.get(42)
    assert 42 not in container
    container.alias("ghost", "nowhere")
    with pytest.raises(NotFoundError, match="alias 'ghost' points to 'nowhere', which is not registered"):
        container.get("ghost")
    container.alias("a", "b")
    with pytest.raises(CircularDependencyError, match="alias cycle: b -> a -> b"):
        container.alias("b", "a")
    with pytest.raises(InvalidArgumentError, match="already registered"):
        container.lazy("database", object)
    first = container.get("database")
    container.lazy("database", lambda: "replaced", override=True)
    assert container.get("database") == "replaced" and first is not None
    with pytest.raises(InvalidArgumentError, match="must not be empty"):
        container.lazy("", object)
    with pytest.raises(TypeError, match="callable"):
        container.lazy("x", 42)
    with pytest.raises(NotFoundError, match="not registered"):
        container.tag("nothing", "x")


# ---- decorators and auto-wiring ------------------------------------------------------


def test_decorator_form():
    container = LazyContainer()

    @container.singleton("config")
    def make_config():
        return {"debug": True}

    @container.lazy("service", dispose=lambda s: s.clear())
    def make_service(c):
        return {"config": c.get("config")}

    assert make_config() == {"debug": True}, "the decorator returns the function"
    assert container.get("service")["config"] is container.get("config")


class Config:
    def __init__(self):
        self.value = 42


class Repository:
    def __init__(self, config, table="users"):
        self.config = config
        self.table = table


class Handler:
    def __init__(self, repo: Repository, settings: Config, retries: int = 3):
        self.repo = repo
        self.settings = settings
        self.retries = retries


class Broken:
    def __init__(self, missing):
        self.missing = missing


def test_auto_wire_by_name_and_by_type_hint():
    container = LazyContainer()
    container.singleton("config", Config)
    container.singleton("Repository", Repository)
    container.singleton("Config", Config)
    container.factory("handler", Handler)
    h = container.get("handler")
    assert h.repo is container.get("Repository"), "by type hint"
    assert h.repo.config is container.get("config"), "by name"
    assert h.repo.table == "users" and h.retries == 3, "defaults"
    assert h.settings is container.get("Config")
    container.lazy("broken", Broken)
    with pytest.raises(NotFoundError, match="cannot auto-wire service 'broken': parameter 'missing'"):
        container.get("broken")
    off = LazyContainer(auto_wire=False)
    off.lazy("config", Config)
    off.lazy("broken", Broken)
    assert off.get("config").value == 42
    with pytest.raises(TypeError):
        off.get("broken")


# ---- threads, the manager, garbage collection ------------------------------------------


def test_eight_threads_race_on_a_slow_singleton():
    made = []
    container = LazyContainer()

    def slow():
        time.sleep(0.05)
        made.append(1)
        return object()

    container.singleton("slow", slow)
    container.lazy("fast", object)
    barrier = threading.Barrier(8)
    got = []

    def worker():
        barrier.wait()
        got.append(container.get("slow"))
        got.append(container.get("fast"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert made == [1]
    assert len({id(g) for g in got}) == 2 and len(got) == 16


def test_manager_cleanup_releases_lazy_instances():
    container = LazyContainer(release_lazy_on_cleanup=True)
    disposed = []
    container.lazy("l", object, dispose=disposed.append)
    container.singleton("s", object)
    lazy, single = container.get("l"), container.get("s")
    manager = MemoryManager(host_gc=False)
    manager.register_cleanup_hook("container", container, priority=5)
    assert ("container", 5) in manager.cleanup_hooks()
    manager.force_garbage_collection()
    assert disposed == [lazy]
    assert container.get("l") is not lazy
    assert container.get("s") is single


def test_container_with_factory_referencing_it_is_collectable():
    class Holder:
        pass

    container = LazyContainer()
    holder = Holder()
    holder.container = container
    container.lazy("x", lambda: holder.container)  # the factory refers to the container
    container.lazy("y", lambda c: "y")
    assert container.get("y") == "y"
    ref = weakref.ref(container)
    del container, holder
    gc.collect()
    assert ref() is None


def test_cached_singletons_follow_replacement_dispose_aliases_and_str_subclasses():
    container = LazyContainer()
    container.singleton("config", lambda: {"v": 1})
    first = container.get("config")
    assert container.get("config") is first  # served from get's memo now
    container.singleton("config", lambda: {"v": 2}, override=True)
    assert container.get("config") == {"v": 2}
    assert container.get("config") is container.get("config")

    class Name(str):
        def __hash__(self):
            return 0

    assert container.get(Name("config")) is container.get("config")
    container.alias("settings", "config")
    assert container.get("settings") is container.get("config")
    container.lazy("lazy", object)
    lazy = container.get("lazy")
    assert container.release_lazy() == 1
    assert container.get("lazy") is not lazy
    container.dispose()
    with pytest.raises(ClosedError):
        container.get("config")
    with pytest.raises(ClosedError):
        container.get("settings")
