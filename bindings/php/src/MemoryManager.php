<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;

/**
 * Memory monitoring with thresholds, states (with hysteresis), state-change callbacks,
 * cleanup hooks and "garbage collection" runs, over memwarden's native core.
 *
 * Config keys (the seed's): warning_threshold (0.75), critical_threshold (0.9),
 * auto_gc_threshold (0.8), enable_detailed_tracking, gc_probability (0.1),
 * emergency_threshold (0.95); also memory_limit ('512M', bytes or -1), source
 * ('host' — PHP's own numbers, the default — or 'process' — resident memory),
 * hysteresis (0.02), random_seed.
 *
 * Binding-only keys, not sent to the core:
 *  - gc_callback (callable): called after every cleanup run with the report array;
 *  - host_gc (bool, default true): registers gc_collect_cycles() as cleanup hook 'php-gc'
 *    with priority -1000;
 *  - php_readings (bool, default true): with source 'host', the core asks PHP for
 *    memory_get_usage(), memory_get_peak_usage() and ini memory_limit whenever it takes a
 *    reading (checks, usage, before and after each cleanup run, so freed_bytes sees what
 *    the hooks released). Set it to false to drive the readings yourself with
 *    updateHostReading() (tests, or a host that measures differently).
 */
final class MemoryManager
{
    public const STATE_NORMAL = 'normal';
    public const STATE_WARNING = 'warning';
    public const STATE_CRITICAL = 'critical';
    public const STATE_EMERGENCY = 'emergency';

    private const BINDING_KEYS = ['gc_callback', 'host_gc', 'php_readings'];

    private \FFI $ffi;
    private CData $handle;
    private bool $hostSource;
    private bool $phpReadings;
    private CallbackGuard $guard;
    /** @var list<\Closure> every closure handed to C, kept alive as long as the manager */
    private array $keep = [];
    /** @var array<string,MemoryPool|LazyContainer> pools and containers registered as cleanup hooks, by hook name */
    private array $pools = [];

    /** @param array<string,mixed> $config */
    public function __construct(array $config = [])
    {
        $gcCallback = $config['gc_callback'] ?? null;
        $hostGc = $config['host_gc'] ?? true;
        $phpReadings = $config['php_readings'] ?? true;
        if ($gcCallback !== null && !is_callable($gcCallback)) {
            throw new InvalidConfigException(
                "MemoryManager config: 'gc_callback' must be callable, got " . get_debug_type($gcCallback),
                3
            );
        }
        foreach (['host_gc' => $hostGc, 'php_readings' => $phpReadings] as $key => $value) {
            if (!is_bool($value)) {
                throw new InvalidConfigException(
                    "MemoryManager config: '{$key}' must be a boolean, got " . get_debug_type($value)
                    . ' ' . var_export($value, true),
                    3
                );
            }
        }
        foreach (self::BINDING_KEYS as $key) {
            unset($config[$key]);
        }
        if (!array_key_exists('source', $config)) {
            $config['source'] = 'host';
        } elseif ($config['source'] === 'v8-heap') {
            throw new InvalidConfigException(
                "MemoryManager config: invalid value for 'source': 'v8-heap' is Node's; "
                . "PHP offers 'host' (PHP's own numbers) or 'process' (resident memory)",
                3
            );
        }

        $this->ffi = Native::ffi();
        $this->guard = new CallbackGuard();
        $out = $this->ffi->new('mw_manager*');
        Native::check($this->ffi->mw_manager_new(Native::configJson('MemoryManager', $config), \FFI::addr($out)));
        $this->handle = $out;
        $this->hostSource = $config['source'] === 'host';
        $this->phpReadings = $phpReadings;

        try {
            if ($hostGc) {
                $this->registerCleanupHook('php-gc', 'gc_collect_cycles', -1000);
            }
            if ($this->hostSource && $this->phpReadings) {
                // Static and capturing nothing, so it does not keep the manager alive.
                $reader = $this->guard->wrap(static function ($userData, $current, $peak, $limit): void {
                    $now = memory_get_usage();
                    $current[0] = $now;
                    $peak[0] = max($now, memory_get_peak_usage());
                    $limit[0] = Native::phpMemoryLimit();
                });
                Native::check($this->ffi->mw_manager_set_host_reader($this->handle, $reader, null, null));
                $this->keep[] = $reader;
            }
            if ($gcCallback !== null) {
                $this->onAfterGC($gcCallback);
            }
        } catch (\Throwable $e) {
            // PHP runs no destructor when a constructor throws: free the handle here.
            $this->ffi->mw_manager_free($this->handle);
            unset($this->handle);
            throw $e;
        }
    }

    /**
     * The native handle, for the iterators' and ChunkedDatabaseProcessor's 'manager' key.
     *
     * @internal
     */
    public function nativeHandle(): CData
    {
        return $this->handle;
    }

    public function __destruct()
    {
        if (isset($this->handle)) {
            $this->ffi->mw_manager_free($this->handle);
            unset($this->handle);
        }
    }

    // ---- readings -------------------------------------------------------------

