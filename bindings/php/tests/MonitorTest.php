<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;
use Memwarden\Exception\IoException;
use Memwarden\Exception\NotFoundException;
use Memwarden\Monitor;
use PHPUnit\Framework\TestCase;

/**
 * Memwarden\Monitor and Monitor::analyzeFile(): background sampling of this PHP process and of
 * a child, the series, the analysis, export files written here and by the `memwarden` CLI, and
 * bad input. The CLI binary is $MEMWARDEN_BIN or <target>/debug/memwarden ($CARGO_TARGET_DIR
 * or the repository's target/), built with cargo when missing.
 */
final class MonitorTest extends TestCase
{
    private string $dir;

    protected function setUp(): void
    {
        $this->dir = sys_get_temp_dir() . '/mw-php-monitor-' . getmypid() . '-' . bin2hex(random_bytes(4));
        mkdir($this->dir);
    }

    protected function tearDown(): void
    {
        foreach (glob($this->dir . '/{,.}*', GLOB_BRACE) ?: [] as $f) {
            if (is_file($f)) {
                unlink($f);
            }
        }
        rmdir($this->dir);
    }

    /** Polls $pred every 5 ms until it holds, failing after $seconds. */
    private static function poll(callable $pred, string $what, float $seconds = 10.0): void
    {
        $end = microtime(true) + $seconds;
        while (!$pred()) {
            if (microtime(true) > $end) {
                self::fail("timed out after {$seconds} s waiting for {$what}");
            }
            usleep(5000);
        }
    }

    private static function cli(): string
    {
        $env = getenv('MEMWARDEN_BIN');
        if (is_string($env) && $env !== '') {
            return $env;
        }
        $repo = dirname(__DIR__, 3);
        $target = getenv('CARGO_TARGET_DIR') ?: $repo . '/target';
        $bin = $target . '/debug/memwarden';
        if (!is_file($bin)) {
            $cmd = 'cd ' . escapeshellarg($repo) . ' && cargo build --quiet -p memwarden-cli 2>&1';
            exec($cmd, $output, $code);
            self::assertSame(0, $code, implode("\n", $output));
        }
        self::assertFileExists($bin);
        return $bin;
    }

    public function testUseSamplesInTheBackgroundAndTheExportGrows(): void
    {
        $live = $this->dir . '/live.jsonl';
        $m = new Monitor(['pid' => getmypid(), 'interval' => 0.02, 'threshold' => 70, 'export' => $live]);
        self::assertFalse($m->isRunning());
        $m->use(function (Monitor $m) use ($live): void {
            self::assertTrue($m->isRunning());
            self::poll(fn () => count($m->samples()) >= 5, '5 samples');
            self::assertGreaterThanOrEqual(1, Monitor::analyzeFile($live)['samples']);
        });
        self::assertFalse($m->isRunning());
        $samples = $m->samples();
        foreach ($samples as $s) {
            self::assertGreaterThan(0, $s['current_bytes']);
            self::assertGreaterThanOrEqual($s['current_bytes'], $s['peak_bytes']);
        }
        self::assertSame('pid ' . getmypid(), $m->meta()['target']);
        $a = $m->analyze();
        self::assertSame(count($samples), $a['samples']);
        self::assertGreaterThan(0, $a['average_mb']);
        self::assertGreaterThanOrEqual($a['average_mb'], $a['peak_mb']);
        self::assertEqualsWithDelta($a['average_mb'] / $a['peak_mb'] * 100, $a['efficiency_percent'], 1e-9);
        self::assertSame($a, Monitor::analyzeFile($live));
        $copy = $this->dir . '/copy.jsonl';
        $m->export($copy);
        self::assertSame($a, Monitor::analyzeFile($copy));
        $s = $m->sampleNow();
        self::assertGreaterThan(0, $s['current_bytes']);
        self::assertCount(count($samples) + 1, $m->samples());
    }

    public function testUseStopsWhenTheCallableThrows(): void
    {
        $m = new Monitor(['interval' => 0.05]);
        try {
            $m->use(function (): void {
                throw new \RuntimeException('boom');
            });
            self::fail('no exception');
        } catch (\RuntimeException $e) {
            self::assertSame('boom', $e->getMessage());
        }
        self::assertFalse($m->isRunning());
        self::assertGreaterThanOrEqual(1, count($m->samples()));
    }

    public function testAGrowingAllocationShowsUpWithALeakTrend(): void
    {
        $m = new Monitor(['pid' => getmypid(), 'interval' => 60]);
        $held = [];
        for ($i = 0; $i < 8; $i++) {
            $held[] = str_repeat('x', 4 << 20); // 4 MB more, written, so resident
            $m->sampleNow();
        }
        $cur = array_column($m->samples(), 'current_bytes');
        self::assertGreaterThanOrEqual(20 << 20, end($cur) - $cur[0], implode(',', $cur));
        $leak = $m->analyze()['leak'];
        self::assertNotNull($leak);
        self::assertGreaterThan(0, $leak['slope_mb_per_min']);
        self::assertIsString($leak['sentence']);
        self::assertCount(8, $held);
    }

