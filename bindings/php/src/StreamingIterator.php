<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;

/**
 * Walks a large data source chunk by chunk, over memwarden's native streaming iterator.
 *
 * ```php
 * $iterator = new StreamingIterator($dataSource, [
 *     'chunk_size' => 1000,
 *     'memory_limit' => '128M',
 *     'auto_gc' => true,
 * ]);
 * foreach ($iterator as $chunk) {      // a list of up to chunk_size items
 *     foreach ($chunk as $item) { processItem($item); }
 * }
 * ```
 *
 * $dataSource: an array, an Iterator / IteratorAggregate, or a Generator (pulled lazily,
 * chunk_size items at a time, on the calling thread).
 *
 * Config (the seed's keys): chunk_size (1000), memory_limit ('128M', -1 = none: the growth
 * of memory allowed over the start of the iteration; above it the manager's cleanup runs
 * when auto_gc and then the chunk size is halved), auto_gc (true), cache_chunks (false: keep
 * the chunks so that a second foreach replays them), error_handling ('continue': a source
 * failure is recorded in getStats()['errors'] and the next chunk is pulled; 'stop': the
 * source's exception is rethrown; 'retry': the source is asked again retry_attempts times,
 * then its exception is rethrown), retry_attempts (3). prefetch and parallel_processing are
 * accepted and have no effect: a PHP source can only be read on PHP's one thread, in the
 * call that needs the chunk. Binding key: 'manager' => MemoryManager, whose garbage
 * collection (and cleanup hooks) runs when memory_limit is exceeded.
 *
 * A Generator that threw is finished: the items it yielded before the exception are handed
 * out, then 'continue' ends the iteration (the error is in the stats) and 'stop' / 'retry'
 * rethrow the generator's own exception object.
 *
 * A second foreach replays the cached chunks with cache_chunks. Without it, an array or a
 * rewindable Traversable is read again from the start (the statistics start over); a
 * Generator cannot be replayed and the second foreach throws UnsupportedException.
 *
 * @implements \IteratorAggregate<int, list<mixed>>
 */
class StreamingIterator implements \IteratorAggregate
{
    private \FFI $ffi;
    private ?CData $handle = null;
    private CallbackGuard $guard;
    private ItemTable $table;
    /** @var object{puller: ?SourcePuller} what the C callback reads; swapped on a restart */
    private object $state;
    private string $json;
    private bool $cache;
    private string $errorHandling;
    private bool $iterated = false;
    private ?MemoryManager $manager;
    private mixed $source;
    /** @var list<\Closure> */
    private array $keep = [];

    /** @param array<string,mixed> $config */
    public function __construct(mixed $dataSource, array $config = [])
    {
        if (!is_iterable($dataSource)) {
            throw new InvalidArgumentException(
                'StreamingIterator: the data source must be an array, a Traversable or a Generator, got '
                . get_debug_type($dataSource),
                2
            );
        }
        $manager = $config['manager'] ?? null;
        unset($config['manager']);
        if ($manager !== null && !$manager instanceof MemoryManager) {
            throw new InvalidConfigException(
                "StreamingIterator config: 'manager' must be a Memwarden\\MemoryManager, got " . get_debug_type($manager),
                3
            );
        }
        $this->manager = $manager;
        $this->source = $dataSource;
        $this->cache = ($config['cache_chunks'] ?? false) === true;
        $this->errorHandling = is_string($config['error_handling'] ?? null) ? $config['error_handling'] : 'continue';
        $this->ffi = Native::ffi();
        $this->json = Native::configJson('StreamingIterator', $config);
        $this->state = new \stdClass();
        $this->state->puller = null;
        $this->open();
    }

    public function __destruct()
    {
        $this->close();
    }

    /** @return \Generator<int, list<mixed>> */
    public function getIterator(): \Generator
    {
        if ($this->iterated) {
            if ($this->cache || $this->source instanceof \Generator) {
                // Replays the cache; the core's error when there is none to replay.
                $this->guard->invoke(fn () => $this->ffi->mw_streaming_rewind($this->handle));
            } else {
                $this->close();
                $this->open();
            }
        }
        $this->iterated = true;
        $items = $this->ffi->new('mw_item*');
        $n = $this->ffi->new('size_t');
        while (true) {
            $handle = $this->handle;
            $this->guard->invokeHandled(
                fn () => $this->ffi->mw_streaming_next($handle, \FFI::addr($items), \FFI::addr($n))
            );
            $count = (int) $n->cdata;
            if ($count === 0) {
                return;
            }
            yield $this->table->take($items, $count, !$this->cache);
        }
    }

    /**
     * chunks, items, chunk_size (current), initial_chunk_size, chunk_size_reductions,
     * cleanups, memory_checks, peak_memory_growth_bytes, errors (list of chunk, message),
     * skipped_chunks, retries, cached_chunks, cache_dropped, ...
     *
     * @return array<string,mixed>
     */
    public function getStats(): array
    {
        $out = $this->ffi->new('char*');
        Native::check($this->ffi->mw_streaming_stats($this->handle, \FFI::addr($out)));
        return Native::decode(Native::takeString($out));
    }

    private function open(): void
    {
        $this->guard = new CallbackGuard();
        $this->table = new ItemTable();
        $this->state->puller = new SourcePuller($this->source, $this->table, $this->guard, $this->errorHandling);
        if ($this->keep === []) {
            $state = $this->state;
            $this->keep[] = static function ($user, $max, $items, $n) use ($state): int {
                try {
                    return $state->puller->pull((int) $max, $items, $n);
                } catch (\Throwable $e) {
                    return 1; // unreachable: pull() catches; never let an exception cross FFI
                }
            };
        }
        $out = $this->ffi->new('mw_streaming*');
        Native::check($this->ffi->mw_streaming_new($this->json, $this->keep[0], null, \FFI::addr($out)));
        $this->handle = $out;
        if ($this->manager !== null) {
            Native::check($this->ffi->mw_streaming_set_manager($this->handle, $this->manager->nativeHandle()));
        }
    }

    private function close(): void
    {
        if ($this->handle !== null) {
            $this->ffi->mw_streaming_free($this->handle);
            $this->handle = null;
        }
    }
}