    /**
     * A fresh reading: current_mb, peak_mb, limit_mb, usage_percent, current_bytes,
     * peak_bytes, limit_bytes, limit_origin, source. Does not change the state.
     *
     * @return array<string,mixed>
     */
    public function getMemoryUsage(): array
    {
        $out = $this->ffi->new('char*');
        Native::check($this->ffi->mw_manager_usage_json($this->handle, \FFI::addr($out)));
        return Native::decode(Native::takeString($out));
    }

    /**
     * Samples memory, updates the state (with hysteresis), fires onStateChange callbacks
     * once per change, runs automatic cleanup, and returns the state (STATE_*).
     */
    public function getMemoryState(): string
    {
        $state = $this->ffi->new('mw_state');
        try {
            $this->guard->invoke(fn () => $this->ffi->mw_manager_check($this->handle, \FFI::addr($state)));
        } finally {
            // An automatic cleanup run may have trimmed a registered pool.
            $poolError = $this->takePoolError();
        }
        if ($poolError !== null) {
            throw $poolError;
        }
        return Native::stateName($state->cdata);
    }

    /** The same as getMemoryState(). */
    public function check(): string
    {
        return $this->getMemoryState();
    }

    /** The state the last check arrived at, without taking a reading. */
    public function getState(): string
    {
        $state = $this->ffi->new('mw_state');
        Native::check($this->ffi->mw_manager_state($this->handle, \FFI::addr($state)));
        return Native::stateName($state->cdata);
    }

    /**
     * Statistics: usage, state, limit and origin, thresholds, PSI, counters, last cleanup,
     * history (with enable_detailed_tracking).
     *
     * @return array<string,mixed>
     */
    public function getDetailedStats(): array
    {
        $out = $this->ffi->new('char*');
        Native::check($this->ffi->mw_manager_stats_json($this->handle, \FFI::addr($out)));
        return Native::decode(Native::takeString($out));
    }

    // ---- limit ----------------------------------------------------------------

    /**
     * Sets the manager's limit ('512M', '1G', '128K', bytes as int or string); '-1' or -1
     * clears it so the next origin applies (PHP's memory_limit, cgroup, physical memory).
     * PHP's own memory_limit ini setting is left alone. A bad size throws
     * InvalidArgumentException naming it and leaves the limit unchanged.
     */
    public function setMemoryLimit(string|int $limit): void
    {
        if (is_int($limit)) {
            Native::check($this->ffi->mw_manager_set_limit_bytes($this->handle, $limit));
        } else {
            Native::check($this->ffi->mw_manager_set_limit($this->handle, $limit));
        }
    }

    /** @return array{bytes:int, origin:string} */
    public function getMemoryLimit(): array
    {
        $bytes = $this->ffi->new('uint64_t');
        $origin = $this->ffi->new('mw_limit_origin');
        Native::check($this->ffi->mw_manager_limit($this->handle, \FFI::addr($bytes), \FFI::addr($origin)));
        $names = [0 => 'explicit', 1 => 'host', 2 => 'cgroup_v2', 3 => 'cgroup_v1', 4 => 'physical'];
        return ['bytes' => $bytes->cdata, 'origin' => $names[$origin->cdata] ?? 'unknown'];
    }

    /** Resets the peak to the current reading (also PHP's own peak, for the host source). */
    public function resetPeak(): void
    {
        if ($this->hostSource && $this->phpReadings && function_exists('memory_reset_peak_usage')) {
            memory_reset_peak_usage();
        }
        Native::check($this->ffi->mw_manager_reset_peak($this->handle));
    }

    /**
     * Pushes a reading for source 'host': current and peak bytes, and the host's limit
     * (null or -1: none). With php_readings on (the default), the next reading replaces
     * it with PHP's own numbers.
     */
    public function updateHostReading(int $current, ?int $peak = null, ?int $limit = null): void
    {
        if ($current < 0 || ($peak !== null && $peak < 0)) {
            throw new InvalidArgumentException(
                "updateHostReading(): byte counts must not be negative, got current={$current}"
                . ($peak !== null ? ", peak={$peak}" : ''),
                2
            );
        }
        Native::check($this->ffi->mw_manager_update_host_reading(
            $this->handle,
            $current,
            $peak ?? $current,
            $limit ?? -1
        ));
    }

    // ---- cleanup --------------------------------------------------------------

    /**
     * Runs onBeforeGC hooks, cleanup hooks by priority (gc_collect_cycles as 'php-gc'),
     * malloc_trim, then onAfterGC callbacks. Returns the report (freed_bytes, duration_ms,
     * hooks, ...). A callback's exception is rethrown after the run.
     *
     * @return array<string,mixed>
     */
    public function forceGarbageCollection(): array
    {
        return $this->cleanupRun('mw_manager_force_gc');
    }

    /**
     * As forceGarbageCollection(), with the hooks told it is an emergency.
     *
     * @return array<string,mixed>
     */
    public function emergencyCleanup(): array
    {
        return $this->cleanupRun('mw_manager_emergency_cleanup');
    }

