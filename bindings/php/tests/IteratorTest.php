<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\Exception\InvalidConfigException;
use Memwarden\Exception\UnsupportedException;
use Memwarden\FilteredIterator;
use Memwarden\LazyIterator;
use Memwarden\MemoryManager;
use Memwarden\StreamingIterator;
use PHPUnit\Framework\TestCase;

final class IteratorTest extends TestCase
{
    /** @return list<array{id:int,status:string,score:int}> */
    private static function records(int $n): array
    {
        $out = [];
        for ($i = 1; $i <= $n; $i++) {
            $out[] = ['id' => $i, 'status' => $i % 2 ? 'active' : 'inactive', 'score' => $i % 100];
        }
        return $out;
    }

    public function testChunksOfAnArrayAndOfAGenerator(): void
    {
        $it = new StreamingIterator(range(1, 2500), ['chunk_size' => 1000, 'memory_limit' => '128M', 'auto_gc' => true]);
        $sizes = [];
        $all = [];
        foreach ($it as $chunk) {
            $sizes[] = count($chunk);
            array_push($all, ...$chunk);
        }
        $this->assertSame([1000, 1000, 500], $sizes);
        $this->assertSame(range(1, 2500), $all);
        $this->assertSame(2500, $it->getStats()['items']);
        $this->assertSame(3, $it->getStats()['chunks']);

        $gen = (function () {
            for ($i = 0; $i < 7; $i++) {
                yield "item{$i}";
            }
        })();
        $chunks = iterator_to_array(new StreamingIterator($gen, ['chunk_size' => 3]), false);
        $this->assertSame([['item0', 'item1', 'item2'], ['item3', 'item4', 'item5'], ['item6']], $chunks);
    }

    public function testTheSeedSnippetWithAManager(): void
    {
        $dataSource = new \ArrayIterator(self::records(3000));
        $iterator = new StreamingIterator($dataSource, [
            'chunk_size' => 1000,
            'memory_limit' => '128M',
            'auto_gc' => true,
            'prefetch' => true,
            'parallel_processing' => false,
            'manager' => new MemoryManager(),
        ]);
        $processed = 0;
        foreach ($iterator as $chunk) {
            $this->assertCount(1000, $chunk);
            foreach ($chunk as $item) {
                $processed += $item['id'] > 0 ? 1 : 0;
            }
            unset($chunk);
        }
        $this->assertSame(3000, $processed);
    }

    private static function failingGenerator(): \Generator
    {
        for ($i = 0; $i < 10; $i++) {
            if ($i === 5) {
                throw new \DomainException('source broke at 5');
            }
            yield $i;
        }
    }

    public function testAThrowingGeneratorWithContinueEndsWithTheItemsBeforeAndRecordsTheError(): void
    {
        $it = new StreamingIterator(self::failingGenerator(), ['chunk_size' => 3, 'error_handling' => 'continue']);
        $this->assertSame([[0, 1, 2], [3, 4]], iterator_to_array($it, false));
        $stats = $it->getStats();
        $this->assertSame(1, $stats['error_count']);
        $this->assertCount(1, $stats['errors']);
    }

    public function testAThrowingGeneratorWithStopOrRetryRethrowsTheOriginalException(): void
    {
        foreach (['stop', 'retry'] as $mode) {
            $seen = [];
            $it = new StreamingIterator(self::failingGenerator(), ['chunk_size' => 3, 'error_handling' => $mode, 'retry_attempts' => 2]);
            try {
                foreach ($it as $chunk) {
                    array_push($seen, ...$chunk);
                }
                $this->fail("{$mode}: the generator's exception must reach the caller");
            } catch (\DomainException $e) {
                $this->assertSame('source broke at 5', $e->getMessage());
            }
            $this->assertSame([0, 1, 2, 3, 4], $seen, $mode);
            if ($mode === 'retry') {
                $this->assertSame(2, $it->getStats()['retries']);
            }
        }
    }

    public function testSecondForeachReplaysTheCacheOrRereadsAnArrayButNotAGenerator(): void
    {
        $calls = 0;
        $gen = (function () use (&$calls) {
            foreach (range(1, 10) as $i) {
                $calls++;
                yield $i;
            }
        })();
        $it = new StreamingIterator($gen, ['chunk_size' => 4, 'cache_chunks' => true]);
        $first = iterator_to_array($it, false);
        $second = iterator_to_array($it, false);
        $this->assertSame($first, $second);
        $this->assertSame(10, $calls, 'the replay does not read the generator again');
        $this->assertSame(1, $it->getStats()['rewinds']);

        $it = new StreamingIterator(range(1, 10), ['chunk_size' => 4]);
        $this->assertSame(iterator_to_array($it, false), iterator_to_array($it, false));

        $it = new StreamingIterator((fn () => yield from range(1, 10))(), ['chunk_size' => 4]);
        iterator_to_array($it, false);
        $this->expectException(UnsupportedException::class);
        $this->expectExceptionMessage('cache_chunks');
        iterator_to_array($it, false);
    }

    public function testBadConfigNamesTheKey(): void
    {
        try {
            new StreamingIterator([], ['chunk_size' => 0]);
            $this->fail('chunk_size 0 must be refused');
        } catch (InvalidConfigException $e) {
            $this->assertStringContainsString("'chunk_size'", $e->getMessage());
        }
        try {
            new StreamingIterator([], ['chunk_sise' => 10]);
            $this->fail('an unknown key must be refused');
        } catch (InvalidConfigException $e) {
            $this->assertStringContainsString("did you mean 'chunk_size'", $e->getMessage());
        }
        $this->expectException(InvalidConfigException::class);
        $this->expectExceptionMessage("did you mean 'batch_size'");
        new LazyIterator(fn () => [], ['batch_sise' => 10]);
    }

