<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\Exception\NotFoundException;
use Memwarden\MemoryManager;
use PHPUnit\Framework\TestCase;

/**
 * States are driven with 'php_readings' => false and updateHostReading(): the
 * binding then stops pushing PHP's own numbers, so the readings set here stick.
 */
final class StateTest extends TestCase
{
    private const LIMIT = 100_000;

    private function manager(array $config = []): MemoryManager
    {
        $m = new MemoryManager($config + ['php_readings' => false, 'random_seed' => 7]);
        return $m;
    }

    private function reading(MemoryManager $m, float $fraction): string
    {
        $m->updateHostReading((int) round($fraction * self::LIMIT), null, self::LIMIT);
        return $m->getMemoryState();
    }

    public function testStatesFollowTheThresholds(): void
    {
        $m = $this->manager();
        $this->assertSame(MemoryManager::STATE_NORMAL, $this->reading($m, 0.50));
        $this->assertSame(MemoryManager::STATE_WARNING, $this->reading($m, 0.76));
        $this->assertSame(MemoryManager::STATE_CRITICAL, $this->reading($m, 0.91));
        $this->assertSame(MemoryManager::STATE_EMERGENCY, $this->reading($m, 0.96));
        $this->assertSame(MemoryManager::STATE_EMERGENCY, $m->getState());
        $this->assertSame(MemoryManager::STATE_NORMAL, $this->reading($m, 0.10));
        $this->assertSame(MemoryManager::STATE_NORMAL, $m->getState());
    }

    public function testCheckIsGetMemoryStateAndGetStateDoesNotSample(): void
    {
        $m = $this->manager();
        $this->assertSame('normal', $this->reading($m, 0.5));
        $m->updateHostReading((int) (0.92 * self::LIMIT), null, self::LIMIT);
        $this->assertSame('normal', $m->getState(), 'getState() takes no reading');
        $this->assertSame('critical', $m->check());
        $this->assertSame('critical', $m->getState());
    }

    public function testHostSourceWithoutAReadingIsNotFound(): void
    {
        $m = $this->manager();
        $this->expectException(NotFoundException::class);
        $m->getMemoryState();
    }

    public function testHysteresisGivesOneChangeForWobblingReadings(): void
    {
        $m = $this->manager();
        $changes = [];
        $m->onStateChange(function ($old, $new) use (&$changes): void {
            $changes[] = [$old, $new];
        });
        foreach ([0.749, 0.751, 0.749, 0.751, 0.745, 0.752, 0.74, 0.751] as $f) {
            $this->reading($m, $f);
        }
        $this->assertSame([['normal', 'warning']], $changes);
        $this->assertSame('normal', $this->reading($m, 0.70), 'falling past the margin leaves the state');
        $this->assertSame([['normal', 'warning'], ['warning', 'normal']], $changes);
    }

    public function testStateChangeCallbacksGetStringsInOrder(): void
    {
        $m = $this->manager();
        $seen = [];
        $m->onStateChange(function ($old, $new) use (&$seen): void {
            $seen[] = "{$old}->{$new}";
        });
        $this->reading($m, 0.5);
        $this->reading($m, 0.8);
        $this->reading($m, 0.92);
        $this->reading($m, 0.92);
        $this->reading($m, 0.97);
        $this->assertSame(['normal->warning', 'warning->critical', 'critical->emergency'], $seen);
        $this->assertIsString($seen[0]);
    }

    public function testCriticalFromPhpsOwnNumbersWithALimitJustAboveUsage(): void
    {
        // With the default push, a limit just above memory_get_usage() makes PHP's real
        // usage critical.
        $m = new MemoryManager(['host_gc' => false]);
        $states = [];
        $m->onStateChange(function ($old, $new) use (&$states): void {
            $states[] = $new;
        });
        $m->setMemoryLimit((int) (memory_get_usage() / 0.93));
        $state = $m->getMemoryState();
        $this->assertContains($state, [MemoryManager::STATE_CRITICAL, MemoryManager::STATE_EMERGENCY]);
        $this->assertSame([$state], $states);
        if ($state === MemoryManager::STATE_CRITICAL) {
            $this->assertSame('emergency', $m->emergencyCleanup()['level']);
        }
    }

    public function testEnteringEmergencyRunsAnEmergencyCleanup(): void
    {
        $m = $this->manager(['host_gc' => false]);
        $levels = [];
        $m->registerCleanupHook('watch', function (string $level) use (&$levels): void {
            $levels[] = $level;
        });
        $this->reading($m, 0.5);
        $this->reading($m, 0.97);
        $this->assertContains('emergency', $levels);
    }
}
