<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\ContainerScope;
use Memwarden\Exception\CallbackException;
use Memwarden\Exception\ClosedException;
use Memwarden\Exception\CycleException;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;
use Memwarden\Exception\MemwardenException;
use Memwarden\Exception\NotFoundException;
use Memwarden\LazyContainer;
use Memwarden\MemoryManager;
use Memwarden\Tests\Fixtures\AppConfig;
use Memwarden\Tests\Fixtures\DatabaseConnection;
use Memwarden\Tests\Fixtures\EmailService;
use Memwarden\Tests\Fixtures\Logger;
use Memwarden\Tests\Fixtures\Mailer;
use Memwarden\Tests\Fixtures\NeedsMissing;
use Memwarden\Tests\Fixtures\PayPalProcessor;
use Memwarden\Tests\Fixtures\RedisCache;
use Memwarden\Tests\Fixtures\SmsService;
use Memwarden\Tests\Fixtures\StripeProcessor;
use Memwarden\Tests\Fixtures\UserService;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/Fixtures/DatabaseConnection.php';
require_once __DIR__ . '/Fixtures/ContainerServices.php';

final class ContainerTest extends TestCase
{
    // ---- the seed's snippets ----------------------------------------------------

    public function testSeedBasicUsage(): void
    {
        $config = ['host' => 'localhost'];
        $container = new LazyContainer();
        $made = [];
        $container->lazy('database', function () use ($config, &$made) {
            $made[] = 'database';
            return new DatabaseConnection($config);
        });
        $container->lazy('userService', function ($container) use (&$made) {
            $made[] = 'userService';
            return new UserService($container->get('database'));
        });
        $this->assertSame([], $made, 'nothing is created at registration');

        $userService = $container->get('userService'); // Database connection created here
        $this->assertInstanceOf(UserService::class, $userService);
        $this->assertSame(['userService', 'database'], $made);
        $this->assertSame($container->get('database'), $userService->database);
        $this->assertSame($userService, $container->get('userService'));
        $this->assertSame(['userService', 'database'], $made, 'created on first get only');
    }

    public function testSeedServiceRegistration(): void
    {
        $config = [];
        $container = new LazyContainer();
        $container->lazy('config', fn () => new AppConfig(['app' => 'demo']));
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
        RedisCache::$made = 0;
        $container->singleton('cache', function () use ($config) {
            return new RedisCache($config);
        });

        $email = $container->get('emailService');
        $this->assertSame('app', $email->logger->channel);
        $this->assertSame('demo', $email->config->get('app'));
        $this->assertSame($container->get('cache'), $container->get('cache'));
        $this->assertSame(1, RedisCache::$made);
    }

    public function testSeedConfiguration(): void
    {
        $container = new LazyContainer([
            'auto_wire' => true,            // Automatic dependency injection
            'circular_detection' => true,   // Detect circular dependencies
            'cache_instances' => true,      // Cache created instances
            'debug_mode' => false,          // Debug dependency resolution
        ]);
        $container->lazy('logger', fn () => new Logger());
        $this->assertSame($container->get('logger'), $container->get('logger'));

        $withRelease = new LazyContainer(['release_lazy_on_cleanup' => true, 'debug_mode' => true]);
        $this->assertIsArray($withRelease->getStatistics());
    }

    public function testUnknownConfigKeyIsRejected(): void
    {
        try {
            new LazyContainer(['cache_instance' => true]);
            $this->fail('expected InvalidConfigException');
        } catch (InvalidConfigException $e) {
            $this->assertStringContainsString('cache_instance', $e->getMessage());
        }
    }

    public function testSeedAdvancedFeatures(): void
    {
        $container = new LazyContainer();
        $container->lazy('config', fn () => new AppConfig(['payment.provider' => 'stripe']));
        $container->lazy('database', fn () => new DatabaseConnection());
        $container->lazy('logger', fn () => new Logger());
        $container->lazy('emailService', fn ($c) => new EmailService($c->get('logger'), $c->get('config')));
        $container->lazy('smsService', fn () => new SmsService());

        // Conditional services
        $container->lazy('paymentProcessor', function ($container) {
            $config = $container->get('config');
            if ($config->get('payment.provider') === 'stripe') {
                return new StripeProcessor($config);
            }
            return new PayPalProcessor($config);
        });
        $this->assertInstanceOf(StripeProcessor::class, $container->get('paymentProcessor'));

        // Service aliases
        $container->alias('db', 'database');
        $container->alias('log', 'logger');
        $this->assertSame($container->get('database'), $container->get('db'));
        $this->assertSame($container->get('logger'), $container->get('log'));
        $this->assertTrue($container->has('db'));

        // Service tags
        $container->tag('emailService', ['notification', 'communication']);
        $container->tag('smsService', ['notification', 'communication']);

        // Get all services with tag
        $notificationServices = $container->getByTag('notification');
        $this->assertCount(2, $notificationServices);
        $this->assertInstanceOf(EmailService::class, $notificationServices[0]);
        $this->assertInstanceOf(SmsService::class, $notificationServices[1]);
        $this->assertSame($notificationServices, $container->getByTag('communication'));
        $this->assertSame([], $container->getByTag('nothing-tagged'));
    }

