<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;
use Memwarden\Exception\ClosedException;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;

/**
 * Streamflow's ResourceTracker (the TypeScript guide's memory manager) over memwarden's
 * native core: resources tracked by type and size, statistics with Streamflow's names,
 * memoryWarning / memoryCritical events once per crossing (with hysteresis), cleanup of the
 * oldest resources, and a leak report per type.
 *
 * Config (Streamflow's keys; the snake_case aliases are accepted too): maxMemoryUsage (bytes,
 * 100 MiB), cleanupInterval (ms, 30000), enableAutoCleanup (false), thresholds {warning 0.7,
 * critical 0.9} (fractions of maxMemoryUsage), resourceTracking {enabled, detailed, metadata},
 * gcCallback (callable, after every cleanup() — binding-only, not sent to the core). A bad
 * key or value throws InvalidConfigException naming it.
 *
 * Events: PHP never runs on the library's thread, so the core queues them and this class
 * delivers them to the on() listeners on the PHP thread, after each call that can cause one
 * (trackResource, releaseResource, cleanup, getMemoryStats, leakReport, pollEvents). The
 * auto-cleanup timer (enableAutoCleanup with cleanupInterval > 0) runs in the library
 * without PHP: its 'cleanup' events arrive with the next such call; onBeforeGC hooks and
 * gcCallback run around cleanup() called from PHP.
 *
 * Collected without a release: PHP has no finalizer for arbitrary objects, so an object
 * resource is held by a WeakReference, and getMemoryStats(), leakReport(), cleanup(),
 * debug() and dispose() first mark the resources whose object is gone as collected (the
 * leak report's collected_unreleased). Strings, arrays and PHP resources cannot be weakly
 * referenced: they are tracked until released.
 *
 * Leak report at exit: with 'reportAtExit' => true (or 'report_at_exit'), or after
 * debug(['verbose' => true]), a shutdown function (register_shutdown_function) writes
 * "memwarden: ResourceTracker leak report at exit: {...}" with activeResources,
 * totalAllocated and leaks to stderr when the script ends, for every such tracker still alive
 * and not disposed, as the Python and Node bindings do (the library builds the line).
 */
final class ResourceTracker
{
    public const EVENTS = ['memoryWarning', 'memoryCritical', 'cleanup'];
    private const BINDING_KEYS = ['gcCallback', 'gc_callback', 'reportAtExit', 'report_at_exit'];

    /** @var array<int,\WeakReference> trackers that may report at exit, by object id */
    private static array $atExit = [];
    private static bool $shutdownRegistered = false;

    private \FFI $ffi;
    private CData $handle;
    private CData $id;
    private CData $out;
    /** @var array<int,\WeakReference|null> every tracked id: its object's weak reference, or null */
    private array $refs = [];
    /** @var array<string,list<callable>> */
    private array $listeners = [];
    /** @var list<callable> */
    private array $beforeGc = [];
    /** @var callable|null */
    private $gcCallback;
    private bool $trackingEnabled = true;
    private bool $verbose = false;
    private bool $reportAtExit = false;
    private ?array $finalReport = null;

