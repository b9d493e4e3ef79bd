<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;

/**
 * Loads items on demand, a batch at a time, from your loader, over memwarden's native lazy
 * iterator.
 *
 * ```php
 * $lazyIterator = new LazyIterator(function ($offset, $limit) use ($database) {
 *     return $database->getRecords($offset, $limit);
 * }, ['batch_size' => 500, 'prefetch' => true]);
 * foreach ($lazyIterator as $item) { processItem($item); }
 * ```
 *
 * Modes: 'offset' (the default, the seed's): $loader(int $offset, int $limit). 'keyset'
 * (recommended): $loader($afterKey, int $limit), $afterKey null for the first page and then
 * the key of the previous page's last item, so the loader runs `WHERE id > ? ORDER BY id
 * LIMIT ?`: OFFSET rereads every earlier row on each page and skips or repeats rows when the
 * data changes during the walk; a key does neither. 'key' (keyset mode; default 'id') names
 * the key: an array key or public property name of an item, or a callable item => key (a
 * Closure or an array callable; a string is always a name). Keys are ints or strings.
 *
 * A loader returns an array (or a Traversable) of at most $limit items; fewer than $limit is
 * not the end, an empty one is.
 *
 * Config: mode, key, batch_size (1000), memory_limit, auto_gc, cache_chunks (a second
 * foreach replays the batches without calling the loader; otherwise it loads again from the
 * first page), error_handling ('continue' skips a failed page in offset mode; keyset mode
 * cannot skip one and rethrows), retry_attempts, 'manager' => MemoryManager. prefetch and
 * parallel_processing are accepted and have no effect: the loader is PHP code and runs on
 * PHP's one thread, when the next batch is needed. A loader's exception is rethrown as the
 * same object when it ends the iteration.
 *
 * @implements \IteratorAggregate<int, mixed>
 */
class LazyIterator implements \IteratorAggregate
{
    private \FFI $ffi;
    private CData $handle;
    private CallbackGuard $guard;
    private ItemTable $table;
    private bool $cache;
    private bool $iterated = false;
    /** @var list<\Closure> */
    private array $keep = [];

    /** @param array<string,mixed> $config */
    public function __construct(callable $loader, array $config = [])
    {
        $manager = $config['manager'] ?? null;
        unset($config['manager']);
        if ($manager !== null && !$manager instanceof MemoryManager) {
            throw new InvalidConfigException(
                "LazyIterator config: 'manager' must be a Memwarden\\MemoryManager, got " . get_debug_type($manager),
                3
            );
        }
        $keyset = ($config['mode'] ?? 'offset') === 'keyset';
        $key = $config['key'] ?? 'id';
        if (!is_string($key) && !is_int($key)) {
            if (!is_callable($key)) {
                throw new InvalidConfigException(
                    "LazyIterator config: 'key' must be an array key / property name or a callable, got "
                    . get_debug_type($key),
                    3
                );
            }
            unset($config['key']);
        } elseif (is_int($key)) {
            unset($config['key']);
        }
        $this->cache = ($config['cache_chunks'] ?? false) === true;
        $this->ffi = Native::ffi();
        $this->guard = new CallbackGuard();
        $this->table = new ItemTable();
        $json = Native::configJson('LazyIterator', $config);

        $guard = $this->guard;
        $table = $this->table;
        $ffi = $this->ffi;
        $hold = new \stdClass(); // keeps a text key's bytes alive until the next load
        $hold->text = null;
        $this->keep[] = static function ($user, $offset, $after, $limit, $items, $n, $lastKey) use (
            $loader, $keyset, $key, $guard, $table, $ffi, $hold
        ): int {
            try {
                $n[0] = 0;
                $limit = (int) $limit;
                if ($keyset) {
                    $afterKey = null;
                    if ($after !== null && !\FFI::isNull($after)) {
                        $afterKey = match ((int) $after->kind) {
                            1 => (int) $after->int_value,
                            2 => \FFI::string($after->text),
                            default => null,
                        };
                    }
                    $page = $loader($afterKey, $limit);
                } else {
                    $page = $loader((int) $offset, $limit);
                }
                if ($page instanceof \Traversable) {
                    $page = iterator_to_array($page, false);
                }
                if (!is_array($page)) {
                    throw new InvalidArgumentException(
                        'LazyIterator: the loader must return an array of items, got ' . get_debug_type($page),
                        2
                    );
                }
                $count = count($page);
                if ($count > $limit) {
                    throw new InvalidArgumentException(
                        "LazyIterator: the loader returned {$count} items for a limit of {$limit}",
                        2
                    );
                }
                $i = 0;
                $last = null;
                foreach ($page as $item) {
                    $items[$i++] = $table->add($item);
                    $last = $item;
                }
                if ($keyset && $count > 0) {
                    $k = self::keyOf($last, $key);
                    if (is_int($k)) {
                        $lastKey->kind = 1;
                        $lastKey->int_value = $k;
                    } else {
                        $len = strlen($k);
                        $buf = $ffi->new('char[' . ($len + 1) . ']');
                        \FFI::memcpy($buf, $k, $len);
                        $hold->text = $buf;
                        $lastKey->kind = 2;
                        $lastKey->text = $ffi->cast('char*', \FFI::addr($buf[0]));
                    }
                }
                $n[0] = $count;
                return 0;
            } catch (\Throwable $e) {
                $guard->fail($e);
                return 1;
            }
        };
        $out = $this->ffi->new('mw_lazy*');
        Native::check($this->ffi->mw_lazy_new($json, $this->keep[0], null, \FFI::addr($out)));
        $this->handle = $out;
        if ($manager !== null) {
            Native::check($this->ffi->mw_lazy_set_manager($this->handle, $manager->nativeHandle()));
        }
    }

