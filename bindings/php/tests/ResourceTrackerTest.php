<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\Exception\ClosedException;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;
use Memwarden\Exception\NotFoundException;
use Memwarden\ResourceTracker;
use PHPUnit\Framework\TestCase;

/** Streamflow's ResourceTracker (seed 004) in PHP spelling. */
final class ResourceTrackerTest extends TestCase
{
    public function testTrackReleaseStatsAndGetResource(): void
    {
        $t = new ResourceTracker(['maxMemoryUsage' => 1000]);
        $chunk = new \stdClass();
        $a = $t->trackResource($chunk, 'chunk', ['size' => 100, 'type' => 'image']);
        $b = $t->trackResource(str_repeat('b', 50), 'buffer');
        $c = $t->trackResource([1, 2, 3], 'list', null, 7);
        $this->assertSame([1, 2, 3], [$a, $b, $c]);
        $r = $t->getResource($a);
        $this->assertSame('chunk', $r['type']);
        $this->assertSame(100, $r['size']);
        $this->assertSame(['size' => 100, 'type' => 'image'], $r['metadata']);
        $this->assertEqualsWithDelta(microtime(true) * 1000, $r['createdAt'], 60_000);
        $this->assertSame(50, $t->getResource($b)['size'], 'a string resource: its length');
        $this->assertSame([], $t->getResource($b)['metadata']);

        $s = $t->getMemoryStats();
        $this->assertSame(157, $s['totalAllocated']);
        $this->assertSame(3, $s['activeResources']);
        $this->assertSame(157, $s['peakMemoryUsage']);
        $this->assertSame(['buffer' => 1, 'chunk' => 1, 'list' => 1], self::sortedKeys($s['byType']));

        $t->releaseResource($a);
        $this->assertNull($t->getResource($a));
        $s = $t->getMemoryStats();
        $this->assertSame(57, $s['totalAllocated']);
        $this->assertSame(2, $s['activeResources']);
        $this->assertSame(157, $s['peakMemoryUsage'], 'the peak stays');
    }

    /** @param array<string,mixed> $a @return array<string,mixed> */
    private static function sortedKeys(array $a): array
    {
        ksort($a);
        return $a;
    }

    public function testReleasingUnknownOrReleasedIdsFailsAndChangesNothing(): void
    {
        $t = new ResourceTracker();
        $id = $t->trackResource(new \stdClass(), 'chunk', ['size' => 10]);
        $t->releaseResource($id);
        $before = $t->getMemoryStats();
        foreach ([$id, 999] as $bad) {
            try {
                $t->releaseResource($bad);
                $this->fail("released {$bad}");
            } catch (NotFoundException $e) {
                $this->assertStringContainsString("resource {$bad} is not tracked", $e->getMessage());
            }
            $this->assertSame($before, $t->getMemoryStats());
        }
    }

    public function testMetadataThatJsonCannotCarryIsRefusedAndStatsStayUnchanged(): void
    {
        $t = new ResourceTracker();
        $t->trackResource('x', 'chunk');
        $before = $t->getMemoryStats();
        $stream = fopen('php://memory', 'r');
        $cycle = [];
        $cycle['self'] = &$cycle;
        $cases = [
            [['handle' => $stream], "metadata['handle'] is a PHP resource"],
            [['ratio' => NAN], "metadata['ratio'] is NAN"],
            [['name' => "\xff\xfe"], "metadata['name'] is a string that is not valid UTF-8"],
            [['cb' => static fn () => 1], "metadata['cb'] is a Closure"],
            [$cycle, 'nested deeper'],
            [['size' => 'big'], "metadata['size'] must be a number of bytes"],
        ];
        foreach ($cases as [$meta, $needle]) {
            try {
                $t->trackResource(new \stdClass(), 'chunk', $meta);
                $this->fail("accepted metadata for {$needle}");
            } catch (InvalidArgumentException $e) {
                $this->assertStringContainsString($needle, $e->getMessage());
            }
            $this->assertSame($before, $t->getMemoryStats());
        }
        fclose($stream);
        try {
            $t->trackResource('x', 'chunk', null, -1);
            $this->fail('a negative size must be refused');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString('size must be >= 0', $e->getMessage());
        }
        // objects and JsonSerializable are fine
        $id = $t->trackResource('y', 'chunk', (object) ['a' => 1, 'nested' => ['b' => 2.5]]);
        $this->assertSame(['a' => 1, 'nested' => ['b' => 2.5]], $t->getResource($id)['metadata']);
    }

