<?php

// The seed's "Memory Pool" snippets for Memwarden\MemoryPool and Memwarden\TypedMemoryPool.
// Run: php bindings/php/examples/pool_usage.php   (after cargo build --release -p memwarden-ffi)

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

use Memwarden\Exception\ExhaustedException;
use Memwarden\MemoryManager;
use Memwarden\MemoryPool;
use Memwarden\TypedMemoryPool;

/** A stand-in for a real connection class (PDO would do as well). */
class DatabaseConnection
{
    private static int $count = 0;
    public int $id;
    private bool $inTransaction = false;
    private array $cache = [];

    public function __construct(public array $config = [])
    {
        $this->id = ++self::$count;
        echo "  (opened connection #{$this->id})\n";
    }

    public function query(string $sql): array
    {
        $this->inTransaction = true;
        $this->cache[$sql] = true;
        return [['id' => 1, 'name' => 'alice']];
    }

    public function rollback(): void
    {
        $this->inTransaction = false;
    }

    public function clearCache(): void
    {
        $this->cache = [];
    }

    public function isConnected(): bool
    {
        return true;
    }
}

$config = ['dsn' => 'sqlite::memory:'];

// ---- Basic Usage ------------------------------------------------------------------

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
echo "Connection #{$connection->id} found {$result[0]['name']}\n";

// Return to pool
$connectionPool->release($connection);

// The scoped form: acquire, call, release (also when the callback throws).
$names = $connectionPool->use(fn (DatabaseConnection $c) => array_column($c->query('SELECT name FROM users'), 'name'));
echo 'use(): ' . implode(', ', $names) . "\n";

// ---- Typed Pools ------------------------------------------------------------------

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

$pool = new DatabaseConnectionPool(['max_size' => 15]);

// ---- Pool Configuration -------------------------------------------------------------

$config = [
    'max_size' => 10,           // Maximum pool size
    'min_size' => 2,            // Minimum pool size
    'max_idle_time' => 300,     // Max idle time (seconds)
    'validation_interval' => 60, // Validation check interval
    'auto_cleanup' => true,     // Automatic cleanup
    'statistics' => true,        // Enable statistics
];
$configured = new MemoryPool($config + ['factory' => fn () => new DatabaseConnection()]);

// ---- Pool Statistics ----------------------------------------------------------------

$held = [$pool->acquire(), $pool->acquire(), $pool->acquire()];
$pool->release($held[0]);
$pool->release($pool->acquire()); // served by the one just released

$stats = $pool->getStatistics();
echo "Active: {$stats['active']}, Idle: {$stats['idle']}\n";
echo "Hit Rate: {$stats['hit_rate']}%\n";
echo "Created: {$stats['total_created']}, Destroyed: {$stats['total_destroyed']}\n";

// ---- Beyond the seed ----------------------------------------------------------------

// acquire() never waits in PHP (one thread: nobody could release meanwhile).
$small = new MemoryPool(['factory' => fn () => new \stdClass(), 'max_size' => 1, 'min_size' => 0]);
$only = $small->acquire();
try {
    $small->acquire();
} catch (ExhaustedException $e) {
    echo 'Exhausted: ' . $e->getMessage() . "\n";
}
$small->release($only);

// Leak detection: an object held longer than the threshold is reported with where it was acquired.
$watched = new MemoryPool([
    'factory' => fn () => new \stdClass(),
    'min_size' => 0,
    'leak_detection_threshold' => 0.05,
    'on_leak' => function (array $leak) {
        echo "Possible leak: held {$leak['held_ms']} ms, acquired at " . basename((string) $leak['acquired_at']) . "\n";
    },
]);
$forgotten = $watched->acquire();
usleep(80_000);
$watched->maintain(); // auto_cleanup also does this about once a second, on the next acquire()
$watched->release($forgotten);

// A manager's cleanup run trims the pool's idle objects to min_size.
$pool->release($held[1]);
$pool->release($held[2]);
$manager = new MemoryManager();
$manager->registerCleanupHook('db-pool', $pool);
$before = $pool->getStatistics()['idle'];
$manager->forceGarbageCollection();
echo "Idle before a collection: {$before}, after: {$pool->getStatistics()['idle']} (min_size 2)\n";

$pool->close();
echo 'Closed: ' . var_export($pool->isClosed(), true) . "\n";