    public function testLazyOffsetLoaderAsInTheSeed(): void
    {
        $records = self::records(1234);
        $database = new class ($records) {
            public array $calls = [];

            public function __construct(private array $rows)
            {
            }

            public function getRecords(int $offset, int $limit): array
            {
                $this->calls[] = [$offset, $limit];
                return array_slice($this->rows, $offset, $limit);
            }
        };
        $lazyIterator = new LazyIterator(function ($offset, $limit) use ($database) {
            return $database->getRecords($offset, $limit);
        }, [
            'batch_size' => 500,
            'prefetch' => true,
        ]);
        $ids = [];
        foreach ($lazyIterator as $item) {
            $ids[] = $item['id'];
        }
        $this->assertSame(range(1, 1234), $ids);
        $this->assertSame([[0, 500], [500, 500], [1000, 500], [1500, 500]], $database->calls);
    }

    public function testLazyKeysetLoaderWithAnIntKeyAndACallableStringKey(): void
    {
        $rows = [];
        foreach (range(1, 23) as $i) {
            $rows[] = ['id' => $i * 10, 'name' => sprintf('user-%03d', $i)];
        }
        $afters = [];
        $it = new LazyIterator(function ($after, $limit) use ($rows, &$afters) {
            $afters[] = $after;
            return array_slice(array_values(array_filter($rows, fn ($r) => $after === null || $r['id'] > $after)), 0, $limit);
        }, ['mode' => 'keyset', 'key' => 'id', 'batch_size' => 10]);
        $this->assertSame(array_column($rows, 'id'), array_column(iterator_to_array($it, false), 'id'));
        $this->assertSame([null, 100, 200, 230], $afters);

        $objects = array_map(fn ($r) => (object) $r, $rows);
        $afters = [];
        $it = new LazyIterator(function ($after, $limit) use ($objects, &$afters) {
            $afters[] = $after;
            return array_slice(array_values(array_filter($objects, fn ($o) => $after === null || strcmp($o->name, $after) > 0)), 0, $limit);
        }, ['mode' => 'keyset', 'key' => fn (object $o) => $o->name, 'batch_size' => 10]);
        $this->assertCount(23, iterator_to_array($it, false));
        $this->assertSame([null, 'user-010', 'user-020', 'user-023'], $afters);
    }

    public function testALoaderExceptionIsRethrownAsTheSameObject(): void
    {
        $boom = new \RuntimeException('database gone');
        $it = new LazyIterator(function ($offset, $limit) use ($boom) {
            if ($offset >= 20) {
                throw $boom;
            }
            return range($offset, $offset + $limit - 1);
        }, ['batch_size' => 10, 'error_handling' => 'stop']);
        $n = 0;
        try {
            foreach ($it as $item) {
                $n++;
            }
            $this->fail('the loader\'s exception must reach the caller');
        } catch (\RuntimeException $e) {
            $this->assertSame($boom, $e);
        }
        $this->assertSame(20, $n);
    }

    public function testFiltersWithEarlyExitAndWithout(): void
    {
        $filters = [
            function ($item) { return $item['status'] === 'active'; },
            function ($item) { return $item['score'] > 50; },
        ];
        $sourceIterator = new \ArrayIterator(self::records(1000));
        $filteredIterator = new FilteredIterator($sourceIterator, ['filters' => $filters, 'early_exit' => true]);
        $passed = [];
        foreach ($filteredIterator as $item) {
            $passed[] = $item['id'];
        }
        $want = array_column(array_filter(self::records(1000), fn ($r) => $r['status'] === 'active' && $r['score'] > 50), 'id');
        $this->assertSame(array_values($want), $passed);
        $stats = $filteredIterator->getStats();
        $this->assertSame(1000, $stats['items_seen']);
        $this->assertSame(count($want), $stats['passed']);
        $this->assertSame(['evaluated' => 1000, 'rejected' => 500], $stats['filters'][0]);
        $this->assertSame(500, $stats['filters'][1]['evaluated'], 'early_exit: rejected items skip the later filters');

        $all = new FilteredIterator(self::records(1000), ['filters' => $filters, 'early_exit' => false]);
        $this->assertCount(count($want), iterator_to_array($all, false));
        $stats = $all->getStats();
        $this->assertSame(1000, $stats['filters'][1]['evaluated']);
        $this->assertSame(510, $stats['filters'][1]['rejected'], 'score (id % 100) <= 50 for 51 of every 100 items');
    }

    public function testFilteringAGeneratorAndAStreamingIteratorAndAThrowingFilter(): void
    {
        $gen = (function () {
            foreach (self::records(100) as $r) {
                yield $r;
            }
        })();
        $it = new FilteredIterator($gen, ['filters' => [fn ($r) => $r['id'] > 95]]);
        $this->assertSame([96, 97, 98, 99, 100], array_column(iterator_to_array($it, false), 'id'));

        $it = new FilteredIterator(new StreamingIterator(self::records(100), ['chunk_size' => 7]), ['filters' => [fn ($r) => $r['id'] % 10 === 0]]);
        $this->assertSame(range(10, 100, 10), array_column(iterator_to_array($it, false), 'id'));

        $boom = new \LogicException('bad filter');
        $it = new FilteredIterator(self::records(100), ['filters' => [function ($r) use ($boom) {
            if ($r['id'] === 42) {
                throw $boom;
            }
            return true;
        }]]);
        try {
            iterator_to_array($it, false);
            $this->fail('the filter\'s exception must reach the caller');
        } catch (\LogicException $e) {
            $this->assertSame($boom, $e);
        }
    }
}
