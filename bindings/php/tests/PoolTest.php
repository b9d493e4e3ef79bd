<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\Exception\ClosedException;
use Memwarden\Exception\ExhaustedException;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;
use Memwarden\Exception\MemwardenException;
use Memwarden\MemoryManager;
use Memwarden\MemoryPool;
use Memwarden\Tests\Fixtures\DatabaseConnection;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/Fixtures/DatabaseConnection.php';

final class PoolTest extends TestCase
{
    /** Counters of the hooks made by pool(). */
    private array $log = ['created' => 0, 'reset' => [], 'destroyed' => []];

    /** A pool of DatabaseConnections with counting hooks; $config overrides. */
    private function pool(array $config = []): MemoryPool
    {
        return new MemoryPool($config + [
            'factory' => function (): DatabaseConnection {
                $this->log['created']++;
                return new DatabaseConnection();
            },
            'reset' => function (DatabaseConnection $c): void {
                $this->log['reset'][] = $c->number;
                $c->rollback();
            },
            'destroy' => function (DatabaseConnection $c): void {
                $this->log['destroyed'][] = $c->number;
            },
            'auto_cleanup' => false,
        ]);
    }

    /** The counters of getStatistics() that a failed call must not change. */
    private static function counters(MemoryPool $pool): array
    {
        $s = $pool->getStatistics();
        unset($s['hit_rate'], $s['recent_leaks']);
        return $s;
    }

    public function testSeedBasicUsage(): void
    {
        $config = ['dsn' => 'sqlite::memory:'];

        // Create a pool for database connections
        $connectionPool = new MemoryPool([
            'factory' => function () use ($config) {
                return new DatabaseConnection($config);
            },
            'max_size' => 10,
            'min_size' => 2,
            'max_idle_time' => 300, // 5 minutes
        ]);

        // Get object from pool
        $connection = $connectionPool->acquire();

        // Use the connection
        $result = $connection->query('SELECT * FROM users');

        // Return to pool
        $connectionPool->release($connection);

        $this->assertInstanceOf(DatabaseConnection::class, $connection);
        $this->assertSame($config, $connection->config);
        $this->assertSame('alice', $result[0]['name']);
        $stats = $connectionPool->getStatistics();
        $this->assertSame(0, $stats['active']);
        $this->assertSame(2, $stats['idle']);
        $this->assertSame(2, $stats['total_created'], 'min_size objects were made up front; the acquire reused one');
        $this->assertSame(1, $stats['total_acquired']);
        $this->assertEquals(100.0, $stats['hit_rate']);
    }

    public function testSeedPoolConfigurationIsAccepted(): void
    {
        $config = [
            'max_size' => 10,           // Maximum pool size
            'min_size' => 2,            // Minimum pool size
            'max_idle_time' => 300,     // Max idle time (seconds)
            'validation_interval' => 60, // Validation check interval
            'auto_cleanup' => true,     // Automatic cleanup
            'statistics' => true,        // Enable statistics
        ];
        $pool = new MemoryPool($config + ['factory' => fn () => new DatabaseConnection()]);
        $stats = $pool->getStatistics();
        $this->assertSame(10, $stats['max_size']);
        $this->assertSame(2, $stats['min_size']);
        $this->assertTrue($stats['statistics']);
        // and the others the core knows
        $more = new MemoryPool([
            'factory' => fn () => new \stdClass(),
            'max_lifetime' => 3600,
            'acquire_timeout' => 0.5,
            'leak_detection_threshold' => 10,
        ]);
        $this->assertSame(2, $more->getStatistics()['idle']);
    }

    public function testSeedPoolStatistics(): void
    {
        $pool = $this->pool(['max_size' => 3, 'min_size' => 1]);
        $a = $pool->acquire();
        $b = $pool->acquire();
        $pool->release($a);

        $stats = $pool->getStatistics();
        $out = "Active: {$stats['active']}, Idle: {$stats['idle']}";
        $out .= "Hit Rate: {$stats['hit_rate']}%";
        $out .= "Created: {$stats['total_created']}, Destroyed: {$stats['total_destroyed']}";

        $this->assertSame('Active: 1, Idle: 1Hit Rate: 50%Created: 2, Destroyed: 0', $out);
        foreach (['active', 'idle', 'waiting', 'size', 'hit_rate', 'total_created', 'total_destroyed',
            'total_acquired', 'timeouts', 'validation_failures', 'leaks', 'recent_leaks'] as $key) {
            $this->assertArrayHasKey($key, $stats);
        }
        $pool->release($b);
    }