    /** @param array<string,mixed> $config */
    public function __construct(array $config = [])
    {
        if (isset($config['gcCallback'], $config['gc_callback'])) {
            throw new InvalidConfigException(
                "ResourceTracker config: 'gcCallback' and 'gc_callback' are the same option; give one",
                3
            );
        }
        $gc = $config['gcCallback'] ?? $config['gc_callback'] ?? null;
        if ($gc !== null && !is_callable($gc)) {
            throw new InvalidConfigException(
                "ResourceTracker config: 'gcCallback' must be callable, got " . get_debug_type($gc),
                3
            );
        }
        $this->gcCallback = $gc;
        if (isset($config['reportAtExit'], $config['report_at_exit'])) {
            throw new InvalidConfigException(
                "ResourceTracker config: 'reportAtExit' and 'report_at_exit' are the same option; give one",
                3
            );
        }
        foreach (['reportAtExit', 'report_at_exit'] as $k) {
            if (array_key_exists($k, $config)) {
                if (!is_bool($config[$k])) {
                    throw new InvalidConfigException(
                        "ResourceTracker config: invalid value for '{$k}': expected true or false, got "
                        . get_debug_type($config[$k]),
                        3
                    );
                }
                $this->reportAtExit = $config[$k];
            }
        }
        $core = array_diff_key($config, array_flip(self::BINDING_KEYS));
        foreach (['thresholds', 'resourceTracking', 'resource_tracking'] as $k) {
            if (isset($core[$k]) && is_array($core[$k])) {
                $core[$k] = (object) $core[$k];
            }
        }
        $this->ffi = Native::ffi();
        $out = $this->ffi->new('mw_tracker*');
        Native::check($this->ffi->mw_tracker_new(Native::configJson('ResourceTracker', $core), \FFI::addr($out)));
        $this->handle = $out;
        $this->id = $this->ffi->new('uint64_t');
        $this->out = $this->ffi->new('char*');
        if ($this->reportAtExit) {
            $this->watchAtExit();
        }
    }

    public function __destruct()
    {
        if (isset($this->handle)) {
            $this->ffi->mw_tracker_free($this->handle);
            unset($this->handle);
        }
    }

    /**
     * Tracks $resource as $type with $metadata (JSON-encodable); returns its id (>= 1; 0 when
     * tracking is off). Its size in bytes: $size, else $metadata['size'], else strlen() of a
     * string resource, else 0. Metadata that JSON cannot carry (a PHP resource, NAN, invalid
     * UTF-8, ...) throws InvalidArgumentException naming where, and nothing is tracked.
     *
     * @param array<mixed>|object|null $metadata
     */
    public function trackResource(mixed $resource, string $type = 'resource', array|object|null $metadata = null, ?int $size = null): int
    {
        $json = self::metadataJson($metadata);
        if ($size === null && is_array($metadata) && array_key_exists('size', $metadata)) {
            $m = $metadata['size'];
            if (!is_int($m) && !(is_float($m) && is_finite($m))) {
                throw new InvalidArgumentException(
                    "trackResource: metadata['size'] must be a number of bytes, got " . get_debug_type($m),
                    2
                );
            }
            $size = (int) $m;
        }
        $size ??= is_string($resource) ? strlen($resource) : 0;
        if ($size < 0) {
            throw new InvalidArgumentException("trackResource: size must be >= 0 bytes, got {$size}", 2);
        }
        if (!$this->trackingEnabled) {
            return 0;
        }
        $status = $this->ffi->mw_tracker_track($this->handle(), $type, $size, $json, \FFI::addr($this->id));
        Native::check($status);
        $id = $this->id->cdata;
        if ($id > 0) {
            $this->refs[$id] = is_object($resource) ? \WeakReference::create($resource) : null;
            $this->log("tracked #{$id} ({$type}, {$size} bytes)");
        }
        $this->dispatch();
        return $id;
    }

    /**
     * Releases a resource. An unknown or already released id throws NotFoundException and
     * changes nothing.
     */
    public function releaseResource(int $id): void
    {
        $status = $this->ffi->mw_tracker_release($this->handle(), $id);
        Native::check($status);
        unset($this->refs[$id]);
        $this->log("released #{$id}");
        $this->dispatch();
    }

    /**
     * Streamflow's ResourceStats: ['type', 'size', 'createdAt' (ms since the epoch),
     * 'metadata'], or null when the id is not tracked.
     *
     * @return array<string,mixed>|null
     */
    public function getResource(int $id): ?array
    {
        $this->sweep([$id]);
        $status = $this->ffi->mw_tracker_get($this->handle(), $id, \FFI::addr($this->out));
        if ($status === 7) {
            return null;
        }
        Native::check($status);
        return Native::decode(Native::takeString($this->out));
    }

