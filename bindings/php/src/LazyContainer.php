<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;
use Memwarden\Exception\CallbackException;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\NotFoundException;

/**
 * A lazy service container over memwarden's native container: services are created on
 * first use, with dependency injection, cycle detection and disposal.
 *
 * ```php
 * $container = new LazyContainer();
 * $container->lazy('database', function () { return new DatabaseConnection($config); });
 * $container->lazy('userService', function ($container) {
 *     return new UserService($container->get('database'));
 * });
 * $userService = $container->get('userService'); // the database connection is created here
 * ```
 *
 * Config keys: auto_wire (true; a class name given as the factory is constructed by
 * reflection), circular_detection (true; a cycle fails with its path, e.g. "circular
 * dependency: a -> b -> a"; with it off a depth guard still stops runaway recursion),
 * cache_instances (true; `lazy` services are kept after their first get — off, every get
 * creates a new one), debug_mode (false; per-service figures in getStatistics()),
 * release_lazy_on_cleanup (false; when the container is registered with a MemoryManager,
 * a cleanup run drops the cached `lazy` instances, which are created again on the next get).
 *
 * Lifetimes: lazy (created on first get, cached when cache_instances), singleton (created on
 * first get, always cached), factory (transient: a new instance on every get), scoped (one per
 * ContainerScope). Options of every registration: 'dispose' => callable($instance), run when
 * a kept instance is torn down (dispose(), a scope's dispose(), a cleanup run), in reverse
 * creation order; 'override' => true to replace a service already registered.
 *
 * Factories are called with the container when they declare a parameter, else with nothing;
 * they may call get() for their dependencies. Factories run synchronously inside get(); an
 * exception a factory throws is rethrown by get() and nothing is cached. A factory must
 * not return null.
 */
class LazyContainer
{
    private const LAZY = 0;
    private const SINGLETON = 1;
    private const FACTORY = 2;
    private const SCOPED = 3;

    private const OPTIONS = ['dispose', 'override'];

    private \FFI $ffi;
    private CData $handle;
    private CallbackGuard $guard;
    private ContainerInstances $instances;
    private bool $autoWire;
    private bool $cacheInstances;
    /** @var array<string,true> names registered (an upper bound for getByTag's buffer) */
    private array $names = [];
    /** @var list<\Closure> every closure handed to C, kept as long as the container */
    private array $keep = [];

    /** @param array<string,mixed> $config */
    public function __construct(array $config = [])
    {
        $this->ffi = Native::ffi();
        $this->guard = new CallbackGuard();
        $this->instances = new ContainerInstances();
        $json = Native::configJson('LazyContainer', $config);
        $out = $this->ffi->new('mw_container*');
        Native::check($this->ffi->mw_container_new($json, \FFI::addr($out)));
        $this->handle = $out;
        $this->autoWire = ($config['auto_wire'] ?? true) !== false;
        $this->cacheInstances = ($config['cache_instances'] ?? true) !== false;
    }

    /** Disposes the container (kept instances are torn down) and frees it. */
    public function __destruct()
    {
        if (isset($this->handle)) {
            $handle = $this->handle;
            unset($this->handle);
            try {
                $this->guard->invoke(function () use ($handle): int {
                    $this->ffi->mw_container_free($handle);
                    return 0;
                });
            } catch (\Throwable) {
                // A dispose callback failed; a destructor must not throw. Call dispose() first
                // to see such exceptions.
            }
        }
    }

    /** @param array{dispose?:callable,override?:bool} $options */
    public function lazy(string $name, callable|string $factory, array $options = []): void
    {
        $this->register('lazy', self::LAZY, $name, $factory, $options);
    }

    /** @param array{dispose?:callable,override?:bool} $options */
    public function singleton(string $name, callable|string $factory, array $options = []): void
    {
        $this->register('singleton', self::SINGLETON, $name, $factory, $options);
    }

    /** A transient service: a new instance on every get(); the caller owns it. */
    public function factory(string $name, callable|string $factory, array $options = []): void
    {
        $this->register('factory', self::FACTORY, $name, $factory, $options);
    }

    /** One instance per ContainerScope (createScope()); get() outside a scope fails. */
    public function scoped(string $name, callable|string $factory, array $options = []): void
    {
        $this->register('scoped', self::SCOPED, $name, $factory, $options);
    }

    /**
     * The service $name (or the service an alias names), created if needed.
     * NotFoundException (with a did-you-mean) for an unknown name, CycleException with the
     * path for a circular dependency, the factory's own exception when it throws,
     * ClosedException after dispose().
     */
    public function get(string $name): mixed
    {
        return $this->resolve(fn (CData $out): int => $this->ffi->mw_container_get($this->handle, $name, \FFI::addr($out)));
    }

