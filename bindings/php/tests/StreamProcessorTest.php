<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;
use Memwarden\Exception\IoException;
use Memwarden\ResourceTracker;
use Memwarden\StreamProcessor;
use PHPUnit\Framework\TestCase;

final class StreamProcessorTest extends TestCase
{
    private static string $data;
    private string $file;

    public static function setUpBeforeClass(): void
    {
        $s = '';
        for ($i = 0; $i < 200_077; $i++) {
            $s .= chr(($i * 31) % 251);
        }
        self::$data = $s;
    }

    protected function setUp(): void
    {
        $this->file = tempnam(sys_get_temp_dir(), 'mw-stream-');
        file_put_contents($this->file, self::$data);
    }

    protected function tearDown(): void
    {
        @unlink($this->file);
    }

    public function testEveryByteOnceInIndexOrder(): void
    {
        $sp = new StreamProcessor(['chunkSize' => '16K', 'concurrentStreams' => 3, 'maxMemoryUsage' => '1M']);
        $seen = [];
        $next = 0;
        $summary = $sp->processFile($this->file, function (string $chunk, array $info) use (&$seen, &$next): void {
            $this->assertSame($next++, $info['index']);
            $this->assertSame(strlen($chunk), $info['size']);
            $seen[] = [$info['offset'], $chunk];
        });
        $joined = '';
        foreach ($seen as [$offset, $chunk]) {
            $this->assertSame(strlen($joined), $offset);
            $joined .= $chunk;
        }
        $this->assertSame(hash('sha256', self::$data), hash('sha256', $joined));
        $this->assertTrue($summary['final']);
        $this->assertSame((int) ceil(strlen(self::$data) / 16384), $summary['chunks']);
        $this->assertSame(strlen(self::$data), $summary['bytes']);
        $this->assertSame(1, $summary['peakInFlight'], 'PHP handles one chunk at a time');
        $this->assertSame(0, $sp->stats()['tracker']['activeResources']);
    }

    public function testStreamsAndSnakeCaseKeys(): void
    {
        $sp = new StreamProcessor(['chunk_size' => 10_000, 'concurrent_streams' => 1]);
        $mem = fopen('php://memory', 'w+b');
        fwrite($mem, self::$data);
        rewind($mem);
        $parts = [];
        $sp->processStream($mem, function (string $c) use (&$parts): void {
            $parts[] = $c;
        });
        fclose($mem);
        $this->assertSame(self::$data, implode('', $parts));
        foreach (array_slice($parts, 0, -1) as $p) {
            $this->assertSame(10_000, strlen($p));
        }
        $empty = fopen('php://memory', 'rb');
        $this->assertSame(0, $sp->processStream($empty, fn () => $this->fail('no chunk expected'))['chunks']);
        fclose($empty);
    }

    public function testCompressionRoundTrips(): void
    {
        $sp = new StreamProcessor(['chunkSize' => '32K', 'compressionEnabled' => true]);
        $out = '';
        $summary = $sp->processFile($this->file, function (string $gz) use (&$out): void {
            $this->assertSame("\x1f\x8b", substr($gz, 0, 2));
            $out .= gzdecode($gz);
        });
        $this->assertSame(self::$data, $out);
        $this->assertGreaterThan(0, $summary['compressedBytes']);
        $this->assertSame('hello', gzdecode($sp->compress('hello')));
        $this->assertSame('', gzdecode($sp->compress('')));
    }

    public function testTrackedBytesStayWithinTheBoundWithASlowHandler(): void
    {
        $sp = new StreamProcessor(['chunkSize' => '16K', 'maxMemoryUsage' => '64K']);
        $most = 0;
        $sp->processFile($this->file, function () use ($sp, &$most): void {
            $most = max($most, $sp->stats()['tracker']['totalAllocated']);
            usleep(500);
        });
        $this->assertSame(16384, $most, 'exactly one chunk in flight');
        $this->assertLessThanOrEqual(64 * 1024, $sp->stats()['tracker']['peakMemoryUsage']);
    }

