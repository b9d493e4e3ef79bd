<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\MemoryManager;
use PHPUnit\Framework\TestCase;

final class CallbackTest extends TestCase
{
    private const LIMIT = 100_000;

    private function manager(array $config = []): MemoryManager
    {
        return new MemoryManager($config + ['php_readings' => false, 'random_seed' => 1]);
    }

    public function testAThrowingStateCallbackReachesTheCallerAndTheStateIsStillUpdated(): void
    {
        $m = $this->manager();
        $later = [];
        $m->onStateChange(function ($old, $new): void {
            throw new \DomainException("no thanks: {$old} -> {$new}");
        });
        $m->onStateChange(function ($old, $new) use (&$later): void {
            $later[] = $new;
        });
        $m->updateHostReading(10_000, null, self::LIMIT);
        $this->assertSame('normal', $m->getMemoryState());
        $m->updateHostReading(80_000, null, self::LIMIT);
        try {
            $m->getMemoryState();
            $this->fail('the callback\'s exception must reach the caller');
        } catch (\DomainException $e) {
            $this->assertSame('no thanks: normal -> warning', $e->getMessage());
        }
        $this->assertSame('warning', $m->getState(), 'the state is updated even though a callback failed');
        $this->assertSame(['warning'], $later, 'the other callbacks still ran');
        // PHP is fine and the manager still works.
        $this->assertSame('warning', $m->getMemoryState());
        $m->updateHostReading(10_000, null, self::LIMIT);
        $this->expectException(\DomainException::class);
        $this->expectExceptionMessage('no thanks: warning -> normal');
        $m->check();
    }

    public function testAThrowingErrorInAHookIsRethrownAfterTheRun(): void
    {
        $m = $this->manager();
        $ran = [];
        $m->registerCleanupHook('bad', function (): void {
            throw new \TypeError('hook broke');
        }, 10);
        $m->registerCleanupHook('good', function () use (&$ran): void {
            $ran[] = 'good';
        }, 0);
        $m->onAfterGC(function (array $report) use (&$ran): void {
            $ran[] = 'after';
            $bad = array_values(array_filter($report['hooks'], fn ($h) => $h['name'] === 'bad'))[0];
            $ran[] = $bad['ok'] ? 'bad ok' : 'bad failed';
        });
        $m->updateHostReading(1000, null, self::LIMIT);
        try {
            $m->forceGarbageCollection();
            $this->fail('expected the hook\'s TypeError');
        } catch (\TypeError $e) {
            $this->assertSame('hook broke', $e->getMessage());
        }
        $this->assertSame(['good', 'after', 'bad failed'], $ran);
        $this->assertSame(1, $m->getDetailedStats()['cleanup_runs']);
    }

    public function testOnlyTheFirstOfSeveralExceptionsIsRethrown(): void
    {
        $m = $this->manager(['host_gc' => false]);
        $m->onBeforeGC(function (): void {
            throw new \LogicException('first');
        });
        $m->onAfterGC(function (array $r): void {
            throw new \LogicException('second');
        });
        $m->updateHostReading(1000, null, self::LIMIT);
        $this->expectExceptionObject(new \LogicException('first'));
        $m->forceGarbageCollection();
    }

    public function testGarbageCollectionRunsHooksInOrder(): void
    {
        $log = [];
        $m = $this->manager([
            'gc_callback' => function (array $report) use (&$log): void {
                $log[] = 'gc_callback:' . $report['trigger'];
            },
        ]);
        $m->onBeforeGC(function () use (&$log): void {
            $log[] = 'before';
        });
        $m->registerCleanupHook('low', function () use (&$log): void {
            $log[] = 'low';
        }, -5);
        $m->registerCleanupHook('high', function () use (&$log): void {
            $log[] = 'high';
        }, 50);
        $m->registerCleanupHook('mid', function (bool $emergency) use (&$log): void {
            $log[] = 'mid:' . var_export($emergency, true);
        }, 10);
        $m->onAfterGC(function (array $report) use (&$log): void {
            $log[] = 'after:' . implode(',', array_column($report['hooks'], 'name'));
        });
        $m->updateHostReading(1000, null, self::LIMIT);
        $report = $m->forceGarbageCollection();

        $this->assertSame([
            'before',
            'high',
            'mid:false',
            'low',
            'gc_callback:manual',
            'after:before_gc#0,high,mid,low,php-gc',
        ], $log);
        $this->assertSame('normal', $report['level']);
        foreach (['freed_bytes', 'freed_mb', 'duration_ms', 'before_bytes', 'after_bytes', 'hooks'] as $key) {
            $this->assertArrayHasKey($key, $report);
        }
        $this->assertSame(['before_gc#0', 'high', 'mid', 'low', 'php-gc'], array_column($report['hooks'], 'name'));
    }

