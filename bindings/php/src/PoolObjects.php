<?php

declare(strict_types=1);

namespace Memwarden;

use Memwarden\Exception\InvalidArgumentException;

/**
 * The PHP side of a pool (internal): the objects themselves, keyed by the small integer
 * ids that the C pool holds as its `void *` objects (PHP objects cannot cross FFI).
 *
 * The C callbacks capture this object and the CallbackGuard, never the MemoryPool, so a
 * MemoryPool nobody references is destructed (PHP's FFI keeps callback closures until the
 * end of the request).
 *
 * @internal
 */
final class PoolObjects
{
    /** @var array<int,object> id => object: every object the pool keeps (idle or in use) */
    public array $byId = [];

    /** @var array<int,int> spl_object_id(object) => id */
    public array $idOf = [];

    private int $nextId = 1;

    /** Stores a new object and returns its id (never 0: the C pool rejects NULL objects). */
    public function add(object $object): int
    {
        $key = spl_object_id($object);
        if (isset($this->idOf[$key])) {
            throw new InvalidArgumentException(
                'MemoryPool: the factory returned an object of class ' . get_class($object)
                . ' that is already in the pool; it must create a new object each time',
                2
            );
        }
        $id = $this->nextId++;
        $this->byId[$id] = $object;
        $this->idOf[$key] = $id;
        return $id;
    }

    /** The id of an object the pool keeps, or null for a foreign object. */
    public function idOf(object $object): ?int
    {
        $id = $this->idOf[spl_object_id($object)] ?? null;
        // spl_object_id values are reused only after an object is freed, and the pool holds
        // its objects, so a match is the same object; the check is for certainty.
        return $id !== null && ($this->byId[$id] ?? null) === $object ? $id : null;
    }

    public function get(int $id): object
    {
        $object = $this->byId[$id] ?? null;
        if ($object === null) {
            // Only reachable if the C pool hands back an id it was never given.
            throw new \LogicException("MemoryPool: the native pool returned an unknown object id {$id}");
        }
        return $object;
    }

    /** Forgets an object (the pool destroyed it) and returns it, or null when unknown. */
    public function remove(int $id): ?object
    {
        $object = $this->byId[$id] ?? null;
        if ($object !== null) {
            unset($this->byId[$id], $this->idOf[spl_object_id($object)]);
        }
        return $object;
    }

    /** The id carried by a C `void *` object (a CData pointer whose address is the id). */
    public static function idFromPointer(mixed $pointer): int
    {
        if ($pointer === null) {
            return 0;
        }
        if (is_int($pointer)) {
            return $pointer;
        }
        // FFI::cast('uintptr_t', $ptr) would read the memory the pointer points at; read the
        // pointer's own bytes instead.
        return (int) \FFI::cast('uintptr_t*', \FFI::addr($pointer))[0];
    }

    /** A C `void *` whose address is $id. */
    public static function pointerFromId(int $id): \FFI\CData
    {
        return \FFI::cast('void*', $id);
    }
}