    public function testAHandlerExceptionIsRethrownAndTheChunkIsKnown(): void
    {
        $sp = new StreamProcessor(['chunkSize' => 10_000]);
        $calls = 0;
        try {
            $sp->processFile($this->file, function (string $c, array $info) use (&$calls): void {
                $calls++;
                if ($info['index'] === 3) {
                    throw new \DomainException('upload refused');
                }
            });
            $this->fail('the handler\'s exception must reach the caller');
        } catch (\DomainException $e) {
            $this->assertSame('upload refused', $e->getMessage());
        }
        $this->assertSame(4, $calls);
        $this->assertSame(['index' => 3, 'offset' => 30_000, 'size' => 10_000], $sp->lastFailure());
        $t = $sp->stats()['tracker'];
        $this->assertSame([0, 0], [$t['activeResources'], $t['totalAllocated']]);
        $this->assertSame(strlen(self::$data), $sp->processFile($this->file, fn () => null)['bytes']);
        $this->assertNull($sp->lastFailure());
    }

    public function testPerformanceEvents(): void
    {
        $got = [];
        $sp = new StreamProcessor([
            'chunkSize' => 100_000,
            'performanceCallback' => function (array $e) use (&$got): void {
                $got[] = $e;
            },
        ]);
        $sp->processFile($this->file, fn () => null);
        $this->assertCount(4, $got); // 3 chunks and the summary
        foreach (array_slice($got, 0, 3) as $i => $e) {
            $this->assertSame(['performance', false, $i], [$e['type'], $e['final'], $e['index']]);
            $this->assertGreaterThanOrEqual(0, $e['speed']);
            $this->assertGreaterThanOrEqual(0, $e['processingTime']);
            $this->assertSame(100_000, $e['memoryUsage']);
        }
        $this->assertTrue($got[3]['final']);
        $critical = [];
        $small = new StreamProcessor(['chunkSize' => 1000, 'maxMemoryUsage' => 1000]);
        $small->on('memoryCritical', function (array $e) use (&$critical): void {
            $critical[] = $e;
        });
        $small->processFile($this->file, fn () => null);
        $this->assertNotEmpty($critical);
    }

    public function testBadInput(): void
    {
        foreach ([
            [['chunkSize' => 0], 'chunkSize'],
            [['chunkSize' => -1], 'negative'],
            [['concurrentStreams' => 0], 'concurrentStreams'],
            [['maxMemoryUsage' => '-5M'], 'negative'],
            [['chunkSise' => 1], "did you mean 'chunkSize'"],
            [['chunkSize' => '2M', 'maxMemoryUsage' => '1M'], 'larger than maxMemoryUsage'],
        ] as [$options, $text]) {
            try {
                new StreamProcessor($options);
                $this->fail('accepted ' . json_encode($options));
            } catch (InvalidConfigException $e) {
                $this->assertStringContainsString($text, $e->getMessage());
            }
        }
        $sp = new StreamProcessor();
        try {
            $sp->processFile('/nonexistent/memwarden.bin', fn () => null);
            $this->fail('a missing file must fail');
        } catch (IoException $e) {
            $this->assertStringContainsString("cannot open '/nonexistent/memwarden.bin'", $e->getMessage());
        }
        $this->expectException(InvalidArgumentException::class);
        $sp->processStream('not a stream', fn () => null);
    }

    public function testUnknownEventsAndBadCallbacks(): void
    {
        $sp = new StreamProcessor();
        try {
            $sp->on('progress', fn () => null);
            $this->fail('unknown event accepted');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString("'progress'", $e->getMessage());
        }
        $this->expectException(InvalidArgumentException::class);
        new StreamProcessor(['performanceCallback' => 3]);
    }
    public function testATrackerOfYourOwnSeesTheChunksAndHearsTheirEvents(): void
    {
        $tracker = new ResourceTracker(['maxMemoryUsage' => 100_000, 'thresholds' => ['warning' => 0.5, 'critical' => 0.9]]);
        $warnings = [];
        $tracker->on('memoryWarning', function (array $e) use (&$warnings): void {
            $warnings[] = $e;
        });
        $buffer = $tracker->trackResource(null, 'buffer', ['size' => 40_000]);
        $sp = new StreamProcessor(['chunkSize' => 20_000, 'tracker' => $tracker]);
        $this->assertSame($tracker, $sp->getTracker());
        $spWarnings = [];
        $sp->on('memoryWarning', function (array $e) use (&$spWarnings): void {
            $spWarnings[] = $e['index'];
        });
        $during = [];
        $summary = $sp->processFile($this->file, function (string $chunk) use ($tracker, &$during): void {
            $during[] = $tracker->getMemoryStats();
        });
        $this->assertSame(11, $summary['chunks']);
        $this->assertCount(11, $during);
        foreach ($during as $st) {
            $this->assertSame(['buffer' => 1, 'chunk' => 1], $st['byType']);
            $this->assertSame(60_000, $st['totalAllocated']);
        }
        $st = $tracker->getMemoryStats();
        $this->assertSame([40_000, 1, 60_000, 13], [$st['totalAllocated'], $st['activeResources'], $st['peakMemoryUsage'], $st['totalTracked']]);
        $this->assertEquals(['live' => 0, 'released' => 12, 'collected_unreleased' => 0, 'cleaned_up' => 0], $tracker->leakReport()['chunk']);
        // Each admission took the tracker past its warning level (50_000); both heard it.
        $this->assertCount(12, $warnings);
        foreach ($warnings as $e) {
            $this->assertSame(60_000, $e['usage']);
        }
        $this->assertSame(range(0, 11), $spWarnings);
        $tracker->releaseResource($buffer);
    }