    /** Whether $name (or an alias of it) is registered. */
    public function has(string $name): bool
    {
        $out = $this->ffi->new('bool');
        Native::check($this->ffi->mw_container_has($this->handle, $name, \FFI::addr($out)));
        return (bool) $out->cdata;
    }

    /** get($alias) resolves $name. An alias cycle is a CycleException with its path. */
    public function alias(string $alias, string $name): void
    {
        Native::check($this->ffi->mw_container_alias($this->handle, $alias, $name));
    }

    /** @param list<string> $tags */
    public function tag(string $name, array $tags): void
    {
        $tags = array_values($tags);
        foreach ($tags as $i => $tag) {
            if (!is_string($tag)) {
                throw new InvalidArgumentException(
                    "LazyContainer::tag('{$name}'): tag #{$i} must be a string, got " . get_debug_type($tag),
                    2
                );
            }
        }
        $n = count($tags);
        $array = $this->ffi->new('char*[' . max(1, $n) . ']');
        $buffers = []; // kept until the call returns
        foreach ($tags as $i => $tag) {
            $len = strlen($tag);
            $buffer = $this->ffi->new('char[' . ($len + 1) . ']'); // zeroed: NUL-terminated
            if ($len > 0) {
                \FFI::memcpy($buffer, $tag, $len);
            }
            $buffers[] = $buffer;
            $array[$i] = \FFI::cast('char*', \FFI::addr($buffer));
        }
        Native::check($this->ffi->mw_container_tag($this->handle, $name, $array, $n));
    }

    /**
     * Every service tagged $tag (created if needed), in registration order.
     *
     * @return list<mixed>
     */
    public function getByTag(string $tag): array
    {
        $capacity = max(1, count($this->names));
        while (true) {
            $buffer = $this->ffi->new("void*[{$capacity}]");
            $count = $this->ffi->new('size_t');
            $this->guard->invoke(fn () => $this->ffi->mw_container_get_by_tag(
                $this->handle,
                $tag,
                $buffer,
                $capacity,
                \FFI::addr($count)
            ));
            $total = (int) $count->cdata;
            $got = [];
            for ($i = 0; $i < min($total, $capacity); $i++) {
                $got[] = $this->instances->take(PoolObjects::idFromPointer($buffer[$i]));
            }
            if ($total <= $capacity) {
                return $got;
            }
            $capacity = $total; // more tagged services than names seen: ask again
        }
    }

    /** A new scope for `scoped` services (one request's instances). */
    public function createScope(): ContainerScope
    {
        $out = $this->ffi->new('mw_scope*');
        Native::check($this->ffi->mw_container_create_scope($this->handle, \FFI::addr($out)));
        return new ContainerScope($this, $out);
    }

    /**
     * Tears down scopes, then kept instances in reverse creation order (their 'dispose'
     * callbacks). Later gets throw ClosedException. Idempotent.
     */
    public function dispose(): void
    {
        $this->guard->invoke(fn () => $this->ffi->mw_container_dispose($this->handle));
    }

    /**
     * created, cached, avg_creation_time (ms), memory_saved (MB), registered, never_created
     * (and per-service figures with debug_mode).
     *
     * @return array<string,mixed>
     */
    public function getStatistics(): array
    {
        $out = $this->ffi->new('char*');
        Native::check($this->ffi->mw_container_stats_json($this->handle, \FFI::addr($out)));
        return Native::decode(Native::takeString($out));
    }

    // ---- internals ------------------------------------------------------------

    /**
     * The native handle, for MemoryManager::registerCleanupHook().
     *
     * @internal
     */
    public function nativeHandle(): CData
    {
        return $this->handle;
    }

    /**
     * Takes the exception a dispose callback threw while the container was driven from
     * outside (a manager's cleanup run), if any.
     *
     * @internal
     */
    public function takeCallbackError(): ?\Throwable
    {
        $error = $this->guard->error;
        $this->guard->error = null;
        return $error;
    }

    /**
     * Runs a C call that writes one instance to its `void**` argument (through the guard)
     * and returns the PHP instance.
     *
     * @param \Closure(CData):int $call gets the `void*` out-slot
     * @internal
     */
    public function resolve(\Closure $call): mixed
    {
        $out = $this->ffi->new('void*');
        $this->guard->invoke(fn () => $call($out));
        return $this->instances->take(PoolObjects::idFromPointer($out));
    }

    /**
     * Runs a C call returning mw_status through the guard (rethrowing a callback's exception).
     *
     * @internal
     */
    public function guarded(\Closure $call): void
    {
        $this->guard->invoke($call);
    }