    public function testEventsOncePerCrossingOnThePhpThread(): void
    {
        $t = new ResourceTracker(['maxMemoryUsage' => 1000, 'thresholds' => ['warning' => 0.7, 'critical' => 0.9]]);
        $seen = [];
        $t->on('memoryWarning', function (array $e) use (&$seen): void {
            $seen[] = ['warning', $e['usage'], $e['threshold']];
        });
        $t->on('memoryCritical', function (array $e) use (&$seen): void {
            $seen[] = ['critical', $e['usage'], $e['threshold']];
        });
        $a = $t->trackResource('a', 'x', null, 700);
        $this->assertSame([['warning', 700, 0.7]], $seen, 'delivered by the call that crossed');
        $b = $t->trackResource('b', 'x', null, 10);
        $t->releaseResource($b);
        $this->assertCount(1, $seen, 'no second event while it stays above');
        $c = $t->trackResource('c', 'x', null, 250);
        $this->assertSame(['critical', 950, 0.9], $seen[1]);
        $t->releaseResource($c);
        $t->releaseResource($a);
        $t->trackResource('d', 'x', null, 750);
        $this->assertSame(['warning', 750, 0.7], $seen[2], 'left and crossed again: a new event');
        $this->assertCount(3, $seen);
        $this->assertSame([], $t->pollEvents(), 'already delivered');

        try {
            $t->on('memoryWarnin', static fn () => null);
            $this->fail('unknown event accepted');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString("unknown event 'memoryWarnin'", $e->getMessage());
        }

        // a listener that throws: the others still run, the exception reaches the caller
        $t2 = new ResourceTracker(['maxMemoryUsage' => 100]);
        $ran = false;
        $t2->on('memoryCritical', static function (): void {
            throw new \RuntimeException('listener failed');
        });
        $t2->on('memoryCritical', function () use (&$ran): void {
            $ran = true;
        });
        try {
            $t2->trackResource('x', 'x', null, 100);
            $this->fail('the listener\'s exception must reach the caller');
        } catch (\RuntimeException $e) {
            $this->assertSame('listener failed', $e->getMessage());
        }
        $this->assertTrue($ran);
        $this->assertSame(1, $t2->getMemoryStats()['activeResources'], 'the resource was tracked');
    }

    public function testObjectsCollectedWithoutAReleaseAreCountedAsLeaked(): void
    {
        $t = new ResourceTracker();
        $kept = new \stdClass();
        $dropped = new \stdClass();
        $released = new \stdClass();
        $t->trackResource($kept, 'chunk', ['size' => 1]);
        $t->trackResource($dropped, 'chunk', ['size' => 2]);
        $r = $t->trackResource($released, 'chunk', ['size' => 4]);
        $str = $t->trackResource('a string cannot be weakly referenced', 'buffer');
        $t->releaseResource($r);
        unset($dropped);
        $s = $t->getMemoryStats();
        $this->assertSame(2, $s['activeResources']);
        $this->assertSame(1 + strlen('a string cannot be weakly referenced'), $s['totalAllocated']);
        $this->assertSame(
            ['cleaned_up' => 0, 'collected_unreleased' => 1, 'live' => 1, 'released' => 1],
            self::sortedKeys($s['leaks']['chunk'])
        );
        $this->assertSame(1, $t->leakReport()['buffer']['live']);

        // an object in a reference cycle goes with gc_collect_cycles(), which cleanup() runs
        $cyclic = new \stdClass();
        $cyclic->self = $cyclic;
        $id = $t->trackResource($cyclic, 'cyclic');
        unset($cyclic);
        $this->assertNotNull($t->getResource($id), 'not collected yet');
        $t->cleanup();
        $this->assertNull($t->getResource($id));
        $this->assertSame(1, $t->leakReport()['cyclic']['collected_unreleased']);
        $t->releaseResource($str);
        unset($kept);
    }