    /**
     * totalAllocated (bytes tracked now), activeResources, peakMemoryUsage, totalTracked,
     * maxMemoryUsage, usageRatio, level ('normal', 'warning', 'critical'), byType (live count
     * per type), leaks (per type), droppedEvents; bytesByType with resourceTracking.detailed.
     *
     * @return array<string,mixed>
     */
    public function getMemoryStats(): array
    {
        $this->sweep();
        Native::check($this->ffi->mw_tracker_stats($this->handle(), \FFI::addr($this->out)));
        $stats = Native::decode(Native::takeString($this->out));
        $this->dispatch();
        return $stats;
    }

    /**
     * The leak report per type: live, released, collected_unreleased (collected without a
     * release), cleaned_up (released by cleanup).
     *
     * @return array<string,array<string,int>>
     */
    public function leakReport(): array
    {
        if ($this->finalReport !== null) {
            return $this->finalReport;
        }
        return $this->getMemoryStats()['leaks'] ?? [];
    }

    /**
     * $listener(array $event) for 'memoryWarning', 'memoryCritical' or 'cleanup'; the event
     * has type, usage (bytes), threshold (fraction) and detail.
     */
    public function on(string $event, callable $listener): self
    {
        if (!in_array($event, self::EVENTS, true)) {
            throw new InvalidArgumentException(
                "ResourceTracker::on: unknown event '{$event}'; expected one of " . implode(', ', self::EVENTS),
                2
            );
        }
        $this->listeners[$event][] = $listener;
        return $this;
    }

    /** $hook() runs first in every cleanup(). */
    public function onBeforeGC(callable $hook): void
    {
        $this->beforeGc[] = $hook;
    }

    /**
     * Runs the onBeforeGC hooks and PHP's gc_collect_cycles(), marks collected objects, then
     * (with enableAutoCleanup) releases the oldest resources until usage is below the warning
     * threshold, then gcCallback. Returns ['released_ids' => [...], 'freed_bytes' => n].
     *
     * @return array{released_ids:list<int>,freed_bytes:int}
     */
    public function cleanup(): array
    {
        $this->handle();
        foreach ($this->beforeGc as $hook) {
            $hook();
        }
        gc_collect_cycles();
        $this->sweep();
        Native::check($this->ffi->mw_tracker_cleanup($this->handle(), \FFI::addr($this->out)));
        $report = Native::decode(Native::takeString($this->out));
        foreach ($report['released_ids'] ?? [] as $id) {
            unset($this->refs[$id]);
        }
        $this->log('cleanup released ' . count($report['released_ids'] ?? []) . ' resource(s)');
        $this->dispatch();
        if ($this->gcCallback !== null) {
            ($this->gcCallback)();
        }
        /** @var array{released_ids:list<int>,freed_bytes:int} */
        return $report;
    }

    /**
     * Events since the last call, oldest first, after delivering them to the listeners.
     *
     * @return list<array<string,mixed>>
     */
    public function pollEvents(): array
    {
        return $this->dispatch();
    }

    /**
     * Stops the cleanup timer, marks collected objects and returns the final leak report.
     * Later calls throw ClosedException; dispose() again returns the same report.
     *
     * @return array<string,array<string,int>>
     */
    public function dispose(): array
    {
        if ($this->finalReport !== null) {
            return $this->finalReport;
        }
        $this->sweep();
        Native::check($this->ffi->mw_tracker_dispose($this->handle(), \FFI::addr($this->out)));
        $this->finalReport = Native::decode(Native::takeString($this->out));
        $this->refs = [];
        $this->log('disposed; leaks: ' . json_encode($this->finalReport));
        $this->ffi->mw_tracker_free($this->handle);
        unset($this->handle);
        return $this->finalReport;
    }

