<?php

declare(strict_types=1);

namespace Memwarden;

use Memwarden\Exception\InvalidConfigException;

/**
 * A pool whose objects are made, reset, validated and destroyed by the subclass's methods
 * (the seed's "Typed Pools"):
 *
 * ```php
 * class DatabaseConnectionPool extends TypedMemoryPool
 * {
 *     protected function createObject(): DatabaseConnection
 *     {
 *         return new DatabaseConnection($this->config);
 *     }
 *     protected function resetObject($object): void { $object->rollback(); $object->clearCache(); }
 *     protected function validateObject($object): bool { return $object->isConnected(); }
 * }
 * $pool = new DatabaseConnectionPool(['max_size' => 15]);
 * ```
 *
 * The config takes MemoryPool's keys (max_size, min_size, ...) and on_leak; `factory`,
 * `reset`, `validate` and `destroy` are the methods here. `$this->config` is the array given
 * to the constructor; it is set before the first min_size objects are created.
 * resetObject() and validateObject() run only when the subclass overrides them.
 */
abstract class TypedMemoryPool extends MemoryPool
{
    /** @param array<string,mixed> $config */
    public function __construct(array $config = [])
    {
        foreach (['factory' => 'createObject()', 'reset' => 'resetObject()', 'validate' => 'validateObject()', 'destroy' => 'destroyObject()'] as $key => $method) {
            if (array_key_exists($key, $config)) {
                throw new InvalidConfigException(
                    "TypedMemoryPool config: '{$key}' is not accepted; override {$method} instead",
                    3
                );
            }
        }
        $this->config = $config;

        // Weak, so that the C callbacks (kept by PHP's FFI until the end of the request) do
        // not keep the pool alive.
        $self = \WeakReference::create($this);
        $pool = static function () use ($self): self {
            $pool = $self->get();
            if ($pool === null) {
                throw new \LogicException('TypedMemoryPool: the pool is gone');
            }
            return $pool;
        };
        $config['factory'] = static function () use ($pool): mixed {
            return $pool()->createObject();
        };
        if ($this->overrides('resetObject')) {
            $config['reset'] = static function ($object) use ($pool): void {
                $pool()->resetObject($object);
            };
        }
        if ($this->overrides('validateObject')) {
            $config['validate'] = static function ($object) use ($pool): bool {
                return $pool()->validateObject($object);
            };
        }
        if ($this->overrides('destroyObject')) {
            $config['destroy'] = static function ($object) use ($self): void {
                // Objects dropped while the pool itself is freed are not handed to it.
                $self->get()?->destroyObject($object);
            };
        }
        parent::__construct($config);
    }

    /** Creates a new object for the pool. */
    abstract protected function createObject();

    /** Called on release, before the object goes back to the pool; throw to destroy it instead. */
    protected function resetObject($object): void
    {
    }

    /** Called before an object idle longer than validation_interval is handed out; false destroys it. */
    protected function validateObject($object): bool
    {
        return true;
    }

    /** Called when the pool drops an object (eviction, trim, close, failed reset or validation). */
    protected function destroyObject($object): void
    {
    }

    private function overrides(string $method): bool
    {
        return (new \ReflectionMethod($this, $method))->getDeclaringClass()->getName() !== self::class;
    }
}