    public function testAProcessThatExitsEndsTheSampler(): void
    {
        $proc = proc_open(['sleep', '30'], [], $pipes);
        self::assertIsResource($proc);
        $pid = proc_get_status($proc)['pid'];
        $m = (new Monitor(['pid' => $pid, 'interval' => 0.01]))->start();
        self::poll(fn () => count($m->samples()) >= 1, 'a sample');
        proc_terminate($proc, 9);
        proc_close($proc);
        self::poll(fn () => !$m->isRunning(), 'the sampler to notice the exit');
        self::assertStringContainsString("process {$pid} has exited", (string) $m->ended());
        $m->stop();
    }

    public function testReadsAnExportWrittenByTheCli(): void
    {
        $bin = self::cli();
        $f = $this->dir . '/cli.jsonl';
        exec(escapeshellarg($bin) . ' monitor --interval 0.1 --duration 0.3 --quiet --export ' . escapeshellarg($f)
            . ' 2>&1', $out, $code);
        self::assertSame(0, $code, implode("\n", $out));
        $a = Monitor::analyzeFile($f);
        $json = shell_exec(escapeshellarg($bin) . ' analyze ' . escapeshellarg($f) . ' --format json');
        $report = json_decode((string) $json, true, 512, JSON_THROW_ON_ERROR);
        self::assertEquals($report['analysis'], $a);
        // Ticks at 0, 0.1, 0.2 and 0.3 s (fewer only if the machine stalled a whole interval).
        self::assertGreaterThanOrEqual(2, $a['samples']);
        self::assertLessThanOrEqual(4, $a['samples']);
    }

    public function testAFileCutMidLineKeepsEveryWholeSample(): void
    {
        $m = new Monitor(['interval' => 60]);
        for ($i = 0; $i < 3; $i++) {
            $m->sampleNow();
        }
        $f = $this->dir . '/run.jsonl';
        $m->export($f);
        $whole = (string) file_get_contents($f);
        file_put_contents($f, substr($whole, 0, -4));
        self::assertSame(2, Monitor::analyzeFile($f)['samples']);
    }

    /** @return array<string,array{string,string}> */
    public static function badFiles(): array
    {
        return [
            'empty' => ['', 'is empty'],
            'truncated header' => ['{"memwarden_monitor": 2, "meta": {"tar', 'is truncated'],
            'foreign JSON' => ["{\"name\": \"something else\"}\n", 'is not a memwarden monitor export'],
            'binary' => ["\x89PNG\r\n\x1a\n", 'is not a memwarden monitor export'],
            'newer format' => ["{\"memwarden_monitor\": 7, \"meta\": {}}\n", 'format 7'],
        ];
    }

    /** @dataProvider badFiles */
    public function testBadFilesThrowNamingTheFile(string $content, string $needle): void
    {
        $f = $this->dir . '/bad.jsonl';
        file_put_contents($f, $content);
        try {
            Monitor::analyzeFile($f);
            self::fail('no exception');
        } catch (InvalidArgumentException $e) {
            self::assertStringContainsString($needle, $e->getMessage());
            self::assertStringContainsString('bad.jsonl', $e->getMessage());
        }
    }

    public function testBadInputThrowsClearExceptions(): void
    {
        $this->expectExceptionThrown(IoException::class, 'cannot read', fn () => Monitor::analyzeFile($this->dir . '/absent'));
        $this->expectExceptionThrown(NotFoundException::class, 'no process with pid 999999999', fn () => new Monitor(['pid' => 999999999]));
        $this->expectExceptionThrown(InvalidConfigException::class, "'interval'", fn () => new Monitor(['interval' => 0]));
        $this->expectExceptionThrown(InvalidConfigException::class, "did you mean 'interval'", fn () => new Monitor(['intervall' => 1]));
        $this->expectExceptionThrown(IoException::class, 'cannot write export file', fn () => new Monitor(['export' => '/nonexistent-dir/x.jsonl']));
        $this->expectExceptionThrown(InvalidArgumentException::class, 'NUL byte', fn () => Monitor::analyzeFile("a\0b"));
        $m = (new Monitor(['interval' => 0.05]))->start();
        $this->expectExceptionThrown(InvalidArgumentException::class, 'already running', fn () => $m->start());
        $m->stop();
        $m->stop(); // a no-op
        $this->expectExceptionThrown(IoException::class, 'cannot write export file', fn () => $m->export('/nonexistent-dir/o.jsonl'));
    }

    /** @param class-string<\Throwable> $class */
    private function expectExceptionThrown(string $class, string $needle, callable $fn): void
    {
        try {
            $fn();
            self::fail("no {$class}");
        } catch (\Throwable $e) {
            self::assertInstanceOf($class, $e, $e->getMessage());
            self::assertStringContainsString($needle, $e->getMessage());
        }
    }
}
