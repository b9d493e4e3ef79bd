<?php

// The seed's "Lazy Container" snippets for Memwarden\LazyContainer.
// Run: php bindings/php/examples/container_usage.php   (after cargo build --release -p memwarden-ffi)

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

use Memwarden\Exception\CycleException;
use Memwarden\LazyContainer;
use Memwarden\MemoryManager;

// Stand-ins for real service classes.
class DatabaseConnection
{
    public function __construct(public array $config = [])
    {
        echo "  (database connection created)\n";
    }
}
class UserService
{
    public function __construct(public DatabaseConnection $database)
    {
    }
}
class Logger
{
    public function __construct(public string $channel = 'app')
    {
    }
}
class Config
{
    public function __construct(private array $values = [])
    {
    }

    public function get(string $key): mixed
    {
        return $this->values[$key] ?? null;
    }
}
class EmailService
{
    public function __construct(public Logger $logger, public Config $config)
    {
    }
}
class SmsService
{
}
class RedisCache
{
    public function __construct(public array $config = [])
    {
    }
}
class StripeProcessor
{
    public function __construct(public Config $config)
    {
    }
}
class PayPalProcessor
{
    public function __construct(public Config $config)
    {
    }
}

$config = ['host' => 'localhost'];

echo "== Basic Usage\n";
$container = new LazyContainer();

// Register lazy services
$container->lazy('database', function () use ($config) {
    return new DatabaseConnection($config);
});

$container->lazy('userService', function ($container) {
    return new UserService($container->get('database'));
});

// Objects are created only when first accessed
echo "getting userService...\n";
$userService = $container->get('userService'); // Database connection created here
echo 'userService has a ' . get_class($userService->database) . "\n";

echo "== Service Registration\n";
$container->lazy('config', fn () => new Config(['payment.provider' => 'stripe']));

// Simple factory
$container->lazy('logger', function () {
    return new Logger('app');
});

// With dependencies
$container->lazy('emailService', function ($container) {
    return new EmailService(
        $container->get('logger'),
        $container->get('config')
    );
});

// Singleton services
$container->singleton('cache', function () use ($config) {
    return new RedisCache($config);
});
echo 'cache is a singleton: ' . var_export($container->get('cache') === $container->get('cache'), true) . "\n";

echo "== Configuration\n";
$configured = new LazyContainer([
    'auto_wire' => true,            // Automatic dependency injection
    'circular_detection' => true,   // Detect circular dependencies
    'cache_instances' => true,      // Cache created instances
    'debug_mode' => false,          // Debug dependency resolution
]);
// auto_wire: a class name as the factory; $database is resolved by its parameter name.
$configured->lazy('database', fn () => new DatabaseConnection());
$configured->lazy('users', UserService::class);
echo 'auto-wired: ' . get_class($configured->get('users')) . "\n";
$configured->lazy('a', fn ($c) => $c->get('b'));
$configured->lazy('b', fn ($c) => $c->get('a'));
try {
    $configured->get('a');
} catch (CycleException $e) {
    echo "cycle detected: {$e->getMessage()}\n";
}

echo "== Advanced Features\n";
// Conditional services
$container->lazy('paymentProcessor', function ($container) {
    $config = $container->get('config');

    if ($config->get('payment.provider') === 'stripe') {
        return new StripeProcessor($config);
    }

    return new PayPalProcessor($config);
});
echo 'payment processor: ' . get_class($container->get('paymentProcessor')) . "\n";

// Service aliases
$container->alias('db', 'database');
$container->alias('log', 'logger');
echo 'db is database: ' . var_export($container->get('db') === $container->get('database'), true) . "\n";

// Service tags
$container->lazy('smsService', fn () => new SmsService());
$container->tag('emailService', ['notification', 'communication']);
$container->tag('smsService', ['notification', 'communication']);

// Get all services with tag
$notificationServices = $container->getByTag('notification');
echo 'notification services: ' . implode(', ', array_map('get_class', $notificationServices)) . "\n";

// Scoped services: one per request
$container->scoped('request', fn () => new ArrayObject(['id' => uniqid()]), [
    'dispose' => fn () => print("  (request disposed)\n"),
]);
$scope = $container->createScope();
echo 'same request in a scope: ' . var_export($scope->get('request') === $scope->get('request'), true) . "\n";
$scope->dispose();

echo "== Performance Monitoring\n";
// Monitor container performance
$stats = $container->getStatistics();
echo "Services created: {$stats['created']}\n";
echo "Services cached: {$stats['cached']}\n";
echo "Average creation time: {$stats['avg_creation_time']}ms\n";
echo "Memory saved: {$stats['memory_saved']}MB\n";

echo "== With a MemoryManager\n";
$manager = new MemoryManager();
$released = new LazyContainer(['release_lazy_on_cleanup' => true]);
$released->lazy('buffer', fn () => new ArrayObject(range(1, 1000)), [
    'dispose' => fn () => print("  (lazy buffer released by cleanup)\n"),
]);
$released->get('buffer');
$manager->registerCleanupHook('services', $released);
$manager->forceGarbageCollection();

$container->dispose();
echo "done\n";
