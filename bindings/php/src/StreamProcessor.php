<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\IoException;
use Memwarden\Exception\MemwardenException;

/**
 * Streamflow's chunked uploads over the C library's StreamProcessor: a file or a stream
 * resource is read in chunks of `chunkSize`, each chunk is tracked while its handler runs,
 * `compressionEnabled` hands the handler gzip (one member per chunk), and `performance`
 * events carry `speed`, `memoryUsage` and `processingTime`.
 *
 * PHP runs one handler at a time: `concurrentStreams` is accepted (and checked) but chunks
 * are handled sequentially, in order, each read only after the previous one was handled, so
 * at most one chunk is in memory. Options: `chunkSize` (bytes or '1M'), `concurrentStreams`,
 * `compressionEnabled`, `maxMemoryUsage` (bytes or '64M'), `thresholds`, `cleanupInterval`
 * (snake_case aliases accepted), `performanceCallback`, and `tracker`: a ResourceTracker of
 * yours to track the chunks in (its statistics show them, its maxMemoryUsage and thresholds
 * decide when reading pauses, its listeners get the events admitting a chunk causes; the
 * tracker's own keys may then not be given here).
 */
final class StreamProcessor
{
    private const BINDING_KEYS = ['performanceCallback', 'performance_callback'];
    public const EVENTS = ['performance', 'memoryWarning', 'memoryCritical'];

    private \FFI $ffi;
    private ?CData $handle;
    private int $chunkSize;
    private bool $compression;
    /** @var array<string, list<callable>> */
    private array $listeners = [];
    /** @var array{index:int,offset:int,size:int}|null */
    private ?array $lastFailure = null;
    private ?ResourceTracker $tracker = null;

    /** @param array<string,mixed> $options */
    public function __construct(array $options = [])
    {
        $core = [];
        foreach ($options as $key => $value) {
            if ($key === 'tracker') {
                if ($value === null) {
                    continue;
                }
                if (!$value instanceof ResourceTracker) {
                    throw new \TypeError(
                        "StreamProcessor: 'tracker' must be a Memwarden\\ResourceTracker, got " . get_debug_type($value)
                    );
                }
                $this->tracker = $value;
                continue;
            }
            if (in_array($key, self::BINDING_KEYS, true)) {
                if ($value === null) {
                    continue;
                }
                if (!is_callable($value)) {
                    throw new InvalidArgumentException(
                        "StreamProcessor: '{$key}' must be callable, got " . get_debug_type($value)
                    );
                }
                $this->on('performance', $value);
                continue;
            }
            $core[$key] = $value;
        }
        $this->ffi = Native::ffi();
        $json = $core === [] ? '{}' : json_encode($core, JSON_THROW_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION);
        $out = $this->ffi->new('mw_stream*');
        if ($this->tracker === null) {
            Native::check($this->ffi->mw_stream_new($json, \FFI::addr($out)));
        } else {
            Native::check($this->ffi->mw_stream_new_with_tracker($json, $this->tracker->nativeHandle(), \FFI::addr($out)));
        }
        $this->handle = $out;
        $stats = $this->stats();
        $this->chunkSize = (int) $stats['chunkSize'];
        $this->compression = (bool) $stats['compressionEnabled'];
    }

    public function __destruct()
    {
        if ($this->handle !== null) {
            $this->ffi->mw_stream_free($this->handle);
            $this->handle = null;
        }
    }

    /**
     * Registers $callback for 'performance' (per chunk, and the summary with 'final' true),
     * 'memoryWarning' or 'memoryCritical' (the chunk tracker crossed a threshold when a chunk
     * was admitted; the event has the chunk's 'index').
     */
    public function on(string $event, callable $callback): self
    {
        if (!in_array($event, self::EVENTS, true)) {
            throw new InvalidArgumentException(
                "StreamProcessor::on(): unknown event '{$event}'; expected 'performance', 'memoryWarning' or 'memoryCritical'"
            );
        }
        $this->listeners[$event][] = $callback;
        return $this;
    }

    /**
     * Reads the file at $path in chunks and calls $handler($chunk, $info) for each, with
     * $info = ['index' => ..., 'offset' => ..., 'size' => ...]. Returns the summary.
     *
     * @return array<string,mixed>
     */
    public function processFile(string $path, callable $handler): array
    {
        $fp = @fopen($path, 'rb');
        if ($fp === false) {
            $why = error_get_last()['message'] ?? 'unknown error';
            throw new IoException("StreamProcessor: cannot open '{$path}': {$why}", 8);
        }
        try {
            return $this->processStream($fp, $handler);
        } finally {
            fclose($fp);
        }
    }

