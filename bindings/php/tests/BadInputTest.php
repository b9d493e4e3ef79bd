<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\Exception;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;
use Memwarden\Exception\MemwardenException;
use Memwarden\MemoryManager;
use PHPUnit\Framework\TestCase;

final class BadInputTest extends TestCase
{
    /** @return array<string,array{0:array<mixed>,1:list<string>}> */
    public static function badConfigs(): array
    {
        return [
            'unknown key' => [['warning_threshhold' => 0.7], ["unknown key 'warning_threshhold'", "did you mean 'warning_threshold'"]],
            'wrong type' => [['warning_threshold' => 'high'], ["'warning_threshold'", "'high'"]],
            'out of range' => [['critical_threshold' => 1.5], ["'critical_threshold'", '1.5']],
            'thresholds out of order' => [['warning_threshold' => 0.95], ['warning_threshold < critical_threshold', '0.95']],
            'bool as string' => [['enable_detailed_tracking' => 'yes'], ["'enable_detailed_tracking'", "'yes'"]],
            'bad memory_limit' => [['memory_limit' => '12X'], ["'memory_limit'", "'12X'"]],
            'bad source' => [['source' => 'heap'], ["'source'", "'heap'"]],
            'node source' => [['source' => 'v8-heap'], ["'source'", 'v8-heap']],
            'negative seed' => [['random_seed' => -1], ["'random_seed'", '-1']],
            'NaN' => [['hysteresis' => NAN], ["'hysteresis'", 'NAN']],
            'list instead of options' => [[0.5], ["unknown key '0'"]],
            'host_gc not bool' => [['host_gc' => 'yes'], ["'host_gc'", "'yes'"]],
            'php_readings not bool' => [['php_readings' => 1], ["'php_readings'", '1']],
            'gc_callback not callable' => [['gc_callback' => 'no_such_function_here'], ["'gc_callback'", 'string']],
        ];
    }

    /**
     * @dataProvider badConfigs
     * @param array<mixed> $config
     * @param list<string> $needles
     */
    public function testBadConfigNamesKeyAndValue(array $config, array $needles): void
    {
        try {
            new MemoryManager($config);
            $this->fail('expected InvalidConfigException');
        } catch (InvalidConfigException $e) {
            $this->assertSame(3, $e->getCode());
            $this->assertInstanceOf(MemwardenException::class, $e);
            $this->assertInstanceOf(\RuntimeException::class, $e);
            foreach ($needles as $needle) {
                $this->assertStringContainsString($needle, $e->getMessage());
            }
        }
    }

    public function testEmptyConfigIsAnObjectNotAList(): void
    {
        $m = new MemoryManager([]);
        $this->assertSame('host', $m->getMemoryUsage()['source']);
    }

    public function testBadLimitLeavesTheManagerUnchanged(): void
    {
        $m = new MemoryManager();
        $m->setMemoryLimit('512M');
        foreach (['12X', '', 'abc', '-5', '0'] as $bad) {
            try {
                $m->setMemoryLimit($bad);
                $this->fail("'{$bad}' must be rejected");
            } catch (InvalidArgumentException $e) {
                $this->assertSame(2, $e->getCode());
                if ($bad !== '' && $bad !== '0') {
                    $this->assertStringContainsString("'{$bad}'", $e->getMessage());
                }
            }
            $this->assertSame(['bytes' => 512 * 1024 * 1024, 'origin' => 'explicit'], $m->getMemoryLimit());
        }
        foreach ([0, -2] as $bad) {
            try {
                $m->setMemoryLimit($bad);
                $this->fail("{$bad} must be rejected");
            } catch (InvalidArgumentException $e) {
                $this->assertStringContainsString((string) $bad, $e->getMessage());
            }
        }
        $this->assertSame(['bytes' => 512 * 1024 * 1024, 'origin' => 'explicit'], $m->getMemoryLimit());
        $this->assertSame('normal', $m->getMemoryState());
    }

    public function testNegativeHostReadingIsRejected(): void
    {
        $m = new MemoryManager(['php_readings' => false]);
        $this->expectException(InvalidArgumentException::class);
        $this->expectExceptionMessage('-5');
        $m->updateHostReading(-5);
    }

    public function testEveryStatusHasItsClass(): void
    {
        $expected = [
            1 => Exception\NullArgumentException::class,
            2 => Exception\InvalidArgumentException::class,
            3 => Exception\InvalidConfigException::class,
            4 => Exception\TimeoutException::class,
            5 => Exception\ExhaustedException::class,
            6 => Exception\CycleException::class,
            7 => Exception\NotFoundException::class,
            8 => Exception\IoException::class,
            9 => Exception\DatabaseException::class,
            10 => Exception\CallbackException::class,
            11 => Exception\ClosedException::class,
            12 => Exception\UnsupportedException::class,
            99 => Exception\PanicException::class,
        ];
        foreach ($expected as $status => $class) {
            $e = MemwardenException::fromStatus($status, "message {$status}");
            $this->assertSame($class, get_class($e));
            $this->assertSame($status, $e->getCode());
            $this->assertSame("message {$status}", $e->getMessage());
            $this->assertInstanceOf(MemwardenException::class, $e);
        }
        $this->assertSame(MemwardenException::class, get_class(MemwardenException::fromStatus(42, 'x')));
    }
}
