<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\ChunkedDatabaseProcessor;
use Memwarden\Exception\ClosedException;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;
use Memwarden\Exception\NotFoundException;
use Memwarden\LazyContainer;
use Memwarden\MemoryAlertingService;
use Memwarden\MemoryManager;
use Memwarden\MemoryPool;
use Memwarden\Native;
use Memwarden\StreamingIterator;
use PHPUnit\Framework\TestCase;

/**
 * The bad-input table for PHP (README "Reliability"): wrong types, null, huge values, empty
 * strings, invalid UTF-8, use after close / dispose. Each row is one call that must throw the
 * given exception class with a message naming the problem; none may crash PHP.
 */
final class BadInputTableTest extends TestCase
{
    private static function closedPool(): MemoryPool
    {
        $p = new MemoryPool(['factory' => fn () => new \stdClass(), 'max_size' => 1]);
        $p->close();
        return $p;
    }

    private static function disposedContainer(): LazyContainer
    {
        $c = new LazyContainer();
        $c->singleton('db', fn () => new \stdClass());
        $c->dispose();
        return $c;
    }

    /** @return array<string,array{0:\Closure,1:class-string<\Throwable>,2:string}> */
    public static function cases(): array
    {
        return [
            'size: empty string' => [fn () => Native::parseSize(''), InvalidArgumentException::class, "/invalid size ''/"],
            'size: unknown unit' => [fn () => Native::parseSize('12X'), InvalidArgumentException::class, "/'12X'/"],
            'size: huge' => [fn () => Native::parseSize('99999999999999999999G'), InvalidArgumentException::class, '/too large/'],
            'size: invalid UTF-8' => [fn () => Native::parseSize("\xff\xfe"), InvalidArgumentException::class, '/UTF-8/'],
            'size: null' => [fn () => Native::parseSize(null), \TypeError::class, '/string/'],
            'manager: unknown key' => [fn () => new MemoryManager(['warning_treshold' => 0.5]), InvalidConfigException::class, "/did you mean 'warning_threshold'/"],
            'manager: invalid UTF-8 value' => [fn () => new MemoryManager(['source' => "\xff"]), InvalidConfigException::class, '/source|UTF-8/'],
            'manager: config not an array' => [fn () => new MemoryManager('big'), \TypeError::class, '/array/'],
            'manager: bad limit' => [fn () => (new MemoryManager())->setMemoryLimit('lots'), InvalidArgumentException::class, "/'lots'/"],
            'manager: limit of wrong type' => [fn () => (new MemoryManager())->setMemoryLimit(1.5), \TypeError::class, '/string\|int/'],
            'manager: negative limit' => [fn () => (new MemoryManager())->setMemoryLimit(-7), InvalidArgumentException::class, '/-7/'],
            'manager: huge limit' => [fn () => (new MemoryManager())->setMemoryLimit('99999999999G'), InvalidArgumentException::class, '/too large/'],
            'pool: max_size 0' => [fn () => new MemoryPool(['factory' => fn () => new \stdClass(), 'max_size' => 0]), InvalidConfigException::class, "/'max_size'/"],
            'pool: min above max' => [fn () => new MemoryPool(['factory' => fn () => new \stdClass(), 'min_size' => 5, 'max_size' => 2]), InvalidConfigException::class, '/must not exceed/'],
            'pool: no factory' => [fn () => new MemoryPool(['max_size' => 2]), InvalidConfigException::class, '/factory/'],
            'pool: acquire after close' => [fn () => self::closedPool()->acquire(), ClosedException::class, '/closed/'],
            'pool: foreign object released' => [fn () => (new MemoryPool(['factory' => fn () => new \stdClass()]))->release(new \stdClass()), InvalidArgumentException::class, '/not in use from this pool/'],
            'container: unknown name' => [fn () => (new LazyContainer())->get('missing'), NotFoundException::class, "/'missing'/"],
            'container: get after dispose' => [fn () => self::disposedContainer()->get('db'), ClosedException::class, '/dispose|closed/'],
            'container: empty name' => [fn () => (new LazyContainer())->singleton('', fn () => 1), InvalidArgumentException::class, '/empty/'],
            'iterator: chunk_size 0' => [fn () => new StreamingIterator([1, 2], ['chunk_size' => 0]), InvalidConfigException::class, "/'chunk_size'/"],
            'chunk: malformed connection' => [fn () => new ChunkedDatabaseProcessor('nowhere'), InvalidArgumentException::class, "/malformed connection string 'nowhere'/"],
            'chunk: chunk_size 0' => [fn () => new ChunkedDatabaseProcessor('sqlite::memory:', ['chunk_size' => 0]), InvalidConfigException::class, "/'chunk_size'/"],
            'alert: unknown channel' => [fn () => new MemoryAlertingService(['channels' => ['pager' => []]]), InvalidConfigException::class, '/pager/'],
            'alert: bad level' => [fn () => (new MemoryAlertingService())->sendAlert('x', 'loud'), InvalidArgumentException::class, '/loud/'],
        ];
    }

    /**
     * @dataProvider cases
     * @param class-string<\Throwable> $class
     */
    public function testBadInputThrowsAClearError(\Closure $call, string $class, string $pattern): void
    {
        try {
            $call();
        } catch (\Throwable $e) {
            $this->assertInstanceOf($class, $e, get_class($e) . ': ' . $e->getMessage());
            $this->assertMatchesRegularExpression($pattern, $e->getMessage());
            return;
        }
        $this->fail("nothing was thrown; expected $class");
    }
}