    /**
     * Like processFile() for an open stream resource (file, php://stdin, a socket, ...).
     * A handler's exception stops the run and is rethrown as it was; lastFailure() says which
     * chunk it was.
     *
     * @param resource $stream
     * @return array<string,mixed>
     */
    public function processStream($stream, callable $handler): array
    {
        if (!is_resource($stream) || get_resource_type($stream) !== 'stream') {
            throw new InvalidArgumentException(
                'StreamProcessor::processStream(): $stream must be a stream resource, got ' . get_debug_type($stream)
            );
        }
        $ffi = $this->ffi;
        $h = $this->live();
        $this->lastFailure = null;
        Native::check($ffi->mw_stream_begin($h));
        $ticket = $ffi->new('mw_chunk_ticket');
        $admitted = $ffi->new('bool');
        $event = $ffi->new('char*');
        try {
            for (;;) {
                // Sequential: nothing is in flight here, so the chunk is always admitted.
                Native::check($ffi->mw_stream_admit($h, $this->chunkSize, -1, \FFI::addr($ticket), \FFI::addr($admitted)));
                if (!$admitted->cdata) {
                    throw new MemwardenException('StreamProcessor: a chunk was not admitted');
                }
                $index = (int) $ticket->index;
                $offset = (int) $ticket->offset;
                try {
                    $data = $this->readChunk($stream, $offset);
                } catch (\Throwable $e) {
                    $ffi->mw_stream_cancel($h, $ticket, true);
                    throw $e;
                }
                if ($data === '') {
                    Native::check($ffi->mw_stream_cancel($h, $ticket, false));
                    break;
                }
                $size = strlen($data);
                $start = hrtime(true);
                try {
                    $payload = $this->compression ? $this->compress($data) : $data;
                    $handler($payload, ['index' => $index, 'offset' => $offset, 'size' => $size]);
                } catch (\Throwable $e) {
                    $ffi->mw_stream_cancel($h, $ticket, true);
                    $this->lastFailure = ['index' => $index, 'offset' => $offset, 'size' => $size];
                    throw $e;
                }
                $ms = (hrtime(true) - $start) / 1e6;
                $packed = $this->compression ? strlen($payload) : 0;
                Native::check($ffi->mw_stream_finish($h, $ticket, $size, $packed, $ms, null));
                $this->dispatch();
            }
        } finally {
            $summary = $ffi->new('char*');
            $status = $ffi->mw_stream_end($h, \FFI::addr($summary));
            $result = $status === 0 ? Native::decode(Native::takeString($summary)) : [];
            $this->dispatch();
        }
        Native::check($status);
        return $result;
    }

    /** @param resource $stream */
    private function readChunk($stream, int $offset): string
    {
        $data = '';
        while (strlen($data) < $this->chunkSize && !feof($stream)) {
            $piece = fread($stream, $this->chunkSize - strlen($data));
            if ($piece === false) {
                $at = $offset + strlen($data);
                throw new IoException("StreamProcessor: reading the stream failed at offset {$at}", 8);
            }
            if ($piece === '') {
                // A blocking read of nothing is the end; a non-blocking stream with nothing yet
                // waits for more (or the end).
                if (feof($stream) || (stream_get_meta_data($stream)['blocked'] ?? true)) {
                    break;
                }
                $r = [$stream];
                $w = $e = null;
                try {
                    if (@stream_select($r, $w, $e, 1) === false) {
                        break;
                    }
                } catch (\ValueError) {
                    break;
                }
                continue;
            }
            $data .= $piece;
        }
        return $data;
    }

    /** The chunk whose handler threw in the last run: ['index', 'offset', 'size'], or null. */
    public function lastFailure(): ?array
    {
        return $this->lastFailure;
    }

    /** Gzip of $data, as chunks are compressed with compressionEnabled. */
    public function compress(string $data): string
    {
        $ffi = $this->ffi;
        $n = strlen($data);
        $in = $ffi->new('uint8_t[' . max(1, $n) . ']');
        if ($n > 0) {
            \FFI::memcpy($in, $data, $n);
        }
        $out = $ffi->new('uint8_t*');
        $len = $ffi->new('size_t');
        Native::check($ffi->mw_stream_compress($this->live(), $in, $n, \FFI::addr($out), \FFI::addr($len)));
        try {
            return \FFI::string($out, $len->cdata);
        } finally {
            $ffi->mw_bytes_free($out, $len->cdata);
        }
    }

    /**
     * Config, the last run's counters (chunks, bytes, peakInFlight, pauses, ...) and
     * 'tracker' (the chunk tracker's statistics).
     *
     * @return array<string,mixed>
     */
    public function stats(): array
    {
        $out = $this->ffi->new('char*');
        Native::check($this->ffi->mw_stream_stats($this->live(), \FFI::addr($out)));
        return Native::decode(Native::takeString($out));
    }

    /** @return array<string,mixed> */
    public function getStats(): array
    {
        return $this->stats();
    }

    /**
     * Events since the last poll ('performance' and the tracker's 'memoryWarning' /
     * 'memoryCritical'); listeners registered with on() already got them.
     *
     * @return list<array<string,mixed>>
     */
    public function pollEvents(): array
    {
        $out = $this->ffi->new('char*');
        Native::check($this->ffi->mw_stream_poll($this->live(), \FFI::addr($out)));
        $v = Native::decode(Native::takeString($out));
        return array_values($v);
    }

    public function getChunkSize(): int
    {
        return $this->chunkSize;
    }

    /** The ResourceTracker given as 'tracker', or null when the processor has its own. */
    public function getTracker(): ?ResourceTracker
    {
        return $this->tracker;
    }

    private function dispatch(): void
    {
        if ($this->listeners !== []) {
            foreach ($this->pollEvents() as $ev) {
                foreach ($this->listeners[$ev['type']] ?? [] as $cb) {
                    $cb($ev);
                }
            }
        }
        // The caller's tracker delivers what admitting chunks caused, as its own calls do.
        if ($this->tracker !== null && !$this->tracker->isDisposed()) {
            $this->tracker->pollEvents();
        }
    }

    private function live(): CData
    {
        if ($this->handle === null) {
            throw new MemwardenException('StreamProcessor was freed');
        }
        return $this->handle;
    }
}