    /** @return array<string,mixed> */
    private function cleanupRun(string $function): array
    {
        $out = $this->ffi->new('char*');
        $report = null;
        try {
            $this->guard->invoke(fn () => $this->ffi->$function($this->handle, \FFI::addr($out)));
        } finally {
            // The report is written also when a hook failed; always free it.
            $report = Native::takeString($out);
            $poolError = $this->takePoolError();
        }
        if ($poolError !== null) {
            throw $poolError;
        }
        return Native::decode($report);
    }

    /**
     * Registers a cleanup hook run by every cleanup run; higher priority first, a hook with
     * the same name is replaced. $fn takes no argument, or one: a `bool` parameter gets
     * whether this is an emergency, any other gets the level 'normal' or 'emergency'.
     *
     * A MemoryPool registers itself: a cleanup run trims its idle objects to min_size, an
     * emergency cleanup destroys all idle objects. The manager keeps the pool until the hook
     * is removed or replaced. An exception thrown by the pool's destroy hook is rethrown
     * after the run.
     *
     * A LazyContainer registers itself too: with its release_lazy_on_cleanup config, a
     * cleanup run drops its cached `lazy` instances (through their 'dispose' callbacks); they
     * are created again on the next get(). The manager keeps the container like a pool.
     */
    public function registerCleanupHook(string $name, callable|MemoryPool|LazyContainer $fn, int $priority = 0): void
    {
        if ($fn instanceof LazyContainer) {
            Native::check($this->ffi->mw_manager_add_container($this->handle, $name, $priority, $fn->nativeHandle()));
            $this->pools[$name] = $fn;
            return;
        }
        if ($fn instanceof MemoryPool) {
            Native::check($this->ffi->mw_manager_add_pool($this->handle, $name, $priority, $fn->nativeHandle()));
            $this->pools[$name] = $fn;
            return;
        }
        [$arity, $wantsBool] = self::describe($fn);
        $closure = $this->guard->wrap(static function ($userData, $emergency) use ($fn, $arity, $wantsBool): void {
            if ($arity === 0) {
                $fn();
            } elseif ($wantsBool) {
                $fn((bool) $emergency);
            } else {
                $fn($emergency ? 'emergency' : 'normal');
            }
        });
        Native::check($this->ffi->mw_manager_add_cleanup_hook($this->handle, $name, $priority, $closure, null, null));
        $this->keep[] = $closure;
        unset($this->pools[$name]);
    }

    /** Removes a cleanup hook by name; returns whether one was removed. */
    public function unregisterCleanupHook(string $name): bool
    {
        $removed = $this->ffi->new('bool');
        Native::check($this->ffi->mw_manager_remove_cleanup_hook($this->handle, $name, \FFI::addr($removed)));
        unset($this->pools[$name]);
        return (bool) $removed->cdata;
    }

    // ---- callbacks ------------------------------------------------------------

    /** $callback($oldState, $newState) with STATE_* strings, once per change. */
    public function onStateChange(callable $callback): void
    {
        $closure = $this->guard->wrap(static function ($userData, $old, $new) use ($callback): void {
            $callback(Native::stateName((int) $old), Native::stateName((int) $new));
        });
        Native::check($this->ffi->mw_manager_on_state_change($this->handle, $closure, null, null));
        $this->keep[] = $closure;
    }

    /** $callback() runs first in every cleanup run. */
    public function onBeforeGC(callable $callback): void
    {
        $closure = $this->guard->wrap(static function ($userData) use ($callback): void {
            $callback();
        });
        Native::check($this->ffi->mw_manager_on_before_gc($this->handle, $closure, null, null));
        $this->keep[] = $closure;
    }

    /** $callback(array $report) runs last in every cleanup run. */
    public function onAfterGC(callable $callback): void
    {
        $closure = $this->guard->wrap(static function ($userData, $reportJson) use ($callback): void {
            $json = is_string($reportJson) ? $reportJson : ($reportJson === null ? '' : \FFI::string($reportJson));
            $callback(Native::decode($json));
        });
        Native::check($this->ffi->mw_manager_on_after_gc($this->handle, $closure, null, null));
        $this->keep[] = $closure;
    }

    // ---- internals ------------------------------------------------------------

    /** The first exception a registered pool's destroy hook (or container's dispose callback) threw during a run (it reports to its own guard). */
    private function takePoolError(): ?\Throwable
    {
        $first = null;
        foreach ($this->pools as $pool) {
            $error = $pool->takeCallbackError();
            $first ??= $error;
        }
        return $first;
    }

    /** @return array{0:int,1:bool} number of parameters to pass (0 or 1), whether the first is typed bool */
    private static function describe(callable $fn): array
    {
        $ref = new \ReflectionFunction(\Closure::fromCallable($fn));
        $params = $ref->getParameters();
        if ($params === []) {
            return [0, false];
        }
        $type = $params[0]->getType();
        $wantsBool = $type instanceof \ReflectionNamedType && $type->getName() === 'bool';
        return [1, $wantsBool];
    }
}