    public function testSeedPerformanceMonitoring(): void
    {
        $container = new LazyContainer();
        $container->lazy('logger', fn () => new Logger());
        $container->lazy('unused', fn () => new Logger());
        $container->get('logger');
        $container->get('logger');

        // Monitor container performance
        $stats = $container->getStatistics();
        $out = "Services created: {$stats['created']}\n"
            . "Services cached: {$stats['cached']}\n"
            . "Average creation time: {$stats['avg_creation_time']}ms\n"
            . "Memory saved: {$stats['memory_saved']}MB\n";
        $this->assertStringContainsString('Services created: 1', $out);
        $this->assertSame(1, $stats['created']);
        $this->assertSame(1, $stats['cached']);
        $this->assertGreaterThanOrEqual(0, $stats['avg_creation_time']);
        $this->assertGreaterThanOrEqual(0, $stats['memory_saved']);
    }

    // ---- lifetimes ----------------------------------------------------------------

    public function testLazyCreatesOnFirstGetOnly(): void
    {
        $container = new LazyContainer();
        $calls = 0;
        $container->lazy('svc', function () use (&$calls) {
            $calls++;
            return new \stdClass();
        });
        $this->assertTrue($container->has('svc'));
        $this->assertSame(0, $calls);
        $first = $container->get('svc');
        $this->assertSame($first, $container->get('svc'));
        $this->assertSame(1, $calls);
    }

    public function testLazyWithoutCacheInstancesCreatesEachTime(): void
    {
        $container = new LazyContainer(['cache_instances' => false]);
        $container->lazy('svc', fn () => new \stdClass());
        $this->assertNotSame($container->get('svc'), $container->get('svc'));
    }

    public function testSingletonIdentity(): void
    {
        $container = new LazyContainer();
        $container->singleton('one', fn () => new \stdClass());
        $this->assertSame($container->get('one'), $container->get('one'));
    }

    public function testTransientIsNewEachTime(): void
    {
        $container = new LazyContainer();
        $calls = 0;
        $container->factory('fresh', function () use (&$calls) {
            $calls++;
            return new \stdClass();
        });
        $a = $container->get('fresh');
        $b = $container->get('fresh');
        $this->assertNotSame($a, $b);
        $this->assertSame(2, $calls);
    }

    public function testNonObjectValuesAreServices(): void
    {
        $container = new LazyContainer();
        $container->lazy('settings', fn () => ['debug' => true]);
        $container->lazy('name', fn () => 'memwarden');
        $this->assertSame(['debug' => true], $container->get('settings'));
        $this->assertSame('memwarden', $container->get('name'));
    }

    public function testScopedPerScopeAndDisposedInReverseOrder(): void
    {
        $container = new LazyContainer();
        $disposed = [];
        $dispose = function (\stdClass $o) use (&$disposed): void {
            $disposed[] = $o->name;
        };
        $container->scoped('first', function () {
            $o = new \stdClass();
            $o->name = 'first';
            return $o;
        }, ['dispose' => $dispose]);
        $container->scoped('second', function ($c) {
            $c->get('first');
            $o = new \stdClass();
            $o->name = 'second';
            return $o;
        }, ['dispose' => $dispose]);
        $container->scoped('third', function () {
            $o = new \stdClass();
            $o->name = 'third';
            return $o;
        }, ['dispose' => $dispose]);

        try {
            $container->get('first');
            $this->fail('a scoped service resolved outside a scope');
        } catch (InvalidArgumentException $e) {
            $this->assertSame("service 'first' is scoped: resolve it through a scope", $e->getMessage());
        }

        $scope1 = $container->createScope();
        $this->assertInstanceOf(ContainerScope::class, $scope1);
        $scope2 = $container->createScope();
        $s1 = $scope1->get('second');
        $this->assertSame($s1, $scope1->get('second'));
        $this->assertNotSame($s1, $scope2->get('second'));
        $scope1->get('third');

        // created: first (as second's dependency), second, third
        $scope1->dispose();
        $this->assertSame(['third', 'second', 'first'], $disposed);
        $scope1->dispose(); // idempotent
        $this->assertSame(['third', 'second', 'first'], $disposed);

        $disposed = [];
        unset($scope2); // freeing a scope disposes it
        $this->assertSame(['second', 'first'], $disposed);
    }