    /** @param array<string,mixed> $options */
    private function register(string $method, int $lifetime, string $name, callable|string $factory, array $options): void
    {
        $where = "LazyContainer::{$method}('{$name}')";
        foreach (array_keys($options) as $key) {
            if (!in_array($key, self::OPTIONS, true)) {
                throw new InvalidArgumentException(
                    "{$where}: unknown option '{$key}' (known: " . implode(', ', self::OPTIONS) . ')',
                    2
                );
            }
        }
        $dispose = $options['dispose'] ?? null;
        if ($dispose !== null && !is_callable($dispose)) {
            throw new InvalidArgumentException("{$where}: option 'dispose' must be callable, got " . get_debug_type($dispose), 2);
        }
        $override = $options['override'] ?? false;
        if (!is_bool($override)) {
            throw new InvalidArgumentException("{$where}: option 'override' must be a bool, got " . get_debug_type($override), 2);
        }
        $build = $this->builder($where, $name, $factory);
        $callerOwned = $lifetime === self::FACTORY || ($lifetime === self::LAZY && !$this->cacheInstances);

        // The callbacks capture the instance table, the guard and a weak reference to the
        // container, never the container itself.
        $instances = $this->instances;
        $self = \WeakReference::create($this);
        $create = $this->guard->wrap(static function ($userData, $handle, $out) use ($instances, $build, $self, $name, $callerOwned): void {
            $value = $build($self->get());
            if ($value === null) {
                throw new CallbackException(
                    "LazyContainer: the factory of service '{$name}' returned null; a factory must return the service instance",
                    10
                );
            }
            $out[0] = PoolObjects::pointerFromId($instances->add($value, $callerOwned));
        });
        $destroy = $this->guard->wrap(static function ($userData, $ptr) use ($instances, $dispose): void {
            [$known, $value] = $instances->remove(PoolObjects::idFromPointer($ptr));
            if ($known && $dispose !== null) {
                $dispose($value);
            }
        });
        Native::check($this->ffi->mw_container_register(
            $this->handle,
            $name,
            $lifetime,
            $create,
            $destroy,
            null,
            null,
            $override
        ));
        $this->keep[] = $create;
        $this->keep[] = $destroy;
        $this->names[$name] = true;
    }

    /**
     * The PHP function that builds one instance, given the container.
     *
     * @return \Closure(?LazyContainer):mixed
     */
    private function builder(string $where, string $name, callable|string $factory): \Closure
    {
        if (is_string($factory) && class_exists($factory)) {
            if (!$this->autoWire) {
                throw new InvalidArgumentException(
                    "{$where}: '{$factory}' is a class name but auto_wire is off; pass a callable factory",
                    2
                );
            }
            $class = new \ReflectionClass($factory);
            if (!$class->isInstantiable()) {
                throw new InvalidArgumentException("{$where}: class '{$factory}' cannot be instantiated", 2);
            }
            return static fn (?LazyContainer $container): object => self::autoWire($class, $name, $container);
        }
        if (!is_callable($factory)) {
            throw new InvalidArgumentException(
                "{$where}: the factory must be a callable or an existing class name, got "
                . (is_string($factory) ? "'{$factory}'" : get_debug_type($factory)),
                2
            );
        }
        $fn = \Closure::fromCallable($factory);
        $wantsContainer = (new \ReflectionFunction($fn))->getNumberOfParameters() > 0;
        return $wantsContainer
            ? static fn (?LazyContainer $container): mixed => $fn($container)
            : static fn (?LazyContainer $container): mixed => $fn();
    }

    /**
     * Constructs $class, resolving each constructor parameter by its class type (a service
     * registered under that class name), else by its name, else its default value.
     */
    private static function autoWire(\ReflectionClass $class, string $name, ?LazyContainer $container): object
    {
        $constructor = $class->getConstructor();
        if ($constructor === null) {
            return $class->newInstance();
        }
        $args = [];
        foreach ($constructor->getParameters() as $param) {
            $type = $param->getType();
            $typeName = $type instanceof \ReflectionNamedType && !$type->isBuiltin() ? $type->getName() : null;
            if ($container !== null && $typeName !== null && $container->has($typeName)) {
                $args[] = $container->get($typeName);
                continue;
            }
            if ($container !== null && $container->has($param->getName())) {
                $args[] = $container->get($param->getName());
                continue;
            }
            if ($param->isDefaultValueAvailable()) {
                $args[] = $param->getDefaultValue();
                continue;
            }
            if ($param->isVariadic()) {
                break;
            }
            $by = $typeName !== null ? "no service '{$typeName}' (its type) nor " : '';
            throw new NotFoundException(
                "LazyContainer: cannot auto-wire service '{$name}' ({$class->getName()}): constructor parameter "
                . "\${$param->getName()} has {$by}a service named '{$param->getName()}' and no default value",
                7
            );
        }
        return $class->newInstanceArgs($args);
    }
}
