<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;
use Memwarden\Exception\ExhaustedException;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;

/**
 * An object pool: reuse expensive objects (connections, buffers, parsers) instead of
 * building new ones, over memwarden's native pool.
 *
 * ```php
 * $pool = new MemoryPool([
 *     'factory' => fn () => new DatabaseConnection($config),
 *     'max_size' => 10,
 *     'min_size' => 2,
 *     'max_idle_time' => 300,
 * ]);
 * $connection = $pool->acquire();
 * try { $connection->query('SELECT 1'); } finally { $pool->release($connection); }
 * $rows = $pool->use(fn ($connection) => $connection->query('SELECT 1'));
 * ```
 *
 * Config keys (times in seconds, fractions allowed): max_size (10), min_size (2, created at
 * once), max_idle_time (300; idle objects beyond min_size unused this long are destroyed),
 * validation_interval (60; an object idle longer is validated before it is handed out),
 * auto_cleanup (true; eviction, leak detection and refill to min_size about once a second,
 * run on your next acquire since PHP runs no code on other threads), statistics (true;
 * counters), max_lifetime (0 = none), acquire_timeout (30; has no effect in PHP, see
 * acquire()), leak_detection_threshold (0 = off; an object held longer is reported, with
 * the file:line where it was acquired).
 *
 * Binding-only keys: factory (required; a callable taking no argument, or one: the pool),
 * reset(object), validate(object): bool, destroy(object) (called when the pool drops an
 * object), on_leak(array report: id, held_ms, acquired_at).
 *
 * Callbacks run synchronously, on the calling thread, inside acquire(), release(),
 * maintain(), trim(), close() (and a MemoryManager's cleanup run when the pool is registered
 * with it). An exception thrown by a callback is caught at the FFI boundary and rethrown to
 * the caller when the pool call returns; the pool stays consistent (a failing reset or
 * validate destroys that object).
 */
class MemoryPool
{
    private const HOOK_KEYS = ['factory', 'reset', 'validate', 'destroy', 'on_leak'];

    /** The config as given to the constructor (TypedMemoryPool subclasses read it). */
    protected array $config;

    private \FFI $ffi;
    private CData $handle;
    private CallbackGuard $guard;
    private PoolObjects $objects;
    /** Whether acquires pass their call site as the leak label. */
    private bool $labels;
    private int $maxSize;
    /** @var list<\Closure> every closure handed to C, kept as long as the pool */
    private array $keep = [];

    /** @param array<string,mixed> $config */
    public function __construct(array $config)
    {
        if (!isset($this->config)) {
            $this->config = $config;
        }
        $hooks = [];
        foreach (self::HOOK_KEYS as $key) {
            if (array_key_exists($key, $config)) {
                $hooks[$key] = $config[$key];
                unset($config[$key]);
            }
        }
        $component = $this instanceof TypedMemoryPool ? 'TypedMemoryPool' : 'MemoryPool';
        if (!isset($hooks['factory'])) {
            $hint = '';
            foreach (array_keys($config) as $key) {
                if (is_string($key) && levenshtein($key, 'factory') <= 2) {
                    $hint = " (found '{$key}'; did you mean 'factory'?)";
                }
            }
            throw new InvalidConfigException(
                "{$component} config: missing 'factory': a callable that creates a pooled object{$hint}",
                3
            );
        }
        foreach ($hooks as $key => $hook) {
            if (!is_callable($hook)) {
                throw new InvalidConfigException(
                    "{$component} config: '{$key}' must be callable, got " . get_debug_type($hook),
                    3
                );
            }
        }
        $leak = $config['leak_detection_threshold'] ?? 0;
        $this->labels = (is_int($leak) || is_float($leak)) && $leak > 0;

        $this->ffi = Native::ffi();
        $this->guard = new CallbackGuard();
        $this->objects = new PoolObjects();
        $json = Native::configJson('MemoryPool', $config);

        $callbacks = $this->ffi->new('mw_pool_callbacks');
        $callbacks->user_data = null;
        $callbacks->free_user_data = null;
        $callbacks->background_hooks = false; // PHP never runs on another thread
        foreach ($this->closures($hooks) as $field => $closure) {
            $callbacks->{$field} = $closure;
            $this->keep[] = $closure;
        }

        $out = $this->ffi->new('mw_pool*');
        $this->guard->invoke(fn () => $this->ffi->mw_pool_new($json, \FFI::addr($callbacks), \FFI::addr($out)));
        $this->handle = $out;
        try {
            $this->maxSize = (int) ($this->getStatistics()['max_size'] ?? 0);
        } catch (\Throwable $e) {
            // PHP runs no destructor when a constructor throws: free the handle here.
            $this->__destruct();
            throw $e;
        }
    }