    /**
     * Debug switches (Streamflow's debug()): trackingEnabled (false: trackResource tracks
     * nothing and returns 0 until switched back) and verbose (every track, release, cleanup
     * and event is written with error_log()). Returns the state: trackingEnabled, verbose,
     * stats, and resources (every live id => its ResourceStats plus 'alive': whether its
     * object still exists, null for values that are not objects).
     *
     * @param array<string,bool> $options
     * @return array<string,mixed>
     */
    public function debug(array $options = []): array
    {
        foreach ($options as $key => $value) {
            $prop = match ($key) {
                'trackingEnabled', 'tracking_enabled' => 'trackingEnabled',
                'verbose' => 'verbose',
                default => throw new InvalidArgumentException(
                    "ResourceTracker::debug: unknown option '{$key}'; expected 'trackingEnabled' or 'verbose'",
                    2
                ),
            };
            if (!is_bool($value)) {
                throw new InvalidArgumentException(
                    "ResourceTracker::debug: '{$key}' must be true or false, got " . get_debug_type($value),
                    2
                );
            }
            $this->{$prop} = $value;
        }
        if ($this->verbose) {
            $this->watchAtExit();
        }
        $stats = $this->getMemoryStats();
        $resources = [];
        foreach ($this->refs as $id => $ref) {
            $r = $this->getResource($id);
            if ($r !== null) {
                $r['alive'] = $ref === null ? null : $ref->get() !== null;
                $resources[$id] = $r;
            }
        }
        return [
            'trackingEnabled' => $this->trackingEnabled,
            'verbose' => $this->verbose,
            'stats' => $stats,
            'resources' => $resources,
        ];
    }

    /** Whether dispose() was called. */
    public function isDisposed(): bool
    {
        return !isset($this->handle);
    }

    /**
     * The native handle, for a StreamProcessor given this tracker ('tracker' option).
     *
     * @internal
     */
    public function nativeHandle(): CData
    {
        return $this->handle();
    }

    /**
     * The line the shutdown function writes for this tracker, or null when it writes none
     * (no reportAtExit or verbose, or disposed).
     *
     * @internal
     */
    public function exitReportLine(): ?string
    {
        if ((!$this->reportAtExit && !$this->verbose) || !isset($this->handle)) {
            return null;
        }
        $this->sweep();
        if ($this->ffi->mw_tracker_exit_report_line($this->handle, \FFI::addr($this->out)) !== 0) {
            return null;
        }
        return Native::takeString($this->out) . "\n";
    }

    /**
     * The line the shutdown function writes instead when taking a tracker's report failed;
     * null when the library cannot give even that (nothing is thrown at shutdown).
     */
    private static function exitReportFailedLine(string $message): ?string
    {
        try {
            $ffi = Native::ffi();
            $out = $ffi->new('char*');
            Native::check($ffi->mw_tracker_exit_report_failed_line($message, \FFI::addr($out)));
            return Native::takeString($out) . "\n";
        } catch (\Throwable) {
            return null;
        }
    }

    /** The shutdown function: every watched tracker still alive writes its line to stderr. */
    public static function reportAtExit(): void
    {
        $trackers = self::$atExit;
        self::$atExit = [];
        $stderr = null;
        foreach ($trackers as $ref) {
            $tracker = $ref->get();
            if ($tracker === null) {
                continue;
            }
            try {
                $line = $tracker->exitReportLine();
            } catch (\Throwable $e) {
                $line = self::exitReportFailedLine($e->getMessage());
            }
            if ($line === null) {
                continue;
            }
            $stderr ??= defined('STDERR') ? STDERR : fopen('php://stderr', 'wb');
            if ($stderr !== false) {
                fwrite($stderr, $line);
            }
        }
    }

    // ---- internals ------------------------------------------------------------

    private function watchAtExit(): void
    {
        foreach (self::$atExit as $id => $ref) {
            if ($ref->get() === null) {
                unset(self::$atExit[$id]);
            }
        }
        self::$atExit[spl_object_id($this)] = \WeakReference::create($this);
        if (!self::$shutdownRegistered) {
            self::$shutdownRegistered = true;
            register_shutdown_function([self::class, 'reportAtExit']);
        }
    }

