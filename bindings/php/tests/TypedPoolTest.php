<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\Exception\ExhaustedException;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;
use Memwarden\MemoryManager;
use Memwarden\MemoryPool;
use Memwarden\Tests\Fixtures\DatabaseConnection;
use Memwarden\TypedMemoryPool;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/Fixtures/DatabaseConnection.php';

// The seed's "Typed Pools" class, as written there.
class DatabaseConnectionPool extends TypedMemoryPool
{
    protected function createObject(): DatabaseConnection
    {
        return new DatabaseConnection($this->config);
    }

    protected function resetObject($object): void
    {
        $object->rollback(); // Reset state
        $object->clearCache();
    }

    protected function validateObject($object): bool
    {
        return $object->isConnected();
    }
}

/** Only createObject(): the default hooks. */
class PlainObjectPool extends TypedMemoryPool
{
    public int $made = 0;

    protected function createObject(): \ArrayObject
    {
        $this->made++;
        return new \ArrayObject();
    }
}

/** With destroyObject() and a factory that can be told to fail or to misbehave. */
class RecordingPool extends TypedMemoryPool
{
    /** @var list<string> */
    public array $events = [];
    public mixed $next = null;

    protected function createObject()
    {
        if ($this->next instanceof \Throwable) {
            throw $this->next;
        }
        if ($this->next !== null) {
            return $this->next;
        }
        $c = new DatabaseConnection();
        $this->events[] = "create {$c->number}";
        return $c;
    }

    protected function resetObject($object): void
    {
        $this->events[] = "reset {$object->number}";
        if (!$object->isConnected()) {
            throw new \RuntimeException("#{$object->number} is disconnected");
        }
    }

    protected function destroyObject($object): void
    {
        $this->events[] = "destroy {$object->number}";
    }
}

final class TypedPoolTest extends TestCase
{
    public function testSeedTypedPool(): void
    {
        $pool = new DatabaseConnectionPool(['max_size' => 15]);

        $this->assertInstanceOf(MemoryPool::class, $pool);
        $connection = $pool->acquire();
        $this->assertInstanceOf(DatabaseConnection::class, $connection);
        $this->assertSame(['max_size' => 15], $connection->config, 'createObject() reads $this->config');
        $connection->query('SELECT * FROM users');
        $this->assertNotSame([], $connection->cache);
        $pool->release($connection);
        $this->assertSame(1, $connection->rollbacks, 'resetObject() ran on release');
        $this->assertSame([], $connection->cache);

        $stats = $pool->getStatistics();
        $this->assertSame(15, $stats['max_size']);
        $this->assertSame(2, $stats['min_size']);
        $this->assertSame(2, $stats['idle']);
    }

    public function testSeedPoolStatisticsOnATypedPool(): void
    {
        $pool = new DatabaseConnectionPool(['max_size' => 15, 'min_size' => 0]);
        $pool->release($pool->acquire());
        $pool->release($pool->acquire());

        $stats = $pool->getStatistics();
        $lines = [
            "Active: {$stats['active']}, Idle: {$stats['idle']}",
            "Hit Rate: {$stats['hit_rate']}%",
            "Created: {$stats['total_created']}, Destroyed: {$stats['total_destroyed']}",
        ];
        $this->assertSame(['Active: 0, Idle: 1', 'Hit Rate: 50%', 'Created: 1, Destroyed: 0'], $lines);
    }

    public function testValidateObjectDropsDisconnectedConnections(): void
    {
        $pool = new DatabaseConnectionPool(['min_size' => 2, 'validation_interval' => 0]);
        $a = $pool->acquire();
        $b = $pool->acquire();
        $pool->release($a);
        $pool->release($b);
        $b->disconnect();
        usleep(20_000);
        $this->assertSame($a, $pool->acquire(), 'the disconnected one was validated away');
        $stats = $pool->getStatistics();
        $this->assertSame(1, $stats['validation_failures']);
        $this->assertSame(1, $stats['total_destroyed']);
    }

    public function testDefaultHooksKeepObjectsAsTheyAre(): void
    {
        $pool = new PlainObjectPool(['min_size' => 1, 'max_size' => 1, 'validation_interval' => 0]);
        $this->assertSame(1, $pool->made);
        $o = $pool->acquire();
        $o['kept'] = true;
        $pool->release($o);
        usleep(20_000);
        $again = $pool->acquire();
        $this->assertSame($o, $again);
        $this->assertTrue($again['kept'], 'no reset by default');
        $this->assertSame(0, $pool->getStatistics()['validation_failures']);
        $this->expectException(ExhaustedException::class);
        $pool->acquire();
    }