    public function testCleanupReleasesTheOldestAndRunsTheHooks(): void
    {
        $order = [];
        $t = new ResourceTracker([
            'maxMemoryUsage' => 1000,
            'cleanupInterval' => 0,
            'enableAutoCleanup' => true,
            'gcCallback' => function () use (&$order): void {
                $order[] = 'gcCallback';
            },
        ]);
        $t->onBeforeGC(function () use (&$order): void {
            $order[] = 'before';
        });
        $cleanups = [];
        $t->on('cleanup', function (array $e) use (&$cleanups, &$order): void {
            $cleanups[] = $e;
            $order[] = 'event';
        });
        $objects = [];
        $ids = [];
        for ($i = 0; $i < 9; $i++) {
            $objects[] = $o = new \stdClass();
            $ids[] = $t->trackResource($o, 'chunk', ['size' => 100]);
        }
        $report = $t->cleanup();
        $this->assertSame(array_slice($ids, 0, 3), $report['released_ids']);
        $this->assertSame(300, $report['freed_bytes']);
        $this->assertSame(['before', 'event', 'gcCallback'], $order);
        $this->assertSame(array_slice($ids, 0, 3), $cleanups[0]['detail']['released_ids']);
        $s = $t->getMemoryStats();
        $this->assertSame(600, $s['totalAllocated']);
        $this->assertSame(3, $s['leaks']['chunk']['cleaned_up']);
        // the objects cleanup released are no longer watched: dropping them is not a leak
        $objects = [];
        unset($o);
        $this->assertSame(6, $t->getMemoryStats()['leaks']['chunk']['collected_unreleased']);

        // without enableAutoCleanup, cleanup() runs the hooks and releases nothing
        $t = new ResourceTracker(['maxMemoryUsage' => 100, 'gc_callback' => static fn () => null]);
        $t->trackResource('x', 'x', null, 100);
        $this->assertSame([], $t->cleanup()['released_ids']);
    }

    public function testTheAutoCleanupTimerRunsInTheLibraryAndItsEventsArePolled(): void
    {
        $t = new ResourceTracker(['max_memory_usage' => 1000, 'cleanup_interval' => 10, 'enable_auto_cleanup' => true]);
        $events = [];
        $t->on('cleanup', function (array $e) use (&$events): void {
            $events[] = $e;
        });
        for ($i = 0; $i < 9; $i++) {
            $t->trackResource('chunk', 'chunk', null, 100);
        }
        $deadline = microtime(true) + 10;
        while ($t->getMemoryStats()['totalAllocated'] !== 600 && microtime(true) < $deadline) {
            usleep(5_000);
        }
        $this->assertSame(600, $t->getMemoryStats()['totalAllocated']);
        $this->assertNotEmpty($events, 'the timer\'s cleanup events reach the PHP listeners');
        $this->assertSame([1, 2, 3], array_merge(...array_map(static fn ($e) => $e['detail']['released_ids'], $events)));
        $t->dispose();
    }

    public function testDisposeReturnsTheFinalLeakReportAndClosesTheTracker(): void
    {
        $t = new ResourceTracker();
        $a = $t->trackResource(new \stdClass(), 'chunk', ['size' => 1]);
        $lost = new \stdClass();
        $t->trackResource($lost, 'chunk', ['size' => 1]);
        $t->trackResource('live', 'chunk');
        $t->releaseResource($a);
        unset($lost);
        $report = $t->dispose();
        $this->assertSame(
            ['cleaned_up' => 0, 'collected_unreleased' => 1, 'live' => 1, 'released' => 1],
            self::sortedKeys($report['chunk'])
        );
        $this->assertSame($report, $t->dispose());
        $this->assertSame($report, $t->leakReport());
        foreach ([
            static fn () => $t->trackResource('x', 'x'),
            static fn () => $t->releaseResource(1),
            static fn () => $t->getMemoryStats(),
            static fn () => $t->cleanup(),
        ] as $call) {
            try {
                $call();
                $this->fail('a disposed tracker must refuse calls');
            } catch (ClosedException $e) {
                $this->assertStringContainsString('disposed', $e->getMessage());
            }
        }
    }

