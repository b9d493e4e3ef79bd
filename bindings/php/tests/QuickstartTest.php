<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\MemoryManager;
use PHPUnit\Framework\TestCase;

/** The seed's "Basic Usage" and "Advanced Features", as written there. README's quick start is this test. */
final class QuickstartTest extends TestCase
{
    public function testSeedBasicUsage(): void
    {
        // Initialize with custom configuration
        $memoryManager = new MemoryManager([
            'warning_threshold' => 0.75,  // 75% of memory limit
            'critical_threshold' => 0.9,  // 90% of memory limit
            'auto_gc_threshold' => 0.8,   // Auto GC at 80%
            'enable_detailed_tracking' => true,
        ]);

        // Monitor memory usage
        $usage = $memoryManager->getMemoryUsage();
        $line = "Current: {$usage['current_mb']}MB, Peak: {$usage['peak_mb']}MB";
        $this->assertStringStartsWith('Current: ', $line);

        // Check memory state
        $state = $memoryManager->getMemoryState();
        if ($state === MemoryManager::STATE_CRITICAL) {
            // Handle critical memory situation
            $memoryManager->emergencyCleanup();
        }
        $this->assertContains($state, [
            MemoryManager::STATE_NORMAL, MemoryManager::STATE_WARNING,
            MemoryManager::STATE_CRITICAL, MemoryManager::STATE_EMERGENCY,
        ]);
    }

    public function testSeedConfigurationOptionsAreAllAccepted(): void
    {
        $config = [
            'warning_threshold' => 0.75,        // Warning at 75% usage
            'critical_threshold' => 0.9,        // Critical at 90% usage
            'auto_gc_threshold' => 0.8,         // Auto GC at 80% usage
            'enable_detailed_tracking' => true, // Track allocation patterns
            'gc_probability' => 0.1,            // 10% chance of GC per check
            'emergency_threshold' => 0.95,      // Emergency cleanup at 95%
        ];
        $memoryManager = new MemoryManager($config);
        $stats = $memoryManager->getDetailedStats();
        $this->assertSame(0.75, $stats['thresholds']['warning_threshold']);
        $this->assertSame(0.9, $stats['thresholds']['critical_threshold']);
        $this->assertSame(0.8, $stats['thresholds']['auto_gc_threshold']);
        $this->assertSame(0.1, $stats['thresholds']['gc_probability']);
        $this->assertSame(0.95, $stats['thresholds']['emergency_threshold']);
        $this->assertTrue($stats['enable_detailed_tracking']);
    }

    public function testSeedAdvancedFeatures(): void
    {
        $memoryManager = new MemoryManager(['enable_detailed_tracking' => true]);
        $logged = [];

        // Set custom memory limits
        $memoryManager->setMemoryLimit('512M');

        // Force garbage collection
        $report = $memoryManager->forceGarbageCollection();

        // Get detailed memory statistics
        $stats = $memoryManager->getDetailedStats();

        // Register memory state change callbacks
        $memoryManager->onStateChange(function ($oldState, $newState) use (&$logged) {
            $logged[] = "Memory state changed from {$oldState} to {$newState}";
        });

        $this->assertSame(512 * 1024 * 1024, $stats['limit']['bytes']);
        $this->assertSame('explicit', $stats['limit']['origin']);
        $this->assertArrayHasKey('freed_bytes', $report);
        $this->assertArrayHasKey('duration_ms', $report);
        $this->assertSame([], $logged);
    }

    public function testDefaultsNeedNoConfig(): void
    {
        $m = new MemoryManager();
        $this->assertSame('host', $m->getMemoryUsage()['source']);
        $this->assertSame(MemoryManager::STATE_NORMAL, $m->getState());
        $this->assertSame('normal', MemoryManager::STATE_NORMAL);
        $this->assertSame('warning', MemoryManager::STATE_WARNING);
        $this->assertSame('critical', MemoryManager::STATE_CRITICAL);
        $this->assertSame('emergency', MemoryManager::STATE_EMERGENCY);
    }
}