    public function __destruct()
    {
        if (isset($this->handle)) {
            $this->ffi->mw_lazy_free($this->handle);
            unset($this->handle);
        }
    }

    /** @return \Generator<int, mixed> */
    public function getIterator(): \Generator
    {
        if ($this->iterated) {
            $this->guard->invoke(fn () => $this->ffi->mw_lazy_rewind($this->handle));
        }
        $this->iterated = true;
        $items = $this->ffi->new('mw_item*');
        $n = $this->ffi->new('size_t');
        while (true) {
            $this->guard->invokeHandled(
                fn () => $this->ffi->mw_lazy_next_batch($this->handle, \FFI::addr($items), \FFI::addr($n))
            );
            $count = (int) $n->cdata;
            if ($count === 0) {
                return;
            }
            yield from $this->table->take($items, $count, !$this->cache);
        }
    }

    /**
     * As StreamingIterator::getStats() (a chunk is a batch; chunk_size is the current
     * batch_size).
     *
     * @return array<string,mixed>
     */
    public function getStats(): array
    {
        $out = $this->ffi->new('char*');
        Native::check($this->ffi->mw_lazy_stats($this->handle, \FFI::addr($out)));
        return Native::decode(Native::takeString($out));
    }

    /** The keyset key of an item: an int or a string. */
    private static function keyOf(mixed $item, mixed $key): int|string
    {
        if (is_string($key) || is_int($key)) {
            if (is_array($item) || $item instanceof \ArrayAccess) {
                if (!isset($item[$key])) {
                    throw new InvalidArgumentException("LazyIterator: an item has no key '{$key}' (config 'key')", 2);
                }
                $k = $item[$key];
            } elseif (is_object($item) && isset($item->{$key})) {
                $k = $item->{$key};
            } else {
                throw new InvalidArgumentException(
                    "LazyIterator: an item (" . get_debug_type($item) . ") has no key '{$key}' (config 'key')",
                    2
                );
            }
        } else {
            $k = $key($item);
        }
        if (is_int($k) || is_string($k)) {
            return $k;
        }
        if ($k instanceof \Stringable) {
            return (string) $k;
        }
        throw new InvalidArgumentException(
            'LazyIterator: a keyset key must be an int or a string, got ' . get_debug_type($k),
            2
        );
    }
}