    public function testDisposeRunsInReverseCreationOrderAndCloses(): void
    {
        $container = new LazyContainer();
        $disposed = [];
        foreach (['a', 'b', 'c'] as $name) {
            $container->singleton($name, fn () => new \ArrayObject([$name]), [
                'dispose' => function (\ArrayObject $o) use (&$disposed): void {
                    $disposed[] = $o[0];
                },
            ]);
        }
        $container->get('b');
        $container->get('a');
        $container->get('c');
        $container->dispose();
        $this->assertSame(['c', 'a', 'b'], $disposed);
        $container->dispose();
        $this->assertSame(['c', 'a', 'b'], $disposed);
        $this->expectException(ClosedException::class);
        $container->get('a');
    }

    // ---- failures -----------------------------------------------------------------

    public function testCycleHasItsPath(): void
    {
        $container = new LazyContainer();
        $container->lazy('a', fn ($c) => $c->get('b'));
        $container->lazy('b', fn ($c) => $c->get('a'));
        try {
            $container->get('a');
            $this->fail('expected CycleException');
        } catch (CycleException $e) {
            $this->assertSame('circular dependency: a -> b -> a', $e->getMessage());
        }
        // A second try reports the same path (no state left from the first).
        try {
            $container->get('a');
            $this->fail('expected CycleException');
        } catch (CycleException $e) {
            $this->assertSame('circular dependency: a -> b -> a', $e->getMessage());
        }
    }

    public function testFailingFactoryLeavesNothingCached(): void
    {
        $container = new LazyContainer();
        $fail = true;
        $calls = 0;
        $container->lazy('flaky', function () use (&$fail, &$calls) {
            $calls++;
            if ($fail) {
                throw new \DomainException('backend down');
            }
            return new \stdClass();
        });
        try {
            $container->get('flaky');
            $this->fail('expected the factory\'s exception');
        } catch (\DomainException $e) {
            $this->assertSame('backend down', $e->getMessage());
        }
        $this->assertSame(0, $container->getStatistics()['cached']);
        $fail = false;
        $obj = $container->get('flaky');
        $this->assertSame($obj, $container->get('flaky'));
        $this->assertSame(2, $calls);
    }

    public function testFailingDependencyPropagatesUsersException(): void
    {
        $container = new LazyContainer();
        $container->lazy('dep', function () {
            throw new \LogicException('dep broke');
        });
        $container->lazy('top', fn ($c) => [$c->get('dep')]);
        $this->expectException(\LogicException::class);
        $this->expectExceptionMessage('dep broke');
        $container->get('top');
    }

    public function testNullFactoryResultNamesTheService(): void
    {
        $container = new LazyContainer();
        $container->lazy('nothing', fn () => null);
        try {
            $container->get('nothing');
            $this->fail('expected an exception');
        } catch (CallbackException $e) {
            $this->assertStringContainsString("'nothing'", $e->getMessage());
            $this->assertStringContainsString('null', $e->getMessage());
        }
        $this->assertFalse($container->getStatistics()['cached'] > 0);
    }

    public function testUnknownServiceSuggestsAName(): void
    {
        $container = new LazyContainer();
        $container->lazy('database', fn () => new \stdClass());
        try {
            $container->get('databse');
            $this->fail('expected NotFoundException');
        } catch (NotFoundException $e) {
            $this->assertStringContainsString("'databse'", $e->getMessage());
            $this->assertStringContainsString("did you mean 'database'", $e->getMessage());
        }
        $this->assertFalse($container->has('databse'));
    }

    public function testAliasToNothing(): void
    {
        $container = new LazyContainer();
        try {
            $container->alias('db', 'database');
            $container->get('db');
            $this->fail('expected an exception');
        } catch (MemwardenException $e) {
            $this->assertStringContainsString('database', $e->getMessage());
        }
    }

    public function testAliasCycle(): void
    {
        $container = new LazyContainer();
        try {
            $container->alias('x', 'y');
            $container->alias('y', 'x');
            $container->get('x');
            $this->fail('expected CycleException');
        } catch (CycleException $e) {
            $this->assertStringContainsString('x', $e->getMessage());
            $this->assertStringContainsString('y', $e->getMessage());
        }
    }

    public function testDuplicateWithoutAndWithOverride(): void
    {
        $container = new LazyContainer();
        $container->lazy('svc', fn () => 'one');
        try {
            $container->lazy('svc', fn () => 'two');
            $this->fail('expected InvalidArgumentException');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString("'svc'", $e->getMessage());
            $this->assertStringContainsString('override', $e->getMessage());
        }
        $this->assertSame('one', $container->get('svc'));
        $container->singleton('svc', fn () => 'two', ['override' => true]);
        $this->assertSame('two', $container->get('svc'));
    }

