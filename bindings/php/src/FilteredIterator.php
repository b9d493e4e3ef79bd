<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;
use Memwarden\Exception\InvalidConfigException;

/**
 * Yields the items of a source that every filter keeps, over memwarden's native filtered
 * iterator; the source is read in chunks, never loaded whole.
 *
 * ```php
 * $filteredIterator = new FilteredIterator($sourceIterator, [
 *     'filters' => [
 *         function ($item) { return $item['status'] === 'active'; },
 *         function ($item) { return $item['score'] > 50; },
 *     ],
 *     'early_exit' => true,
 * ]);
 * foreach ($filteredIterator as $item) { processActiveHighScoreItem($item); }
 * ```
 *
 * $sourceIterator: an array, a Traversable, a Generator or a LazyIterator (its items); a
 * StreamingIterator's chunks are flattened into their items.
 *
 * Config: filters (a list of callables item => bool, applied in order), early_exit (true:
 * stop at the first filter that rejects an item; false: every filter sees every item, so
 * the per-filter counts are complete), and the StreamingIterator keys for reading the
 * source (chunk_size, memory_limit, auto_gc, error_handling, retry_attempts, ...). A
 * filter's exception ends the iteration and is rethrown as the same object.
 *
 * @implements \IteratorAggregate<int, mixed>
 */
class FilteredIterator implements \IteratorAggregate
{
    private \FFI $ffi;
    private CData $handle;
    private CallbackGuard $guard;
    private ItemTable $table;
    private int $batch;
    private bool $iterated = false;
    private object $sticky;
    /** @var list<mixed> */
    private array $keep = [];

    /** @param array<string,mixed> $config */
    public function __construct(mixed $sourceIterator, array $config)
    {
        if (!is_iterable($sourceIterator)) {
            throw new \Memwarden\Exception\InvalidArgumentException(
                'FilteredIterator: the source must be an array or a Traversable, got ' . get_debug_type($sourceIterator),
                2
            );
        }
        $filters = $config['filters'] ?? [];
        unset($config['filters']);
        if (!is_array($filters)) {
            throw new InvalidConfigException(
                "FilteredIterator config: 'filters' must be a list of callables, got " . get_debug_type($filters),
                3
            );
        }
        $filters = array_values($filters);
        foreach ($filters as $i => $filter) {
            if (!is_callable($filter)) {
                throw new InvalidConfigException(
                    "FilteredIterator config: filters[{$i}] must be callable, got " . get_debug_type($filter),
                    3
                );
            }
        }
        $earlyExit = ($config['early_exit'] ?? true) !== false;
        $this->batch = is_int($config['chunk_size'] ?? null) && $config['chunk_size'] > 0 ? $config['chunk_size'] : 1000;
        $this->ffi = Native::ffi();
        $this->guard = new CallbackGuard();
        $this->table = $table = new ItemTable();
        $guard = $this->guard;
        $json = Native::configJson('FilteredIterator', $config);

        $puller = new SourcePuller(
            $sourceIterator,
            $table,
            $guard,
            is_string($config['error_handling'] ?? null) ? $config['error_handling'] : 'continue',
            $sourceIterator instanceof StreamingIterator
        );
        $this->keep[] = $source = static function ($user, $max, $items, $n) use ($puller): int {
            try {
                return $puller->pull((int) $max, $items, $n);
            } catch (\Throwable) {
                return 1;
            }
        };

        // A rejected item is dropped from the table once no later filter will see it.
        $count = count($filters);
        $rejected = new \ArrayObject();
        // A filter's exception may surface one call later (the items collected before it are
        // handed out first), so it is kept here until then.
        $this->sticky = $sticky = new \stdClass();
        $sticky->error = null;
        $fns = $count > 0 ? $this->ffi->new("mw_filter_fn[{$count}]") : null;
        foreach ($filters as $i => $filter) {
            $lastFilter = $i === $count - 1;
            $closure = static function ($user, $item) use ($filter, $guard, $table, $earlyExit, $lastFilter, $rejected, $sticky): int {
                try {
                    $id = (int) $item;
                    $keep = (bool) $filter($table->get($id));
                    if ($earlyExit) {
                        if (!$keep) {
                            $table->remove($id);
                        }
                    } else {
                        if (!$keep) {
                            $rejected[$id] = true;
                        }
                        if ($lastFilter && isset($rejected[$id])) {
                            unset($rejected[$id]);
                            $table->remove($id);
                        }
                    }
                    return $keep ? 1 : 0;
                } catch (\Throwable $e) {
                    $guard->fail($e);
                    $sticky->error ??= $e;
                    return -1;
                }
            };
            $this->keep[] = $closure;
            $fns[$i] = $closure;
        }
        $this->keep[] = $fns;
        $out = $this->ffi->new('mw_filtered*');
        Native::check($this->ffi->mw_filtered_new(
            $json,
            $source,
            null,
            $fns === null ? null : $this->ffi->cast('mw_filter_fn*', \FFI::addr($fns[0])),
            null,
            $count,
            \FFI::addr($out)
        ));
        $this->handle = $out;
    }

    public function __destruct()
    {
        if (isset($this->handle)) {
            $this->ffi->mw_filtered_free($this->handle);
            unset($this->handle);
        }
    }

    /**
     * One pass only: the source is read once (wrap a replayable source in a new
     * FilteredIterator to filter it again).
     *
     * @return \Generator<int, mixed>
     */
    public function getIterator(): \Generator
    {
        if ($this->iterated) {
            throw new \Memwarden\Exception\UnsupportedException(
                'FilteredIterator: the source was already read; a filtered iterator goes forward once',
                12
            );
        }
        $this->iterated = true;
        $items = $this->ffi->new('mw_item*');
        $n = $this->ffi->new('size_t');
        while (true) {
            $this->guard->invokeHandled(fn () => $this->ffi->mw_filtered_next_batch(
                $this->handle,
                $this->batch,
                \FFI::addr($items),
                \FFI::addr($n)
            ), fn (int $status) => $status === 10 ? $this->sticky->error : null);
            $count = (int) $n->cdata;
            if ($count === 0) {
                return;
            }
            yield from $this->table->take($items, $count, true);
        }
    }

    /**
     * items_seen, passed, rejected, filters (per filter: evaluated, rejected), early_exit,
     * source (the chunk source's statistics, as StreamingIterator::getStats()).
     *
     * @return array<string,mixed>
     */
    public function getStats(): array
    {
        $out = $this->ffi->new('char*');
        Native::check($this->ffi->mw_filtered_stats($this->handle, \FFI::addr($out)));
        return Native::decode(Native::takeString($out));
    }
}