    public function testMinSizeIsPrefilledAndMaxSizeNeverExceeded(): void
    {
        $pool = $this->pool(['min_size' => 3, 'max_size' => 5]);
        $this->assertSame(3, $this->log['created']);
        $this->assertSame(3, $pool->getStatistics()['idle']);

        $held = [];
        for ($i = 0; $i < 5; $i++) {
            $held[] = $pool->acquire();
        }
        $this->assertCount(5, array_unique(array_map('spl_object_id', $held)));
        $before = self::counters($pool);
        try {
            $pool->acquire();
            $this->fail('a sixth acquire must fail');
        } catch (ExhaustedException $e) {
            $this->assertSame(5, $e->getCode());
            $this->assertStringContainsString('max_size', $e->getMessage());
            $this->assertStringContainsString('5', $e->getMessage());
        }
        $this->assertSame($before, self::counters($pool));
        $this->assertSame(5, $this->log['created']);
        $this->assertSame(5, $pool->getStatistics()['size']);

        $pool->release($held[2]);
        $this->assertSame($held[2], $pool->acquire(), 'a released object is served again');
    }

    public function testReleasedObjectIsReusedAndCountsAsHit(): void
    {
        $pool = $this->pool(['min_size' => 0, 'max_size' => 2]);
        $first = $pool->acquire();
        $first->query('SELECT 1');
        $pool->release($first);
        $second = $pool->acquire();
        $this->assertSame($first, $second);
        $this->assertSame(1, $this->log['created']);
        $stats = $pool->getStatistics();
        $this->assertEquals(50.0, $stats['hit_rate']);
        $this->assertSame(2, $stats['total_acquired']);
        $pool->release($second);
    }

    public function testDoubleAndForeignReleaseThrowAndChangeNothing(): void
    {
        $pool = $this->pool(['min_size' => 1, 'max_size' => 2]);
        $other = $this->pool(['min_size' => 1]);
        $a = $pool->acquire();
        $pool->release($a);
        $before = self::counters($pool);
        $resets = $this->log['reset'];

        foreach ([$a, new DatabaseConnection(), new \stdClass(), $other->acquire()] as $i => $bad) {
            try {
                $pool->release($bad);
                $this->fail("release #{$i} must fail");
            } catch (InvalidArgumentException $e) {
                $this->assertSame(2, $e->getCode());
                $this->assertStringContainsString('not in use from this pool', $e->getMessage());
            }
            $this->assertSame($before, self::counters($pool));
        }
        $this->assertSame($resets, $this->log['reset'], 'no reset for a failed release');
        $this->assertSame($a, $pool->acquire());
    }

    public function testResetRunsOnRelease(): void
    {
        $pool = $this->pool(['min_size' => 1]);
        $c = $pool->acquire();
        $c->query('UPDATE t SET x = 1');
        $this->assertTrue($c->inTransaction);
        $pool->release($c);
        $this->assertFalse($c->inTransaction);
        $this->assertSame([$c->number], $this->log['reset']);
    }

    public function testThrowingResetDestroysTheObjectAndRethrows(): void
    {
        $pool = $this->pool([
            'min_size' => 0,
            'reset' => function (DatabaseConnection $c): void {
                throw new \DomainException("cannot reset #{$c->number}");
            },
        ]);
        $c = $pool->acquire();
        try {
            $pool->release($c);
            $this->fail('the reset\'s exception must reach the caller');
        } catch (\DomainException $e) {
            $this->assertSame("cannot reset #{$c->number}", $e->getMessage());
        }
        $this->assertSame([$c->number], $this->log['destroyed'], 'the object was destroyed');
        $stats = $pool->getStatistics();
        $this->assertSame(0, $stats['size']);
        $this->assertSame(0, $stats['active']);
        $this->assertSame(1, $stats['total_destroyed']);
        // it is gone: releasing it again is a foreign release
        $this->expectException(InvalidArgumentException::class);
        try {
            $next = $pool->acquire();
            $this->assertNotSame($c, $next);
        } finally {
            $pool->release($c);
        }
    }

