<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;

/**
 * Pulls items from a PHP array / Traversable for a native chunk source (internal). It is
 * what the C source callback calls; it captures neither the iterator object nor itself
 * from the callback, so an iterator nobody references is freed.
 *
 * A PHP Generator that threw is finished: the items it yielded before the exception are
 * handed out first, the exception is the source failure of the next pull, and after it the
 * source is at its end ('continue', 'stop') or fails again with the same exception
 * ('retry', so the retries run out and the exception reaches you).
 *
 * @internal
 */
final class SourcePuller
{
    private \Iterator $it;
    private bool $started = false;
    private bool $dead = false;
    private ?\Throwable $pending = null;
    private ?\Throwable $last = null;

    public function __construct(
        iterable $source,
        public readonly ItemTable $table,
        private readonly CallbackGuard $guard,
        private readonly string $errorHandling,
        private readonly bool $flattenChunks = false,
    ) {
        $this->it = self::iterator($source);
    }

    public static function iterator(iterable $source): \Iterator
    {
        if (is_array($source)) {
            return new \ArrayIterator($source);
        }
        while ($source instanceof \IteratorAggregate) {
            $source = $source->getIterator();
        }
        if (!$source instanceof \Iterator) {
            throw new \Memwarden\Exception\InvalidArgumentException(
                'memwarden: the data source must be an array or a Traversable, got ' . get_debug_type($source),
                2
            );
        }
        return $source;
    }

    /** The C source callback's body: fills `items` with up to `max` ids and `*n`. */
    public function pull(int $max, CData $items, CData $n): int
    {
        $n[0] = 0;
        if ($this->pending !== null) {
            $this->guard->fail($this->pending);
            $this->pending = null;
            return 1;
        }
        if ($this->dead) {
            if ($this->errorHandling === 'retry' && $this->last !== null) {
                $this->guard->fail($this->last);
                return 1;
            }
            return 0;
        }
        $count = 0;
        try {
            if (!$this->started) {
                $this->started = true;
                $this->it->rewind();
            }
            if ($this->flattenChunks) {
                // A StreamingIterator as the source: its chunks' items, one by one; a chunk
                // larger than the room left is split over two pulls.
                while ($count < $max) {
                    if ($this->spillAt >= count($this->spill)) {
                        if (!$this->it->valid()) {
                            break;
                        }
                        $chunk = $this->it->current();
                        $this->spill = is_array($chunk) ? array_values($chunk) : [$chunk];
                        $this->spillAt = 0;
                        $this->it->next();
                        continue;
                    }
                    $items[$count++] = $this->table->add($this->spill[$this->spillAt++]);
                }
            } else {
                while ($count < $max && $this->it->valid()) {
                    $items[$count++] = $this->table->add($this->it->current());
                    $this->it->next();
                }
            }
        } catch (\Throwable $e) {
            $this->last = $e;
            if ($this->it instanceof \Generator) {
                $this->dead = true;
            }
            if ($count > 0) {
                $this->pending = $e;
            } else {
                $this->guard->fail($e);
                return 1;
            }
        }
        $n[0] = $count;
        return 0;
    }

    /** @var list<mixed> the current chunk of a StreamingIterator source */
    private array $spill = [];
    private int $spillAt = 0;
}