    public function testTheTrackersBudgetBoundsTheChunks(): void
    {
        // PHP handles one chunk at a time, so reading never waits here (the backpressure from a
        // tracker's thresholds is tested with chunks in flight at once in C, Python and Node);
        // the tracker's maxMemoryUsage still bounds the chunk size.
        $tracker = new ResourceTracker(['maxMemoryUsage' => 50_000]);
        $sp = new StreamProcessor(['chunkSize' => 20_000, 'tracker' => $tracker]);
        $tracker->trackResource(null, 'buffer', ['size' => 45_000]);
        $summary = $sp->processFile($this->file, function (): void {
        });
        $this->assertSame(1, $summary['peakInFlight']);
        $this->assertSame(65_000, $tracker->getMemoryStats()['peakMemoryUsage'], 'one chunk is always admitted when none is in flight');
        $this->expectException(InvalidConfigException::class);
        $this->expectExceptionMessage('larger than maxMemoryUsage (50000)');
        new StreamProcessor(['chunkSize' => 60_000, 'tracker' => $tracker]);
    }

    public function testMemoryWarningAndCriticalEventsCarryTheChunkIndex(): void
    {
        $sp = new StreamProcessor(['chunkSize' => 100_000, 'maxMemoryUsage' => 150_000, 'thresholds' => ['warning' => 0.5, 'critical' => 0.9]]);
        $warnings = [];
        $critical = [];
        $sp->on('memoryWarning', function (array $e) use (&$warnings): void {
            $warnings[] = $e;
        });
        $sp->on('memoryCritical', function (array $e) use (&$critical): void {
            $critical[] = $e;
        });
        $sp->processFile($this->file, function (): void {
        });
        $this->assertSame([0, 1, 2, 3], array_column($warnings, 'index'), '3 chunks and the end-of-input probe');
        $this->assertSame([100_000], array_values(array_unique(array_column($warnings, 'usage'))));
        $this->assertSame([], $critical);

        $sp = new StreamProcessor(['chunkSize' => 100_000, 'maxMemoryUsage' => 150_000, 'thresholds' => ['warning' => 0.3, 'critical' => 0.6]]);
        $sp->on('memoryCritical', function (array $e) use (&$critical): void {
            $critical[] = $e;
        });
        $sp->processFile($this->file, function (): void {
        });
        $this->assertSame([0, 1, 2, 3], array_column($critical, 'index'));
    }

    public function testTheTrackerOptionTakesOnlyAResourceTracker(): void
    {
        foreach ([new \stdClass(), 'tracker', 3, ['maxMemoryUsage' => 1]] as $bad) {
            try {
                new StreamProcessor(['tracker' => $bad]);
                $this->fail('accepted ' . get_debug_type($bad));
            } catch (\TypeError $e) {
                $this->assertStringContainsString("'tracker' must be a Memwarden\\ResourceTracker, got " . get_debug_type($bad), $e->getMessage());
            }
        }
        $tracker = new ResourceTracker(['maxMemoryUsage' => 1000]);
        try {
            new StreamProcessor(['tracker' => $tracker, 'maxMemoryUsage' => 10]);
            $this->fail('accepted maxMemoryUsage with a tracker');
        } catch (InvalidConfigException $e) {
            $this->assertStringContainsString("'maxMemoryUsage' is an option of the tracker", $e->getMessage());
        }
        $this->assertNull((new StreamProcessor(['tracker' => null]))->getTracker());
        try {
            (new StreamProcessor())->on('progress', 'print_r');
            $this->fail('accepted an unknown event');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString("'performance', 'memoryWarning' or 'memoryCritical'", $e->getMessage());
        }
    }
}