    public function testFailedValidationDestroysAndServesTheNextObject(): void
    {
        $checked = [];
        $pool = $this->pool([
            'min_size' => 3,
            'validation_interval' => 0,
            'validate' => function (DatabaseConnection $c) use (&$checked): bool {
                $checked[] = $c->number;
                return $c->isConnected();
            },
        ]);
        $objects = [$pool->acquire(), $pool->acquire(), $pool->acquire()];
        foreach ($objects as $o) {
            $pool->release($o);
        }
        $objects[2]->disconnect();
        $objects[1]->disconnect();
        usleep(20_000); // idle longer than validation_interval

        $got = $pool->acquire();
        $this->assertSame($objects[0], $got);
        $this->assertSame([$objects[2]->number, $objects[1]->number], $this->log['destroyed']);
        $this->assertSame([$objects[2]->number, $objects[1]->number, $objects[0]->number], array_slice($checked, -3));
        $stats = $pool->getStatistics();
        $this->assertSame(2, $stats['validation_failures']);
        $this->assertSame(1, $stats['size']);
        $pool->release($got);
    }

    public function testAllInvalidMeansANewObject(): void
    {
        $pool = $this->pool(['min_size' => 1, 'validation_interval' => 0, 'validate' => fn ($c) => false]);
        usleep(20_000);
        $c = $pool->acquire();
        $this->assertSame(2, $this->log['created']);
        $this->assertCount(1, $this->log['destroyed']);
        $this->assertSame(1, $pool->getStatistics()['validation_failures']);
        $pool->release($c);
    }

    public function testThrowingValidateDestroysAndRethrows(): void
    {
        $pool = $this->pool([
            'min_size' => 1,
            'validation_interval' => 0,
            'validate' => function ($c): bool {
                throw new \LogicException('validator broke');
            },
        ]);
        usleep(20_000);
        try {
            $pool->acquire();
            $this->fail('expected the validator\'s exception');
        } catch (\LogicException $e) {
            $this->assertSame('validator broke', $e->getMessage());
        }
        $this->assertCount(1, $this->log['destroyed']);
        $stats = $pool->getStatistics();
        $this->assertSame(0, $stats['size']);
        $this->assertSame(0, $stats['active']);
    }

    public function testThrowingFactoryReachesTheCallerAndThePoolStaysConsistent(): void
    {
        $fail = false;
        $pool = new MemoryPool([
            'min_size' => 0,
            'max_size' => 2,
            'auto_cleanup' => false,
            'factory' => function () use (&$fail) {
                if ($fail) {
                    throw new \RuntimeException('database is down');
                }
                return new DatabaseConnection();
            },
        ]);
        $a = $pool->acquire();
        $fail = true;
        try {
            $pool->acquire();
            $this->fail('expected the factory\'s exception');
        } catch (\RuntimeException $e) {
            $this->assertNotInstanceOf(MemwardenException::class, $e);
            $this->assertSame('database is down', $e->getMessage());
        }
        $stats = $pool->getStatistics();
        $this->assertSame(1, $stats['size']);
        $this->assertSame(1, $stats['active']);
        $fail = false;
        $b = $pool->acquire();
        $this->assertNotSame($a, $b);
        $this->assertSame(2, $pool->getStatistics()['active']);
        $pool->release($a);
        $pool->release($b);
    }

    public function testThrowingFactoryDuringPrefillFailsTheConstructor(): void
    {
        $this->expectException(\RuntimeException::class);
        $this->expectExceptionMessage('no connections today');
        new MemoryPool([
            'min_size' => 2,
            'factory' => function () {
                throw new \RuntimeException('no connections today');
            },
        ]);
    }

    public function testFactoryReturningANonObjectIsAClearError(): void
    {
        try {
            new MemoryPool(['factory' => fn () => 'a connection string']);
            $this->fail('a string is not a poolable object');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString('factory must return an object, got string', $e->getMessage());
        }
        $pool = new MemoryPool(['min_size' => 0, 'factory' => fn () => null]);
        $this->expectException(InvalidArgumentException::class);
        $this->expectExceptionMessage('got null');
        $pool->acquire();
    }

    public function testFactoryReturningTheSameObjectTwiceIsRejected(): void
    {
        $one = new \stdClass();
        $pool = new MemoryPool(['min_size' => 0, 'factory' => fn () => $one]);
        $this->assertSame($one, $pool->acquire());
        try {
            $pool->acquire();
            $this->fail('the same object twice must be rejected');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString('already in the pool', $e->getMessage());
        }
        $this->assertSame(1, $pool->getStatistics()['size']);
        $pool->release($one);
    }

