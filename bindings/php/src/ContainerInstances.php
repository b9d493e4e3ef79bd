<?php

declare(strict_types=1);

namespace Memwarden;

/**
 * The PHP side of a container (internal): the instances themselves, keyed by the small
 * integer ids that the C container holds as its `void *` instances (PHP values cannot cross
 * FFI). Ids are built and read back with PoolObjects::pointerFromId() / idFromPointer().
 *
 * An instance the container keeps (cached lazy, singleton, scoped) stays here until the
 * container's destroy callback removes it; one the caller owns (transient `factory`, or lazy
 * with cache_instances off) is removed as soon as a get hands it out.
 *
 * The C callbacks capture this object and the CallbackGuard, never the LazyContainer.
 *
 * @internal
 */
final class ContainerInstances
{
    /** @var array<int,mixed> id => instance */
    private array $values = [];

    /** @var array<int,true> ids of instances the caller owns (handed out once, then forgotten) */
    private array $owned = [];

    private int $nextId = 1;

    /** Stores a new instance and returns its id (never 0: the C container rejects NULL). */
    public function add(mixed $value, bool $callerOwned): int
    {
        $id = $this->nextId++;
        $this->values[$id] = $value;
        if ($callerOwned) {
            $this->owned[$id] = true;
        }
        return $id;
    }

    /** The instance for an id the container handed back; a caller-owned one is forgotten. */
    public function take(int $id): mixed
    {
        if (!array_key_exists($id, $this->values)) {
            // Only reachable if the C container hands back an id it was never given.
            throw new \LogicException("LazyContainer: the native container returned an unknown instance id {$id}");
        }
        $value = $this->values[$id];
        if (isset($this->owned[$id])) {
            unset($this->values[$id], $this->owned[$id]);
        }
        return $value;
    }

    /**
     * Forgets an instance the container tore down and returns it.
     *
     * @return array{0:bool,1:mixed} whether it was known, the instance
     */
    public function remove(int $id): array
    {
        if (!array_key_exists($id, $this->values)) {
            return [false, null];
        }
        $value = $this->values[$id];
        unset($this->values[$id], $this->owned[$id]);
        return [true, $value];
    }

    /** How many instances are held (for tests). */
    public function count(): int
    {
        return count($this->values);
    }
}
