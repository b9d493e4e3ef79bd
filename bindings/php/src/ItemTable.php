<?php

declare(strict_types=1);

namespace Memwarden;

/**
 * The PHP side of an iterator (internal): the items themselves, keyed by the small integer
 * ids the native iterator holds as its `mw_item` values (PHP values cannot cross FFI).
 *
 * @internal
 */
final class ItemTable
{
    /** @var array<int,mixed> */
    public array $items = [];

    private int $nextId = 1;

    public function add(mixed $item): int
    {
        $id = $this->nextId++;
        $this->items[$id] = $item;
        return $id;
    }

    public function get(int $id): mixed
    {
        if (!array_key_exists($id, $this->items)) {
            // Only reachable if the native iterator hands back an id it was never given.
            throw new \LogicException("memwarden: the native iterator returned an unknown item id {$id}");
        }
        return $this->items[$id];
    }

    public function remove(int $id): void
    {
        unset($this->items[$id]);
    }

    public function clear(): void
    {
        $this->items = [];
    }

    /**
     * Reads `$n` ids from a `const mw_item *` out-pointer and returns their items; with
     * `$forget` the ids are dropped from the table.
     *
     * @return list<mixed>
     */
    public function take(\FFI\CData $ids, int $n, bool $forget): array
    {
        $out = [];
        for ($i = 0; $i < $n; $i++) {
            $id = (int) $ids[$i];
            $out[] = $this->get($id);
            if ($forget) {
                unset($this->items[$id]);
            }
        }
        return $out;
    }
}