    private function handle(): CData
    {
        if (!isset($this->handle)) {
            throw new ClosedException('ResourceTracker was disposed', 11);
        }
        return $this->handle;
    }

    /**
     * Marks the resources whose object PHP collected without a release (all, or those of $ids).
     *
     * @param list<int>|null $ids
     */
    private function sweep(?array $ids = null): void
    {
        $handle = $this->handle();
        foreach ($ids ?? array_keys($this->refs) as $id) {
            $ref = $this->refs[$id] ?? null;
            if ($ref === null || $ref->get() !== null) {
                continue;
            }
            unset($this->refs[$id]);
            $status = $this->ffi->mw_tracker_mark_collected($handle, $id);
            if ($status !== 0 && $status !== 7) {
                Native::check($status);
            }
            $this->log("#{$id} was collected without a release (counted as leaked)");
        }
    }

    /**
     * Takes the core's queued events and calls the listeners on this thread. Every listener
     * runs; the first exception one throws is rethrown afterwards.
     *
     * @return list<array<string,mixed>>
     */
    private function dispatch(): array
    {
        Native::check($this->ffi->mw_tracker_poll($this->handle(), \FFI::addr($this->out)));
        $json = Native::takeString($this->out);
        if ($json === '[]') {
            return [];
        }
        /** @var list<array<string,mixed>> $events */
        $events = Native::decode($json);
        $error = null;
        foreach ($events as $event) {
            $type = (string) ($event['type'] ?? '');
            if ($type === 'cleanup') {
                foreach ($event['detail']['released_ids'] ?? [] as $id) {
                    unset($this->refs[$id]);
                }
            }
            $this->log("event {$type}: usage {$event['usage']} bytes, threshold {$event['threshold']}");
            foreach ($this->listeners[$type] ?? [] as $listener) {
                try {
                    $listener($event);
                } catch (\Throwable $e) {
                    $error ??= $e;
                }
            }
        }
        if ($error !== null) {
            throw $error;
        }
        return $events;
    }

    private function log(string $message): void
    {
        if ($this->verbose) {
            error_log("memwarden ResourceTracker: {$message}");
        }
    }

    /** @param array<mixed>|object|null $metadata */
    private static function metadataJson(array|object|null $metadata): string
    {
        if ($metadata === null || $metadata === []) {
            return '{}';
        }
        $problem = self::unencodable($metadata, 'metadata');
        if ($problem !== null) {
            throw new InvalidArgumentException("trackResource: metadata is not JSON-encodable: {$problem}", 2);
        }
        try {
            return json_encode($metadata, JSON_THROW_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION | JSON_UNESCAPED_SLASHES);
        } catch (\JsonException $e) {
            throw new InvalidArgumentException("trackResource: metadata is not JSON-encodable: {$e->getMessage()}", 2, $e);
        }
    }

    /** The first value under $value that JSON cannot carry, as "path is what", or null. */
    private static function unencodable(mixed $value, string $path, int $depth = 0): ?string
    {
        if ($depth > 64) {
            return "{$path} is nested deeper than 64 levels (a reference cycle?)";
        }
        if (is_resource($value) || get_debug_type($value) === 'resource (closed)') {
            return "{$path} is a PHP resource (" . get_debug_type($value) . ')';
        }
        if (is_float($value) && !is_finite($value)) {
            return "{$path} is " . var_export($value, true);
        }
        if (is_string($value) && preg_match('//u', $value) !== 1) {
            return "{$path} is a string that is not valid UTF-8";
        }
        if ($value instanceof \Closure) {
            return "{$path} is a Closure";
        }
        if (is_array($value) || (is_object($value) && !$value instanceof \JsonSerializable)) {
            foreach ((array) $value as $k => $v) {
                if (is_object($value) && is_string($k) && str_starts_with($k, "\0")) {
                    continue; // private and protected properties are not encoded
                }
                $p = self::unencodable($v, "{$path}['{$k}']", $depth + 1);
                if ($p !== null) {
                    return $p;
                }
            }
        }
        return null;
    }
}
