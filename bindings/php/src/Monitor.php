<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;
use Memwarden\Exception\InvalidArgumentException;

/**
 * A memory monitor over memwarden's native core: samples a process ('pid'; with 'children'
 * its whole tree) or the whole system every 'interval' seconds on the library's own thread,
 * keeps the series, appends every sample to 'export' (one JSON line each) as it goes, and
 * analyzes it: average, peak, efficiency (average / peak), spikes and the leak trend (slope in
 * MB/min with its R² and a sentence).
 *
 * Config keys: pid, children, system, interval (seconds, default 1), threshold (percent,
 * default 80), export (a path), export_sync_every (fsync every N samples). A pid that does
 * not exist throws NotFoundException, another user's InvalidArgumentException, a bad key or
 * value InvalidConfigException, an export path that cannot be written IoException.
 *
 * The sampler never calls into PHP; `use(fn)` samples while the callable runs.
 */
final class Monitor
{
    private \FFI $ffi;
    private CData $handle;

    /** @param array<string,mixed> $config */
    public function __construct(array $config = [])
    {
        $this->ffi = Native::ffi();
        $out = $this->ffi->new('mw_monitor*');
        Native::check($this->ffi->mw_monitor_new(Native::configJson('Monitor', $config), \FFI::addr($out)));
        $this->handle = $out;
    }

    public function __destruct()
    {
        if (isset($this->handle)) {
            $this->ffi->mw_monitor_free($this->handle);
            unset($this->handle);
        }
    }

    /** Starts the background sampler (at once, then every interval; late ticks are skipped). */
    public function start(): self
    {
        Native::check($this->ffi->mw_monitor_start($this->handle));
        return $this;
    }

    /** Stops the background sampler (returns once it has) and fsyncs the export. */
    public function stop(): void
    {
        Native::check($this->ffi->mw_monitor_stop($this->handle));
    }

    /**
     * Samples while `$fn($this)` runs, then stops, also when it throws; returns its result.
     *
     * @template T
     * @param callable(Monitor):T $fn
     * @return T
     */
    public function use(callable $fn): mixed
    {
        $this->start();
        try {
            return $fn($this);
        } finally {
            $this->stop();
        }
    }

    public function isRunning(): bool
    {
        return (bool) $this->status()['running'];
    }

    /** Why the sampler stopped on its own ("process 123 has exited"), or null. */
    public function ended(): ?string
    {
        return $this->status()['ended'];
    }

    public function skippedTicks(): int
    {
        return (int) $this->status()['skipped_ticks'];
    }

    /**
     * target, interval, limit_bytes, limit_origin, threshold, started_unix_ms, version.
     *
     * @return array<string,mixed>
     */
    public function meta(): array
    {
        return $this->status()['meta'];
    }

    /**
     * Takes a sample now, adds it to the series and returns it.
     *
     * @return array{t: float, unix_ms: int, current_bytes: int, peak_bytes: int, limit_bytes: int}
     */
    public function sampleNow(): array
    {
        return $this->json(fn (CData $out) => $this->ffi->mw_monitor_sample_now($this->handle, $out));
    }

    /**
     * Every sample so far, each as sampleNow() returns it.
     *
     * @return list<array<string,mixed>>
     */
    public function samples(): array
    {
        return $this->json(fn (CData $out) => $this->ffi->mw_monitor_samples($this->handle, $out));
    }

    /**
     * The analysis of the series so far (as analyzeFile()).
     *
     * @return array<string,mixed>
     */
    public function analyze(): array
    {
        return $this->json(fn (CData $out) => $this->ffi->mw_monitor_analyze($this->handle, $out));
    }

    /** Writes the series so far to `$path` as an export file (atomically). */
    public function export(string $path): void
    {
        if (str_contains($path, "\0")) {
            throw new InvalidArgumentException("Monitor::export(): the path contains a NUL byte", 2);
        }
        Native::check($this->ffi->mw_monitor_export($this->handle, $path));
    }

    /**
     * The analysis of an export file (written by `memwarden monitor --export`, a monitor's
     * 'export' key or export()): samples, duration_s, average_mb, min_mb, peak_mb, limit_mb,
     * efficiency_percent, spikes (t, mb, jump_mb), leak (slope_mb_per_min, r2, steady,
     * sentence) or null. An empty, truncated or foreign file throws InvalidArgumentException,
     * a missing one IoException, naming the file.
     *
     * @return array<string,mixed>
     */
    public static function analyzeFile(string $path): array
    {
        if (str_contains($path, "\0")) {
            throw new InvalidArgumentException("Monitor::analyzeFile(): the path contains a NUL byte", 2);
        }
        $ffi = Native::ffi();
        $out = $ffi->new('char*');
        Native::check($ffi->mw_analyze_file($path, \FFI::addr($out)));
        return Native::decode(Native::takeString($out));
    }

    /** @return array<string,mixed> */
    private function status(): array
    {
        return $this->json(fn (CData $out) => $this->ffi->mw_monitor_status($this->handle, $out));
    }

    /** @return array<mixed> */
    private function json(callable $call): array
    {
        $out = $this->ffi->new('char*');
        Native::check($call(\FFI::addr($out)));
        $text = Native::takeString($out);
        if ($text === '[]') {
            return [];
        }
        return Native::decode($text);
    }
}