    public function testEmergencyCleanupTellsHooks(): void
    {
        $got = [];
        $m = $this->manager(['host_gc' => false]);
        $m->registerCleanupHook('level', function ($level) use (&$got): void {
            $got[] = $level;
        });
        $m->registerCleanupHook('flag', function (bool $emergency) use (&$got): void {
            $got[] = $emergency;
        });
        $m->registerCleanupHook('none', function () use (&$got): void {
            $got[] = 'none';
        });
        $m->updateHostReading(1000, null, self::LIMIT);
        $report = $m->emergencyCleanup();
        $this->assertSame('emergency', $report['level']);
        $m->forceGarbageCollection();
        $this->assertSame(['emergency', true, 'none', 'normal', false, 'none'], $got);
    }

    public function testHookReplaceAndUnregister(): void
    {
        $log = [];
        $m = $this->manager(['host_gc' => false]);
        $m->registerCleanupHook('h', function () use (&$log): void {
            $log[] = 'one';
        });
        $m->registerCleanupHook('h', function () use (&$log): void {
            $log[] = 'two';
        });
        $m->updateHostReading(1000, null, self::LIMIT);
        $m->forceGarbageCollection();
        $this->assertSame(['two'], $log);
        $this->assertTrue($m->unregisterCleanupHook('h'));
        $this->assertFalse($m->unregisterCleanupHook('h'));
        $m->forceGarbageCollection();
        $this->assertSame(['two'], $log);
    }

    public function testPhpGcHookIsThereByDefaultAndCollectsCycles(): void
    {
        $m = new MemoryManager();
        $hooks = array_column($m->forceGarbageCollection()['hooks'], 'name');
        $this->assertContains('php-gc', $hooks);
        $this->assertSame('php-gc', end($hooks), 'php-gc (-1000) runs after user hooks');

        $wasEnabled = gc_enabled();
        gc_disable();
        try {
            $ref = $this->makeGarbageCycle();
            $this->assertNotNull($ref->get(), 'a cycle outlives its last reference while GC is off');
            $m->forceGarbageCollection();
            $this->assertNull($ref->get(), 'php-gc ran gc_collect_cycles()');
        } finally {
            if ($wasEnabled) {
                gc_enable();
            }
        }
    }

    public function testHostGcFalseLeavesPhpsCollectorAlone(): void
    {
        $m = new MemoryManager(['host_gc' => false]);
        $this->assertNotContains('php-gc', array_column($m->forceGarbageCollection()['hooks'], 'name'));
        $this->assertFalse($m->unregisterCleanupHook('php-gc'));

        $wasEnabled = gc_enabled();
        gc_disable();
        try {
            $ref = $this->makeGarbageCycle();
            $m->forceGarbageCollection();
            $this->assertNotNull($ref->get());
            gc_collect_cycles();
            $this->assertNull($ref->get());
        } finally {
            if ($wasEnabled) {
                gc_enable();
            }
        }
    }

    public function testFreedBytesSeesWhatHooksReleasedInPhpsHeap(): void
    {
        $m = new MemoryManager(['host_gc' => false]);
        $cache = [];
        for ($i = 0; $i < 2000; $i++) {
            $cache[] = str_repeat(chr(65 + $i % 26), 1024) . $i;
        }
        $m->registerCleanupHook('cache', function () use (&$cache): void {
            $cache = [];
        });
        $report = $m->forceGarbageCollection();
        $this->assertSame([], $cache);
        $this->assertGreaterThan(1024 * 1024, $report['freed_bytes'], json_encode($report));
        $this->assertSame($report['before_bytes'] - $report['after_bytes'], $report['freed_bytes']);
        $this->assertEqualsWithDelta($report['freed_bytes'] / 1048576, $report['freed_mb'], 1e-9);
    }

    public function testCallbacksMayCallBackIntoTheManager(): void
    {
        $m = $this->manager(['host_gc' => false]);
        $inside = [];
        $m->onStateChange(function ($old, $new) use ($m, &$inside): void {
            $inside[] = $m->getMemoryUsage()['current_bytes'];
            $inside[] = $m->forceGarbageCollection()['trigger'];
        });
        $m->updateHostReading(80_000, null, self::LIMIT);
        $this->assertSame('warning', $m->getMemoryState());
        $this->assertSame([80_000, 'manual'], $inside);
    }

    private function makeGarbageCycle(): \WeakReference
    {
        $a = new \stdClass();
        $b = new \stdClass();
        $a->b = $b;
        $b->a = $a;
        $ref = \WeakReference::create($a);
        unset($a, $b);
        return $ref;
    }
}