    public function testFactoryMayTakeThePool(): void
    {
        $seen = [];
        $pool = new MemoryPool([
            'min_size' => 1,
            'factory' => function (MemoryPool $p) use (&$seen) {
                $seen[] = $p;
                return new \stdClass();
            },
        ]);
        $this->assertSame([$pool], $seen);
    }

    public function testCloseStopsAcquiresAndDestroysHeldObjectsOnRelease(): void
    {
        $pool = $this->pool(['min_size' => 2, 'max_size' => 4]);
        $held = $pool->acquire();
        $this->assertFalse($pool->isClosed());
        $pool->close();
        $this->assertTrue($pool->isClosed());
        $this->assertCount(1, $this->log['destroyed'], 'the idle object went at once');
        try {
            $pool->acquire();
            $this->fail('a closed pool hands out nothing');
        } catch (ClosedException $e) {
            $this->assertSame(11, $e->getCode());
        }
        $this->assertSame(1, $pool->getStatistics()['active']);
        $pool->release($held);
        $this->assertContains($held->number, $this->log['destroyed']);
        $stats = $pool->getStatistics();
        $this->assertSame(0, $stats['size']);
        $this->assertTrue($stats['closed']);
        $pool->close(); // idempotent
        $this->expectException(ClosedException::class);
        $pool->use(fn ($c) => $c);
    }

    public function testLeakDetectionReportsWhereTheObjectWasAcquired(): void
    {
        $leaks = [];
        $pool = $this->pool([
            'min_size' => 0,
            'leak_detection_threshold' => 0.05,
            'on_leak' => function (array $report) use (&$leaks): void {
                $leaks[] = $report;
            },
        ]);
        $line = __LINE__ + 1;
        $kept = $pool->acquire();
        $pool->release($pool->acquire());
        usleep(80_000);
        $pool->maintain();

        $this->assertCount(1, $leaks);
        $this->assertSame(__FILE__ . ':' . $line, $leaks[0]['acquired_at']);
        $this->assertGreaterThanOrEqual(50, $leaks[0]['held_ms']);
        $this->assertArrayHasKey('id', $leaks[0]);
        $stats = $pool->getStatistics();
        $this->assertSame(1, $stats['leaks']);
        $this->assertSame(__FILE__ . ':' . $line, $stats['recent_leaks'][0]['acquired_at']);

        $pool->maintain();
        $this->assertCount(1, $leaks, 'a leak is reported once');
        $pool->release($kept);
    }

    public function testUseLabelsWithItsCaller(): void
    {
        $leaks = [];
        $pool = new MemoryPool([
            'factory' => fn () => new \stdClass(),
            'leak_detection_threshold' => 0.01,
            'on_leak' => function (array $r) use (&$leaks): void {
                $leaks[] = $r['acquired_at'];
            },
        ]);
        $line = __LINE__ + 1;
        $pool->use(function ($o) use ($pool): void {
            usleep(30_000);
            $pool->maintain();
        });
        $this->assertSame([__FILE__ . ':' . $line], $leaks);
    }

    public function testWithoutLeakDetectionThereIsNoLabel(): void
    {
        $pool = $this->pool(['min_size' => 0]);
        $pool->acquire();
        $pool->maintain();
        $this->assertSame([], $pool->getStatistics()['recent_leaks']);
    }

    public function testStatisticsOff(): void
    {
        $pool = $this->pool(['statistics' => false, 'min_size' => 1]);
        $a = $pool->acquire();
        $b = $pool->acquire();
        $pool->release($a);
        $stats = $pool->getStatistics();
        $this->assertFalse($stats['statistics']);
        $this->assertSame(0, $stats['total_created']);
        $this->assertSame(0, $stats['total_acquired']);
        $this->assertEquals(0, $stats['hit_rate']);
        $this->assertSame(1, $stats['active'], 'sizes are always known');
        $this->assertSame(1, $stats['idle']);
        $this->assertSame(2, $stats['size']);
        $pool->release($b);
    }

