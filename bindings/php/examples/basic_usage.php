<?php

// The seed's "Basic Usage" and "Advanced Features" for Memwarden\MemoryManager.
// Run: php bindings/php/examples/basic_usage.php   (after cargo build --release -p memwarden-ffi)

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

use Memwarden\MemoryManager;

// Initialize with custom configuration
$memoryManager = new MemoryManager([
    'warning_threshold' => 0.75,  // 75% of memory limit
    'critical_threshold' => 0.9,  // 90% of memory limit
    'auto_gc_threshold' => 0.8,   // Auto GC at 80%
    'enable_detailed_tracking' => true,
]);

// Register memory state change callbacks
$memoryManager->onStateChange(function ($oldState, $newState) {
    echo "Memory state changed from {$oldState} to {$newState}\n";
});

// Monitor memory usage
$usage = $memoryManager->getMemoryUsage();
printf("Current: %.2fMB, Peak: %.2fMB, Limit: %.0fMB (%s)\n",
    $usage['current_mb'], $usage['peak_mb'], $usage['limit_mb'], $usage['limit_origin']);

// Check memory state
$state = $memoryManager->getMemoryState();
echo "State: {$state}\n";
if ($state === MemoryManager::STATE_CRITICAL) {
    // Handle critical memory situation
    $memoryManager->emergencyCleanup();
}

// Set custom memory limits (the manager's own; PHP's memory_limit is left alone)
$memoryManager->setMemoryLimit('512M');
$limit = $memoryManager->getMemoryLimit();
echo "Manager limit: {$limit['bytes']} bytes ({$limit['origin']}), ini memory_limit: " . ini_get('memory_limit') . "\n";

// A cleanup hook that frees a cache of ours; runs in every cleanup run.
$cache = array_fill(0, 10000, str_repeat('x', 100));
$memoryManager->registerCleanupHook('my-cache', function (string $level) use (&$cache) {
    echo "Cleanup hook ({$level}): dropping " . count($cache) . " cache entries\n";
    $cache = [];
}, 10);

// Force garbage collection
$report = $memoryManager->forceGarbageCollection();
printf("GC freed %d bytes in %.3f ms; hooks: %s\n",
    $report['freed_bytes'], $report['duration_ms'], implode(', ', array_column($report['hooks'], 'name')));

// Get detailed memory statistics
$stats = $memoryManager->getDetailedStats();
print_r([
    'state' => $stats['state'],
    'checks' => $stats['checks'],
    'cleanup_runs' => $stats['cleanup_runs'],
    'limit' => $stats['limit'],
    'thresholds' => $stats['thresholds'],
]);

// Drive the states with readings of our own (php_readings off), to show the callbacks.
$demo = new MemoryManager(['php_readings' => false, 'host_gc' => false]);
$demo->onStateChange(function ($old, $new) {
    echo "demo: {$old} -> {$new}\n";
});
foreach ([50, 76, 92, 97, 40] as $percent) {
    $demo->updateHostReading($percent * 1000, null, 100_000);
    echo "demo reading {$percent}%: " . $demo->getMemoryState() . "\n";
}