    public function testThrowingResetObjectDestroysTheObject(): void
    {
        $pool = new RecordingPool(['min_size' => 0]);
        $c = $pool->acquire();
        $c->disconnect();
        try {
            $pool->release($c);
            $this->fail('resetObject()\'s exception must reach the caller');
        } catch (\RuntimeException $e) {
            $this->assertSame("#{$c->number} is disconnected", $e->getMessage());
        }
        $this->assertSame(["create {$c->number}", "reset {$c->number}", "destroy {$c->number}"], $pool->events);
        $this->assertSame(0, $pool->getStatistics()['size']);
        $this->expectException(InvalidArgumentException::class);
        $pool->release($c);
    }

    public function testThrowingCreateObjectReachesTheCaller(): void
    {
        $pool = new RecordingPool(['min_size' => 0, 'max_size' => 2]);
        $pool->next = new \OverflowException('no more connections');
        try {
            $pool->acquire();
            $this->fail('expected createObject()\'s exception');
        } catch (\OverflowException $e) {
            $this->assertSame('no more connections', $e->getMessage());
        }
        $pool->next = 'not an object';
        try {
            $pool->acquire();
            $this->fail('a string is not a poolable object');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString('got string', $e->getMessage());
        }
        $this->assertSame(0, $pool->getStatistics()['size']);
        $pool->next = null;
        $pool->release($pool->acquire());
        $this->assertSame(1, $pool->getStatistics()['idle']);
    }

    public function testDestroyObjectRunsOnCloseTrimAndFree(): void
    {
        $pool = new RecordingPool(['min_size' => 3]);
        $pool->trim(2);
        $this->assertSame(['create 1', 'create 2', 'create 3', 'destroy 1'], self::renumber($pool->events));
        $held = $pool->acquire();
        $pool->close();
        $pool->release($held);
        $destroyed = array_filter(self::renumber($pool->events), fn ($e) => str_starts_with($e, 'destroy'));
        $this->assertCount(3, $destroyed);

        $events = new \ArrayObject();
        $other = new class (['min_size' => 2]) extends TypedMemoryPool {
            public ?\ArrayObject $log = null;

            protected function createObject()
            {
                return new \stdClass();
            }

            protected function destroyObject($object): void
            {
                $this->log?->append('destroy');
            }
        };
        $other->log = $events;
        unset($other);
        $this->assertSame(['destroy', 'destroy'], $events->getArrayCopy(), 'idle objects destroyed when the pool is freed');
    }

    public function testATypedPoolRegistersWithAManager(): void
    {
        $pool = new RecordingPool(['min_size' => 1, 'max_size' => 4]);
        $objects = [$pool->acquire(), $pool->acquire(), $pool->acquire()];
        foreach ($objects as $o) {
            $pool->release($o);
        }
        $manager = new MemoryManager();
        $manager->registerCleanupHook('connections', $pool);
        $manager->forceGarbageCollection();
        $this->assertSame(1, $pool->getStatistics()['idle']);
    }

    public function testHooksAreNotConfigKeysOfATypedPool(): void
    {
        foreach (['factory' => 'createObject()', 'reset' => 'resetObject()', 'validate' => 'validateObject()', 'destroy' => 'destroyObject()'] as $key => $method) {
            try {
                new PlainObjectPool([$key => fn () => new \stdClass()]);
                $this->fail("'{$key}' must be rejected");
            } catch (InvalidConfigException $e) {
                $this->assertStringContainsString("'{$key}'", $e->getMessage());
                $this->assertStringContainsString($method, $e->getMessage());
            }
        }
        $this->expectException(InvalidConfigException::class);
        $this->expectExceptionMessage("did you mean 'min_size'?");
        new PlainObjectPool(['min_sise' => 1]);
    }

    public function testAnUnreferencedTypedPoolIsFreed(): void
    {
        $pool = new PlainObjectPool();
        $weak = \WeakReference::create($pool);
        unset($pool);
        $this->assertNull($weak->get());
    }

    /** DatabaseConnection numbers are global: make them 1, 2, ... in order of appearance. */
    private static function renumber(array $events): array
    {
        $map = [];
        return array_map(static function (string $e) use (&$map): string {
            [$verb, $n] = explode(' ', $e);
            $map[$n] ??= count($map) + 1;
            return "{$verb} {$map[$n]}";
        }, $events);
    }
}