    public function testEmptyName(): void
    {
        $container = new LazyContainer();
        $this->expectException(InvalidArgumentException::class);
        $this->expectExceptionMessage('empty');
        $container->lazy('', fn () => 1);
    }

    public function testBadOptionsAndFactories(): void
    {
        $container = new LazyContainer();
        foreach ([
            fn () => $container->lazy('x', fn () => 1, ['dispos' => fn () => null]),
            fn () => $container->lazy('x', fn () => 1, ['dispose' => 'not a function']),
            fn () => $container->lazy('x', fn () => 1, ['override' => 'yes']),
            fn () => $container->lazy('x', 'No\\Such\\ClassName'),
        ] as $i => $bad) {
            try {
                $bad();
                $this->fail("case {$i}: expected InvalidArgumentException");
            } catch (InvalidArgumentException $e) {
                $this->assertNotSame('', $e->getMessage());
            }
        }
        $this->assertFalse($container->has('x'));
    }

    // ---- auto_wire ----------------------------------------------------------------

    public function testAutoWireByClassTypeNameAndDefault(): void
    {
        $container = new LazyContainer();
        $container->singleton(Logger::class, fn () => new Logger('mail'));
        $container->lazy('channel', fn () => 'smtp');
        $container->lazy('mailer', Mailer::class);
        $mailer = $container->get('mailer');
        $this->assertInstanceOf(Mailer::class, $mailer);
        $this->assertSame($container->get(Logger::class), $mailer->logger);
        $this->assertSame('smtp', $mailer->channel);
        $this->assertSame(3, $mailer->retries);
    }

    public function testAutoWireByParameterName(): void
    {
        $container = new LazyContainer();
        $container->lazy('database', fn () => new DatabaseConnection());
        $container->lazy('users', UserService::class);
        $this->assertSame($container->get('database'), $container->get('users')->database);
    }

    public function testAutoWireUnresolvableParameter(): void
    {
        $container = new LazyContainer();
        $container->lazy('needs', NeedsMissing::class);
        try {
            $container->get('needs');
            $this->fail('expected NotFoundException');
        } catch (NotFoundException $e) {
            $this->assertStringContainsString('$missing', $e->getMessage());
            $this->assertStringContainsString("'needs'", $e->getMessage());
        }
    }

    public function testAutoWireOff(): void
    {
        $container = new LazyContainer(['auto_wire' => false]);
        $this->expectException(InvalidArgumentException::class);
        $this->expectExceptionMessage('auto_wire');
        $container->lazy('logger', Logger::class);
    }

    // ---- manager integration and lifetime of the object ---------------------------

    public function testManagerCleanupReleasesLazyInstances(): void
    {
        $manager = new MemoryManager();
        $container = new LazyContainer(['release_lazy_on_cleanup' => true]);
        $disposed = 0;
        $made = 0;
        $container->lazy('buffer', function () use (&$made) {
            $made++;
            return new \ArrayObject(range(1, 100));
        }, ['dispose' => function () use (&$disposed): void {
            $disposed++;
        }]);
        $container->singleton('kept', fn () => new \stdClass());
        $kept = $container->get('kept');
        $first = $container->get('buffer');
        $manager->registerCleanupHook('container', $container, 5);

        $manager->forceGarbageCollection();
        $this->assertSame(1, $disposed, 'the cached lazy instance was dropped');
        $second = $container->get('buffer');
        $this->assertNotSame($first, $second);
        $this->assertSame(2, $made);
        $this->assertSame($kept, $container->get('kept'), 'a singleton is kept');
        $this->assertTrue($manager->unregisterCleanupHook('container'));
    }

    public function testManagerRethrowsDisposeFailure(): void
    {
        $manager = new MemoryManager();
        $container = new LazyContainer(['release_lazy_on_cleanup' => true]);
        $container->lazy('svc', fn () => new \stdClass(), ['dispose' => function (): void {
            throw new \RuntimeException('dispose failed');
        }]);
        $container->get('svc');
        $manager->registerCleanupHook('container', $container);
        $this->expectException(\RuntimeException::class);
        $this->expectExceptionMessage('dispose failed');
        $manager->forceGarbageCollection();
    }

    public function testCallbacksDoNotKeepTheContainerAlive(): void
    {
        $disposed = false;
        $container = new LazyContainer();
        $container->lazy('svc', fn ($c) => new \stdClass(), ['dispose' => function () use (&$disposed): void {
            $disposed = true;
        }]);
        $container->get('svc');
        $ref = \WeakReference::create($container);
        unset($container);
        $this->assertNull($ref->get());
        $this->assertTrue($disposed, 'freeing the container disposed its instances');
    }
}