    public function testDebugSwitchesAndSnapshot(): void
    {
        $t = new ResourceTracker(['resourceTracking' => ['enabled' => true, 'detailed' => true, 'metadata' => true]]);
        $o = new \stdClass();
        $id = $t->trackResource($o, 'chunk', ['size' => 3]);
        $sid = $t->trackResource('abc', 'buffer');
        $d = $t->debug();
        $this->assertTrue($d['trackingEnabled']);
        $this->assertFalse($d['verbose']);
        $this->assertSame(['buffer' => 3, 'chunk' => 3], self::sortedKeys($d['stats']['bytesByType']));
        $this->assertTrue($d['resources'][$id]['alive']);
        $this->assertNull($d['resources'][$sid]['alive']);

        $d = $t->debug(['trackingEnabled' => false]);
        $this->assertFalse($d['trackingEnabled']);
        $this->assertSame(0, $t->trackResource('ignored', 'x'));
        $this->assertSame(2, $t->getMemoryStats()['activeResources']);
        $t->debug(['trackingEnabled' => true]);
        $this->assertGreaterThan(0, $t->trackResource('counted', 'x'));

        foreach ([['verbos' => true], ['verbose' => 'yes']] as $bad) {
            try {
                $t->debug($bad);
                $this->fail('accepted ' . json_encode($bad));
            } catch (InvalidArgumentException $e) {
                $this->assertMatchesRegularExpression('/verbos/', $e->getMessage());
            }
        }

        // verbose: every operation goes to error_log()
        $log = (string) tempnam(sys_get_temp_dir(), 'mw-debug-');
        $old = ini_set('error_log', $log);
        try {
            $t->debug(['verbose' => true]);
            $x = $t->trackResource('v', 'verbose-type');
            $t->releaseResource($x);
        } finally {
            ini_set('error_log', (string) $old);
        }
        $text = (string) file_get_contents($log);
        unlink($log);
        $this->assertStringContainsString("tracked #{$x} (verbose-type, 1 bytes)", $text);
        $this->assertStringContainsString("released #{$x}", $text);
        unset($o);
    }

    public function testDisabledTrackingAndDroppedMetadata(): void
    {
        $t = new ResourceTracker(['resourceTracking' => ['enabled' => false]]);
        $this->assertSame(0, $t->trackResource(new \stdClass(), 'x', ['size' => 5]));
        $this->assertSame(0, $t->getMemoryStats()['activeResources']);
        $t = new ResourceTracker(['resource_tracking' => ['metadata' => false]]);
        $id = $t->trackResource('abc', 'x', ['secret' => 1]);
        $this->assertSame([], $t->getResource($id)['metadata']);
    }

    /** @return iterable<string,array{0:array<string,mixed>,1:string}> */
    public static function badConfigs(): iterable
    {
        yield 'warning above 1' => [['thresholds' => ['warning' => 1.5]], 'warning'];
        yield 'warning above critical' => [['thresholds' => ['warning' => 0.9, 'critical' => 0.5]], 'above'];
        yield 'a typo' => [['maxMemoryUsag' => 1], 'did you mean'];
        yield 'negative max' => [['maxMemoryUsage' => -5], 'maxMemoryUsage'];
        yield 'both spellings' => [['maxMemoryUsage' => 1, 'max_memory_usage' => 1], 'same option'];
        yield 'gcCallback not callable' => [['gcCallback' => 5], 'gcCallback'];
        yield 'reportAtExit not a bool' => [['reportAtExit' => 'yes'], "'reportAtExit'"];
        yield 'report_at_exit not a bool' => [['report_at_exit' => 1], "'report_at_exit'"];
        yield 'both exit spellings' => [['reportAtExit' => true, 'report_at_exit' => true], 'same option'];
    }