    /** Frees the native pool: idle objects are destroyed; objects still held are forgotten. */
    public function __destruct()
    {
        if (isset($this->handle)) {
            $handle = $this->handle;
            unset($this->handle);
            try {
                $this->guard->invoke(function () use ($handle): int {
                    $this->ffi->mw_pool_free($handle);
                    return 0;
                });
            } catch (\Throwable) {
                // A destroy hook failed while the pool was freed; a destructor must not throw.
                // Call close() first to see such exceptions.
            }
        }
    }

    /**
     * Takes an object: an idle one (validated first when idle longer than
     * validation_interval) or, below max_size, a new one from the factory.
     *
     * Never waits: PHP runs one thread, so nobody could release an object while acquire()
     * waited. When all max_size objects are in use it throws ExhaustedException naming
     * max_size (acquire_timeout has no effect). ClosedException after close(); the
     * factory's or validate hook's own exception when they fail.
     */
    public function acquire(): object
    {
        $label = $this->labels ? self::callSite() : null;
        $out = $this->ffi->new('void*');
        $got = $this->ffi->new('bool');
        try {
            $this->guard->invoke(fn () => $this->ffi->mw_pool_try_acquire(
                $this->handle,
                $label,
                \FFI::addr($out),
                \FFI::addr($got)
            ));
        } catch (\Throwable $e) {
            if (!$got->cdata) {
                throw $e;
            }
            // The object was acquired; the exception came from a hook run by the automatic
            // maintenance that precedes an acquire (as the core does, it does not fail the
            // acquire; maintain() reports such failures).
        }
        if (!$got->cdata) {
            throw new ExhaustedException(
                "MemoryPool exhausted: all {$this->maxSize} objects (max_size) are in use; "
                . 'acquire() does not wait in PHP: release an object first or raise max_size',
                5
            );
        }
        return $this->objects->get(PoolObjects::idFromPointer($out));
    }

    /**
     * Returns an object to the pool; its reset hook runs. An object this pool did not hand
     * out, or one already released, throws InvalidArgumentException and changes nothing. A
     * throwing reset destroys the object and its exception is rethrown. After close(), the
     * object is destroyed.
     */
    public function release(object $object): void
    {
        $id = $this->objects->idOf($object);
        if ($id === null) {
            throw new InvalidArgumentException(
                'MemoryPool: release of an object that is not in use from this pool (released twice, '
                . 'acquired elsewhere, or already destroyed): ' . get_class($object),
                2
            );
        }
        $this->guard->invoke(fn () => $this->ffi->mw_pool_release($this->handle, PoolObjects::pointerFromId($id)));
    }

    /**
     * Acquires an object, calls $fn($object), releases the object (also when $fn throws) and
     * returns what $fn returned. When $fn throws, that exception is the one you get (a
     * failure of the release that follows is not reported over it).
     *
     * @template T
     * @param callable(object):T $fn
     * @return T
     */
    public function use(callable $fn): mixed
    {
        $object = $this->acquire();
        try {
            $result = $fn($object);
        } catch (\Throwable $e) {
            try {
                $this->release($object);
            } catch (\Throwable) {
                // $fn's exception is the one that matters.
            }
            throw $e;
        }
        $this->release($object);
        return $result;
    }

    /**
     * active, idle, waiting, size, max_size, min_size, hit_rate (% of acquires served by an
     * existing object), total_created, total_destroyed, total_acquired, timeouts,
     * validation_failures, leaks, recent_leaks (list of id, held_ms, acquired_at), closed,
     * statistics. With 'statistics' => false the counters stay 0; the sizes are kept.
     *
     * @return array<string,mixed>
     */
    public function getStatistics(): array
    {
        $out = $this->ffi->new('char*');
        Native::check($this->ffi->mw_pool_stats_json($this->handle, \FFI::addr($out)));
        return Native::decode(Native::takeString($out));
    }