    public function testManagerCollectionTrimsToMinSizeAndEmergencyEmptiesIdle(): void
    {
        $pool = $this->pool(['min_size' => 1, 'max_size' => 6]);
        $objects = [];
        for ($i = 0; $i < 5; $i++) {
            $objects[] = $pool->acquire();
        }
        foreach ($objects as $o) {
            $pool->release($o);
        }
        $this->assertSame(5, $pool->getStatistics()['idle']);

        $manager = new MemoryManager();
        $manager->registerCleanupHook('db-pool', $pool, 5);
        $report = $manager->forceGarbageCollection();
        $this->assertContains('db-pool', array_column($report['hooks'], 'name'));
        $stats = $pool->getStatistics();
        $this->assertSame(1, $stats['idle']);
        $this->assertSame(4, $stats['total_destroyed']);
        $this->assertCount(4, $this->log['destroyed']);

        $manager->emergencyCleanup();
        $this->assertSame(0, $pool->getStatistics()['idle']);
        $this->assertCount(5, $this->log['destroyed']);

        $this->assertTrue($manager->unregisterCleanupHook('db-pool'));
        $pool->release($pool->acquire());
        $manager->forceGarbageCollection();
        $this->assertSame(1, $pool->getStatistics()['idle']);
    }

    public function testAutomaticCleanupOfAManagerCheckTrimsThePool(): void
    {
        $pool = $this->pool(['min_size' => 1, 'max_size' => 4]);
        $held = [$pool->acquire(), $pool->acquire(), $pool->acquire()];
        foreach ($held as $o) {
            $pool->release($o);
        }
        $manager = new MemoryManager(['php_readings' => false, 'host_gc' => false, 'auto_gc_threshold' => 0.8]);
        $manager->registerCleanupHook('pool', $pool);
        $manager->updateHostReading(85_000, null, 100_000);
        $this->assertSame('warning', $manager->getMemoryState());
        $this->assertSame(1, $pool->getStatistics()['idle']);
    }

    public function testADestroyHookExceptionDuringAManagerRunReachesTheCaller(): void
    {
        $pool = $this->pool([
            'min_size' => 0,
            'destroy' => function ($c): void {
                throw new \UnexpectedValueException("close #{$c->number} failed");
            },
        ]);
        $pool->release($pool->acquire());
        $manager = new MemoryManager();
        $manager->registerCleanupHook('pool', $pool);
        try {
            $manager->forceGarbageCollection();
            $this->fail('expected the destroy hook\'s exception');
        } catch (\UnexpectedValueException $e) {
            $this->assertStringContainsString('failed', $e->getMessage());
        }
        $this->assertSame(0, $pool->getStatistics()['size']);
        $manager->forceGarbageCollection(); // nothing pending any more
    }

    public function testUseReturnsTheResultAndReleasesAlsoOnException(): void
    {
        $pool = $this->pool(['min_size' => 1]);
        $rows = $pool->use(fn (DatabaseConnection $c) => $c->query('SELECT * FROM users'));
        $this->assertSame('alice', $rows[0]['name']);
        $this->assertSame(0, $pool->getStatistics()['active']);

        try {
            $pool->use(function (DatabaseConnection $c): void {
                $c->query('BEGIN');
                throw new \OutOfBoundsException('boom');
            });
            $this->fail('use() must rethrow');
        } catch (\OutOfBoundsException $e) {
            $this->assertSame('boom', $e->getMessage());
        }
        $stats = $pool->getStatistics();
        $this->assertSame(0, $stats['active']);
        $this->assertSame(1, $stats['idle']);
        $this->assertCount(2, $this->log['reset'], 'reset ran after both uses');
    }

    public function testUseReportsTheCallbacksExceptionOverAFailingReset(): void
    {
        $pool = $this->pool(['reset' => function (): void {
            throw new \DomainException('reset failed');
        }]);
        $this->expectExceptionObject(new \OutOfRangeException('mine'));
        $pool->use(function (): void {
            throw new \OutOfRangeException('mine');
        });
    }

    public function testMaintainEvictsIdleObjectsDownToMinSize(): void
    {
        $pool = $this->pool(['min_size' => 1, 'max_size' => 4, 'max_idle_time' => 0.03]);
        $held = [$pool->acquire(), $pool->acquire(), $pool->acquire()];
        foreach ($held as $o) {
            $pool->release($o);
        }
        usleep(60_000);
        $pool->maintain();
        $stats = $pool->getStatistics();
        $this->assertSame(1, $stats['idle']);
        $this->assertSame(2, $stats['total_destroyed']);
    }

