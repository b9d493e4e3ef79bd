"""``TypedMemoryPool``: a ``MemoryPool`` whose hooks are methods of a subclass."""

from typing import Any, ContextManager, Dict, Generic, Mapping, Optional, TypeVar

from ._memwarden import ConfigError, MemoryPool

__all__ = ["TypedMemoryPool"]

T = TypeVar("T")

_HOOKS = {
    "create_object": "factory",
    "reset_object": "reset",
    "validate_object": "validate",
    "destroy_object": "destroy",
}


class TypedMemoryPool(Generic[T]):
    """A pool of one kind of object, defined by overriding methods::

        class DatabaseConnectionPool(TypedMemoryPool[DatabaseConnection]):
            def create_object(self) -> DatabaseConnection:
                return DatabaseConnection(self.config)

            def reset_object(self, obj: DatabaseConnection) -> None:
                obj.rollback()

            def validate_object(self, obj: DatabaseConnection) -> bool:
                return obj.is_connected()

        pool = DatabaseConnectionPool({"max_size": 15})

    ``create_object`` is required; ``reset_object`` (run on every release),
    ``validate_object`` (run on acquire for an object idle longer than
    ``validation_interval``) and ``destroy_object`` are used only when overridden, so a
    pool without a validator pays for none. The constructor takes ``MemoryPool``'s config
    keys (not ``factory``, ``reset``, ``validate`` or ``destroy``: override the methods);
    ``self.config`` is the merged config dict, set before the first object is created.
    ``acquire``, ``release``, ``use``, ``get_statistics``, ``close``, ``maintain``,
    ``trim`` and ``cleanup`` are those of the inner ``MemoryPool`` (``self.pool``).
    """

    config: Dict[str, Any]

    def __init__(self, config: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> None:
        cls = type(self)
        if cls.create_object is TypedMemoryPool.create_object:
            raise TypeError(f"{cls.__qualname__} must override create_object(self), which returns a new object")
        merged: Dict[str, Any] = dict(config) if config is not None else {}
        for key, value in kwargs.items():
            if key in merged:
                raise ConfigError(
                    f"MemoryPool config: '{key}' is given both in the config dict and as a keyword argument"
                )
            merged[key] = value
        for method, key in _HOOKS.items():
            if key in merged:
                raise ConfigError(
                    f"{cls.__qualname__} config: '{key}' cannot be given to a TypedMemoryPool; "
                    f"override {method}() instead"
                )
        self.config = merged
        hooks: Dict[str, Any] = {"factory": self.create_object}
        for method, key in _HOOKS.items():
            if key != "factory" and getattr(cls, method) is not getattr(TypedMemoryPool, method):
                hooks[key] = getattr(self, method)
        self._pool = MemoryPool(merged, **hooks)

    # ---- the methods a subclass overrides ----------------------------------------

    def create_object(self) -> T:
        """Returns a new object. Must be overridden."""
        raise NotImplementedError

    def reset_object(self, obj: T) -> None:
        """Puts a released object back in its initial state (a rollback, a cleared cache)."""

    def validate_object(self, obj: T) -> bool:
        """Whether an object that sat idle longer than ``validation_interval`` is still usable."""
        return True

    def destroy_object(self, obj: T) -> None:
        """Releases what an object holds (closes a connection) when the pool drops it."""

    # ---- the pool ------------------------------------------------------------------

    @property
    def pool(self) -> MemoryPool:
        """The inner ``MemoryPool``."""
        return self._pool

    def acquire(self, label: Optional[str] = None) -> T:
        """Takes an object, waiting up to ``acquire_timeout`` when all ``max_size`` are in use."""
        obj: T = self._pool.acquire(label)
        return obj

    def release(self, obj: T) -> None:
        """Returns an object to the pool."""
        self._pool.release(obj)

    def use(self, label: Optional[str] = None) -> ContextManager[T]:
        """``with pool.use() as obj:`` acquires, and releases on exit (also on an exception)."""
        cm: ContextManager[T] = self._pool.use(label)
        return cm

    def get_statistics(self) -> Dict[str, Any]:
        """The pool's statistics (``active``, ``idle``, ``hit_rate``, ``total_created``, ...)."""
        return self._pool.get_statistics()

    def close(self) -> None:
        """No new acquires; idle objects destroyed now, in-use ones when released."""
        self._pool.close()

    def maintain(self) -> None:
        """Evicts stale idle objects, reports leaks and refills to ``min_size``."""
        self._pool.maintain()

    def trim(self, keep: int) -> int:
        """Destroys idle objects down to ``keep``; returns how many went."""
        return self._pool.trim(keep)

    def cleanup(self, level: str = "normal") -> None:
        """``"normal"``: trim idle objects to ``min_size``; ``"emergency"``: destroy all idle ones."""
        self._pool.cleanup(level)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._pool.closed

    def __enter__(self) -> "TypedMemoryPool[T]":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._pool.close()

    def __repr__(self) -> str:
        inner = repr(self._pool) if hasattr(self, "_pool") else "<not initialised>"
        return f"<{type(self).__qualname__} {inner}>"