    /**
     * No new acquires (ClosedException); idle objects are destroyed now, objects in use when
     * they are released. Idempotent.
     */
    public function close(): void
    {
        $this->guard->invoke(fn () => $this->ffi->mw_pool_close($this->handle));
    }

    public function isClosed(): bool
    {
        return (bool) ($this->getStatistics()['closed'] ?? false);
    }

    /**
     * Evicts idle objects past max_idle_time / max_lifetime, reports leaks to on_leak and
     * refills to min_size, now. With auto_cleanup this happens about once a second, on the
     * next acquire().
     */
    public function maintain(): void
    {
        $this->guard->invoke(fn () => $this->ffi->mw_pool_maintain($this->handle));
    }

    /** Destroys idle objects until at most $keep remain; returns how many were destroyed. */
    public function trim(int $keep): int
    {
        if ($keep < 0) {
            throw new InvalidArgumentException("MemoryPool::trim(): keep must be >= 0, got {$keep}", 2);
        }
        $destroyed = $this->ffi->new('size_t');
        $this->guard->invoke(fn () => $this->ffi->mw_pool_trim($this->handle, $keep, \FFI::addr($destroyed)));
        return (int) $destroyed->cdata;
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
     * Takes the exception a hook threw while the pool was driven from outside (a manager's
     * cleanup run trimming it), if any.
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
     * The C callbacks. They capture the object table, the user's callables and a weak
     * reference to the pool, never the pool itself.
     *
     * @param array<string,callable> $hooks
     * @return array<string,\Closure> field of mw_pool_callbacks => closure
     */
    private function closures(array $hooks): array
    {
        $objects = $this->objects;
        $guard = $this->guard;
        $self = \WeakReference::create($this);
        $factory = $hooks['factory'];
        $wantsPool = self::arity($factory) > 0;

        $closures = [];
        $closures['create'] = $guard->wrap(static function ($userData, $out) use ($objects, $factory, $wantsPool, $self): void {
            $object = $wantsPool ? $factory($self->get()) : $factory();
            if (!is_object($object)) {
                throw new InvalidArgumentException(
                    'MemoryPool: the factory must return an object, got ' . get_debug_type($object),
                    2
                );
            }
            $out[0] = PoolObjects::pointerFromId($objects->add($object));
        });
        if (isset($hooks['reset'])) {
            $reset = $hooks['reset'];
            $closures['reset'] = $guard->wrap(static function ($userData, $ptr) use ($objects, $reset): void {
                $reset($objects->get(PoolObjects::idFromPointer($ptr)));
            });
        }
        if (isset($hooks['validate'])) {
            $validate = $hooks['validate'];
            $closures['validate'] = $guard->wrap(static function ($userData, $ptr, $valid) use ($objects, $validate): void {
                $valid[0] = (bool) $validate($objects->get(PoolObjects::idFromPointer($ptr)));
            });
        }
        $destroy = $hooks['destroy'] ?? null;
        $closures['destroy'] = $guard->wrap(static function ($userData, $ptr) use ($objects, $destroy): void {
            $object = $objects->remove(PoolObjects::idFromPointer($ptr));
            if ($object !== null && $destroy !== null) {
                $destroy($object);
            }
        });
        if (isset($hooks['on_leak'])) {
            $onLeak = $hooks['on_leak'];
            $closures['on_leak'] = $guard->wrap(static function ($userData, $json) use ($onLeak): void {
                $text = is_string($json) ? $json : ($json === null ? '' : \FFI::string($json));
                $onLeak(Native::decode($text));
            });
        }
        return $closures;
    }

    /** Number of parameters $fn declares (variadics count as one). */
    private static function arity(callable $fn): int
    {
        return (new \ReflectionFunction(\Closure::fromCallable($fn)))->getNumberOfParameters();
    }

    /** "file:line" of the first caller outside the binding (the leak label). */
    private static function callSite(): ?string
    {
        $here = __DIR__ . DIRECTORY_SEPARATOR;
        foreach (debug_backtrace(DEBUG_BACKTRACE_IGNORE_ARGS) as $frame) {
            if (isset($frame['file']) && !str_starts_with($frame['file'], $here)) {
                return $frame['file'] . ':' . ($frame['line'] ?? 0);
            }
        }
        return null;
    }
}
