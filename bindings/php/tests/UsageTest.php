<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\Exception\InvalidArgumentException;
use Memwarden\MemoryManager;
use PHPUnit\Framework\TestCase;

final class UsageTest extends TestCase
{
    private string $iniLimit;

    protected function setUp(): void
    {
        $this->iniLimit = (string) ini_get('memory_limit');
        ini_set('memory_limit', '256M');
    }

    protected function tearDown(): void
    {
        ini_set('memory_limit', $this->iniLimit);
    }

    public function testUsageKeysAndUnits(): void
    {
        $usage = (new MemoryManager())->getMemoryUsage();
        foreach (['current_mb', 'peak_mb', 'limit_mb', 'usage_percent', 'current_bytes', 'peak_bytes',
                  'limit_bytes', 'limit_origin', 'source'] as $key) {
            $this->assertArrayHasKey($key, $usage);
        }
        $this->assertIsInt($usage['current_bytes']);
        $this->assertIsFloat($usage['current_mb']);
        $this->assertEqualsWithDelta($usage['current_bytes'] / 1048576, $usage['current_mb'], 1e-9);
        $this->assertEqualsWithDelta($usage['peak_bytes'] / 1048576, $usage['peak_mb'], 1e-9);
        $this->assertEqualsWithDelta($usage['limit_bytes'] / 1048576, $usage['limit_mb'], 1e-9);
        $this->assertEqualsWithDelta(100 * $usage['current_bytes'] / $usage['limit_bytes'], $usage['usage_percent'], 1e-6);
        $this->assertGreaterThanOrEqual($usage['current_bytes'], $usage['peak_bytes']);
    }

    public function testHostSourceReportsPhpsOwnNumbersAndLimit(): void
    {
        $m = new MemoryManager();
        $before = memory_get_usage();
        $usage = $m->getMemoryUsage();
        $after = memory_get_usage();
        $this->assertSame('host', $usage['source']);
        $this->assertSame('host', $usage['limit_origin']);
        $this->assertSame(256 * 1024 * 1024, $usage['limit_bytes']);
        // memory_get_usage() moves a little between calls; within 256 KiB of it.
        $this->assertEqualsWithDelta($before, $usage['current_bytes'], 256 * 1024);
        $this->assertEqualsWithDelta($after, $usage['current_bytes'], 256 * 1024);
        $this->assertGreaterThanOrEqual($usage['current_bytes'], memory_get_peak_usage());
        $this->assertSame(['bytes' => 256 * 1024 * 1024, 'origin' => 'host'], $m->getMemoryLimit());
    }

    public function testHostSourceFollowsMemoryLimitChanges(): void
    {
        $m = new MemoryManager();
        ini_set('memory_limit', '300M');
        $this->assertSame(300 * 1024 * 1024, $m->getMemoryUsage()['limit_bytes']);
        ini_set('memory_limit', '-1');
        $this->assertNotSame('host', $m->getMemoryUsage()['limit_origin'], 'memory_limit -1 is no host limit');
    }

    public function testProcessSourceReadsResidentMemory(): void
    {
        $m = new MemoryManager(['source' => 'process']);
        $usage = $m->getMemoryUsage();
        $this->assertSame('process', $usage['source']);
        // The process's resident set holds PHP's heap and much more (the binary, libraries).
        $this->assertGreaterThan(memory_get_usage(), $usage['current_bytes']);
        $this->assertNotSame('host', $usage['limit_origin']);
        $this->expectException(InvalidArgumentException::class);
        $m->updateHostReading(1000, 1000, 2000);
    }

    public function testSetMemoryLimitIsTheManagersOwnAndLeavesIniAlone(): void
    {
        $m = new MemoryManager();
        $m->setMemoryLimit('512M');
        $this->assertSame('256M', ini_get('memory_limit'));
        $usage = $m->getMemoryUsage();
        $this->assertSame('explicit', $usage['limit_origin']);
        $this->assertSame(512 * 1024 * 1024, $usage['limit_bytes']);
        $this->assertSame(['bytes' => 512 * 1024 * 1024, 'origin' => 'explicit'], $m->getMemoryLimit());

        $m->setMemoryLimit(1024 * 1024 * 1024);
        $this->assertSame(['bytes' => 1024 * 1024 * 1024, 'origin' => 'explicit'], $m->getMemoryLimit());

        $m->setMemoryLimit('-1');
        $this->assertSame(['bytes' => 256 * 1024 * 1024, 'origin' => 'host'], $m->getMemoryLimit());
        $m->setMemoryLimit('1G');
        $m->setMemoryLimit(-1);
        $this->assertSame('host', $m->getMemoryLimit()['origin']);
        $this->assertSame('256M', ini_get('memory_limit'));
    }

    public function testMemoryLimitFromConfig(): void
    {
        $m = new MemoryManager(['memory_limit' => '128M']);
        $this->assertSame(['bytes' => 128 * 1024 * 1024, 'origin' => 'explicit'], $m->getMemoryLimit());
        $m = new MemoryManager(['memory_limit' => 64 * 1024 * 1024]);
        $this->assertSame(['bytes' => 64 * 1024 * 1024, 'origin' => 'explicit'], $m->getMemoryLimit());
    }

    public function testResetPeak(): void
    {
        $m = new MemoryManager(['php_readings' => false]);
        $m->updateHostReading(1000, 5000, 10000);
        $this->assertSame(5000, $m->getMemoryUsage()['peak_bytes']);
        $m->resetPeak();
        $this->assertSame(1000, $m->getMemoryUsage()['peak_bytes']);

        $m = new MemoryManager();
        $big = str_repeat('x', 4 * 1024 * 1024);
        unset($big);
        $m->resetPeak();
        $usage = $m->getMemoryUsage();
        $this->assertLessThan(4 * 1024 * 1024, $usage['peak_bytes'] - $usage['current_bytes']);
    }

    public function testDetailedStats(): void
    {
        $m = new MemoryManager(['enable_detailed_tracking' => true]);
        $m->getMemoryState();
        $m->getMemoryState();
        $stats = $m->getDetailedStats();
        foreach (['usage', 'state', 'limit', 'thresholds', 'checks', 'cleanup_hooks', 'history'] as $key) {
            $this->assertArrayHasKey($key, $stats);
        }
        $this->assertSame(2, $stats['checks']);
        $this->assertSame('normal', $stats['state']);
        $this->assertSame('host', $stats['usage']['source']);
    }

    public function testManagerIsFreedWhenUnreferenced(): void
    {
        $m = new MemoryManager();
        $m->onStateChange(static function ($old, $new): void {
        });
        $m->onAfterGC(static function (array $report): void {
        });
        $m->registerCleanupHook('noop', static function (): void {
        });
        $ref = \WeakReference::create($m);
        unset($m);
        $this->assertNull($ref->get(), 'callbacks must not keep the manager alive');
    }
}