    public function testAutoCleanupRunsOnTheNextAcquireAndItsHookFailuresDoNotFailIt(): void
    {
        $failDestroy = false;
        $pool = $this->pool([
            'auto_cleanup' => true,
            'min_size' => 1,
            'max_size' => 4,
            'max_idle_time' => 0.05,
            'destroy' => function (DatabaseConnection $c) use (&$failDestroy): void {
                $this->log['destroyed'][] = $c->number;
                if ($failDestroy) {
                    throw new \RuntimeException('close failed');
                }
            },
        ]);
        $held = [$pool->acquire(), $pool->acquire(), $pool->acquire()];
        foreach ($held as $o) {
            $pool->release($o);
        }
        $failDestroy = true;
        usleep(1_200_000); // the core asks for maintenance about once a second
        $this->assertSame(3, $pool->getStatistics()['idle'], 'nothing ran on another thread');
        $got = $pool->acquire(); // maintenance first: evicts 2 idle objects (their hook throws)
        $this->assertInstanceOf(DatabaseConnection::class, $got);
        $this->assertCount(2, $this->log['destroyed']);
        $stats = $pool->getStatistics();
        $this->assertSame(1, $stats['size']);
        $this->assertSame(1, $stats['active']);
        $pool->release($got);
    }

    public function testTrim(): void
    {
        $pool = $this->pool(['min_size' => 3, 'max_size' => 5]);
        $this->assertSame(2, $pool->trim(1));
        $this->assertSame(0, $pool->trim(1));
        $this->assertSame(1, $pool->getStatistics()['idle']);
        $this->expectException(InvalidArgumentException::class);
        $pool->trim(-1);
    }

    public function testMaintainRefillsToMinSize(): void
    {
        $pool = $this->pool(['min_size' => 2]);
        $pool->trim(0);
        $this->assertSame(0, $pool->getStatistics()['size']);
        $pool->maintain();
        $this->assertSame(2, $pool->getStatistics()['idle']);
    }

    public function testAnUnreferencedPoolIsFreedAndDestroysItsIdleObjects(): void
    {
        $destroyed = 0;
        $pool = new MemoryPool([
            'factory' => fn () => new \stdClass(),
            'destroy' => function () use (&$destroyed): void {
                $destroyed++;
            },
            'min_size' => 3,
        ]);
        $held = $pool->acquire();
        $weak = \WeakReference::create($pool);
        unset($pool);
        $this->assertNull($weak->get(), 'the C callbacks do not keep the pool alive');
        $this->assertSame(2, $destroyed, 'idle objects destroyed; the held one is forgotten');
        $this->assertInstanceOf(\stdClass::class, $held);
    }

    /** @return array<string,array{0:array<string,mixed>,1:list<string>}> */
    public static function badConfigs(): array
    {
        $f = fn () => new \stdClass();
        return [
            'max_size 0' => [['factory' => $f, 'max_size' => 0], ["'max_size'", '0']],
            'min_size above max_size' => [['factory' => $f, 'max_size' => 2, 'min_size' => 3], ['min_size (3)', 'max_size (2)']],
            'negative idle time' => [['factory' => $f, 'max_idle_time' => -1], ["'max_idle_time'", '-1']],
            'negative leak threshold' => [['factory' => $f, 'leak_detection_threshold' => -0.5], ["'leak_detection_threshold'", '-0.5']],
            'size not a number' => [['factory' => $f, 'max_size' => 'ten'], ["'max_size'", 'ten']],
            'unknown key' => [['factory' => $f, 'max_sise' => 3], ["unknown key 'max_sise'", "did you mean 'max_size'?"]],
            'NaN' => [['factory' => $f, 'max_idle_time' => NAN], ["'max_idle_time'", 'NAN']],
            'missing factory' => [['max_size' => 3], ["missing 'factory'"]],
            'misspelt factory' => [['factroy' => $f], ["missing 'factory'", "did you mean 'factory'?"]],
            'factory not callable' => [['factory' => 'no_such_function_here'], ["'factory' must be callable", 'string']],
            'reset not callable' => [['factory' => $f, 'reset' => 42], ["'reset' must be callable", 'int']],
            'on_leak not callable' => [['factory' => $f, 'on_leak' => true], ["'on_leak' must be callable", 'bool']],
        ];
    }

    /**
     * @dataProvider badConfigs
     * @param array<string,mixed> $config
     * @param list<string> $needles
     */
    public function testBadConfigNamesKeyAndValue(array $config, array $needles): void
    {
        try {
            new MemoryPool($config);
            $this->fail('expected InvalidConfigException');
        } catch (InvalidConfigException $e) {
            $this->assertSame(3, $e->getCode());
            foreach ($needles as $needle) {
                $this->assertStringContainsString($needle, $e->getMessage());
            }
        }
    }
}