    /** @return array{0:int,1:string,2:string} exit code, stdout and stderr of a fresh `php` running $code */
    private function runPhp(string $code): array
    {
        $script = 'require ' . var_export(dirname(__DIR__) . '/autoload.php', true) . ';' . $code;
        $proc = proc_open([PHP_BINARY, '-d', 'ffi.enable=1', '-r', $script], [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
        $this->assertIsResource($proc);
        $out = (string) stream_get_contents($pipes[1]);
        $err = (string) stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);
        return [proc_close($proc), $out, $err];
    }

    /** @return list<array<string,mixed>> the reports a child wrote to stderr, decoded */
    private static function exitReports(string $stderr): array
    {
        $prefix = 'memwarden: ResourceTracker leak report at exit: ';
        $reports = [];
        foreach (explode("\n", $stderr) as $line) {
            if (str_starts_with($line, $prefix)) {
                $reports[] = json_decode(substr($line, strlen($prefix)), true, 512, JSON_THROW_ON_ERROR);
            }
        }
        return $reports;
    }

    public function testLeakReportAtExitOnRequest(): void
    {
        [$code, $out, $err] = $this->runPhp(<<<'PHP'
            $t = new Memwarden\ResourceTracker(['reportAtExit' => true]);
            $t->trackResource(null, 'chunk', ['size' => 100]);
            $done = $t->trackResource(null, 'chunk', ['size' => 5]);
            $t->releaseResource($done);
            $lost = new stdClass();
            $t->trackResource($lost, 'buffer', ['size' => 7]);
            unset($lost);                                   // collected without a release
            $quiet = new Memwarden\ResourceTracker();      // not asked: no report
            $quiet->trackResource(null, 'chunk', ['size' => 1]);
            $gone = new Memwarden\ResourceTracker(['report_at_exit' => true]);
            $gone->dispose();                               // disposed: nothing left to report
            echo "script done\n";
            PHP);
        $this->assertSame(0, $code, $err);
        $this->assertSame("script done\n", $out, 'the report goes to stderr, not stdout');
        $reports = self::exitReports($err);
        $this->assertCount(1, $reports, $err);
        $this->assertSame(1, $reports[0]['activeResources']);
        $this->assertSame(100, $reports[0]['totalAllocated']);
        $this->assertEquals(['live' => 1, 'released' => 1, 'collected_unreleased' => 0, 'cleaned_up' => 0], $reports[0]['leaks']['chunk']);
        $this->assertEquals(['live' => 0, 'released' => 0, 'collected_unreleased' => 1, 'cleaned_up' => 0], $reports[0]['leaks']['buffer']);
    }

    public function testVerboseDebugAlsoReportsAtExitAndAFatalErrorStillReports(): void
    {
        [$code, $out, $err] = $this->runPhp(<<<'PHP'
            $t = new Memwarden\ResourceTracker();
            $t->debug(['verbose' => true]);
            $t->trackResource(null, 'chunk', ['size' => 3]);
            $u = new Memwarden\ResourceTracker(['reportAtExit' => true]);
            $u->trackResource(null, 'image', ['size' => 9]);
            throw new RuntimeException('the script died');
            PHP);
        $this->assertSame(255, $code, $err);
        $this->assertStringContainsString('the script died', $out . $err);
        $reports = self::exitReports($err);
        $this->assertCount(2, $reports, $err);
        $this->assertSame(['chunk'], array_keys($reports[0]['leaks']));
        $this->assertSame(['image'], array_keys($reports[1]['leaks']));
        $this->assertSame(9, $reports[1]['totalAllocated']);

        [$code, , $err] = $this->runPhp(<<<'PHP'
            $t = new Memwarden\ResourceTracker();
            $t->debug(['verbose' => true]);
            $t->debug(['verbose' => false]);
            $t->trackResource(null, 'chunk', ['size' => 3]);
            PHP);
        $this->assertSame(0, $code, $err);
        $this->assertSame([], self::exitReports($err), 'verbose switched off again: no report');
    }

    /**
     * @dataProvider badConfigs
     * @param array<string,mixed> $config
     */
    public function testBadConfigNamesTheKey(array $config, string $needle): void
    {
        try {
            new ResourceTracker($config);
            $this->fail('accepted ' . json_encode($config));
        } catch (InvalidConfigException $e) {
            $this->assertStringContainsString($needle, $e->getMessage());
        }
    }
}
