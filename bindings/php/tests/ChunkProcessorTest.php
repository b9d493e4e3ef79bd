<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\ChunkedDatabaseProcessor;
use Memwarden\ChunkInfo;
use Memwarden\ChunkTransaction;
use Memwarden\Exception\ClosedException;
use Memwarden\Exception\DatabaseException;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;
use Memwarden\LazyContainer;
use Memwarden\MemoryPool;
use Memwarden\Tests\Fixtures\PdoInAnotherProcess;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/Fixtures/PdoInAnotherProcess.php';

final class ChunkProcessorTest extends TestCase
{
    private const ROWS = 1000;

    /** @var list<callable():void> */
    private array $cleanup = [];

    protected function tearDown(): void
    {
        foreach (array_reverse($this->cleanup) as $fn) {
            try {
                $fn();
            } catch (\Throwable) {
            }
        }
        $this->cleanup = [];
    }

    /** A PDO for a postgres:// or mysql:// URL (skips, or fails with MEMWARDEN_REQUIRE_SERVICES=1, when unreachable). */
    private function server(string $kind): array
    {
        $url = $kind === 'pgsql'
            ? (getenv('MEMWARDEN_TEST_POSTGRES_URL') ?: 'postgres://postgres@127.0.0.1:5432/test')
            : (getenv('MEMWARDEN_TEST_MYSQL_URL') ?: 'mysql://root@127.0.0.1:3306/test');
        $u = parse_url($url);
        $dsn = sprintf('%s:host=%s;port=%d;dbname=%s', $kind, $u['host'] ?? '127.0.0.1', $u['port'] ?? ($kind === 'pgsql' ? 5432 : 3306), ltrim($u['path'] ?? '/test', '/'));
        try {
            if (!in_array($kind === 'pgsql' ? 'pgsql' : 'mysql', \PDO::getAvailableDrivers(), true)) {
                throw new \RuntimeException("PHP's pdo_{$kind} is not installed");
            }
            $pdo = new \PDO($dsn, urldecode($u['user'] ?? ''), urldecode($u['pass'] ?? ''), [\PDO::ATTR_TIMEOUT => 3]);
        } catch (\Throwable $e) {
            $why = "{$kind} at {$url} is not available: {$e->getMessage()}";
            if (getenv('MEMWARDEN_REQUIRE_SERVICES') === '1') {
                $this->fail($why);
            }
            $this->markTestSkipped($why);
        }
        return [$url, $pdo];
    }

    /**
     * [connection for the processor, PDO for the test's own queries, table name].
     *
     * For a sqlite DSN the test's PDO lives in another process: memwarden reads the file
     * through its own SQLite, and a PDO in this process would be a second SQLite library on
     * it, whose locks memwarden's does not see (memwarden refuses that; see testAPdo...).
     */
    private function setUpTable(string $kind, int $rows = self::ROWS): array
    {
        $table = 'mw_php_' . bin2hex(random_bytes(5));
        if (str_starts_with($kind, 'sqlite')) {
            $file = tempnam(sys_get_temp_dir(), 'mw-php-chunk-');
            $this->cleanup[] = fn () => @unlink($file);
            $pdo = new \PDO('sqlite:' . $file);
            $url = 'sqlite:' . $file;
        } else {
            [$url, $pdo] = $this->server(str_starts_with($kind, 'pgsql') ? 'pgsql' : 'mysql');
            $this->cleanup[] = fn () => $pdo->exec("DROP TABLE IF EXISTS {$table}");
        }
        $pdo->setAttribute(\PDO::ATTR_ERRMODE, \PDO::ERRMODE_EXCEPTION);
        $pdo->exec("CREATE TABLE {$table} (id BIGINT PRIMARY KEY, name VARCHAR(40) NOT NULL, score INT NOT NULL, active INT NOT NULL, visits INT NOT NULL DEFAULT 0)");
        for ($start = 1; $start <= $rows; $start += 500) {
            $values = [];
            for ($i = $start; $i < min($rows + 1, $start + 500); $i++) {
                $values[] = sprintf("(%d, 'name-%d', %d, %d)", $i, $i, $i % 100, $i % 2);
            }
            $pdo->exec("INSERT INTO {$table} (id, name, score, active) VALUES " . implode(',', $values));
        }
        $connection = str_ends_with($kind, '-pdo') ? $pdo : $url;
        if ($kind === 'sqlite') {
            $pdo = new PdoInAnotherProcess($file);
        }
        return [$connection, $pdo, $table];
    }

    public static function connections(): array
    {
        return [
            'sqlite DSN' => ['sqlite'],
            'sqlite PDO' => ['sqlite-pdo'],
            'postgres URL' => ['pgsql'],
            'postgres PDO' => ['pgsql-pdo'],
            'mariadb URL' => ['mysql'],
            'mariadb PDO' => ['mysql-pdo'],
        ];
    }

    /** @dataProvider connections */
    public function testEveryRowOnceWhileTheCallbackUpdatesTheFilteredColumn(string $kind): void
    {
        [$connection, $pdo, $table] = $this->setUpTable($kind);
        $pairs = [];
        $statsSeen = [];
        $processor = new ChunkedDatabaseProcessor($connection, [
            'chunk_size' => 100,
            'memory_limit' => '128M',
            'progress_callback' => function ($processed, $total) use (&$pairs) {
                $pairs[] = [$processed, $total];
            },
        ]);
        $processor->setProgressCallback(function (array $stats) use (&$statsSeen) {
            $statsSeen[] = $stats;
        });
        $update = $pdo->prepare("UPDATE {$table} SET active = 0, visits = visits + 1 WHERE id = ?");
        $ids = [];
        $stats = $processor->process("SELECT * FROM {$table} WHERE active = 1", function ($row) use ($update, &$ids) {
            $ids[] = (int) $row['id'];
            $update->execute([$row['id']]);
        });
        $this->assertSame(range(1, self::ROWS, 2), $ids);
        $this->assertSame(self::ROWS / 2, (int) $pdo->query("SELECT COUNT(*) FROM {$table} WHERE visits = 1")->fetchColumn());
        $this->assertSame(0, (int) $pdo->query("SELECT COUNT(*) FROM {$table} WHERE visits > 1")->fetchColumn());
        $this->assertSame(self::ROWS / 2, $stats['processed']);
        $this->assertCount(5, $pairs);
        $this->assertSame(self::ROWS / 2, end($pairs)[0]);
        $this->assertCount(5, $statsSeen);
        foreach (['processed', 'total', 'memory_usage', 'estimated_remaining', 'rows_per_second'] as $key) {
            $this->assertArrayHasKey($key, $statsSeen[0]);
        }
        $this->assertSame($stats['processed'], $processor->getStats()['processed']);

        // processQuery, batches, tuple rows through a second processor
        $tuple = new ChunkedDatabaseProcessor($connection, ['row_format' => 'tuple', 'key_column' => 'id']);
        $batches = [];
        $tuple->processQuery("SELECT id, name FROM {$table}", function (array $batch) use (&$batches) {
            $batches[] = $batch;
        }, ['batch_size' => 300]);
        $this->assertSame([300, 300, 300, 100], array_map('count', $batches));
        $this->assertEquals([1, 'name-1'], $batches[0][0]);
        $this->assertSame(range(1, self::ROWS), array_map('intval', array_merge(...array_map(fn ($b) => array_column($b, 0), $batches))));
    }

    public function testTheSeedsBasicUsageAndAdvancedProcessing(): void
    {
        [$connection, , $table] = $this->setUpTable('sqlite');
        $out = [];
        $processor = new ChunkedDatabaseProcessor($connection, [
            'chunk_size' => 1000,
            'memory_limit' => '128M',
            'timeout' => 300,
            'retry_attempts' => 3,
            'parallel_chunks' => 1,
            'progress_callback' => function ($processed, $total) use (&$out) {
                $out[] = "Processed: {$processed}/{$total}";
            },
            'error_callback' => null,
        ]);
        $updated = 0;
        $updateUserRecord = function (array $row) use (&$updated) {
            $updated += $row['active'];
        };
        $processor->process("SELECT * FROM {$table} WHERE active = 1", function ($row) use ($updateUserRecord) {
            $updateUserRecord($row);
        });
        $this->assertSame(self::ROWS / 2, $updated);
        $this->assertSame(['Processed: 500/500'], $out);

        $queryBuilder = new class ($table) implements \Stringable {
            public function __construct(private string $table)
            {
            }

            public function __toString(): string
            {
                return "SELECT * FROM {$this->table} WHERE score > 90";
            }
        };
        $sent = 0;
        $stats = $processor->processQuery($queryBuilder, function ($batch) use (&$sent) {
            foreach ($batch as $user) {
                $sent += $user['score'] > 90 ? 1 : 0;
            }
        }, ['batch_size' => 500, 'parallel' => true]);
        $this->assertSame(90, $sent);
        $this->assertSame(90, $stats['processed']);

        $lines = [];
        $processor->setProgressCallback(function ($stats) use (&$lines) {
            $percentage = ($stats['processed'] / $stats['total']) * 100;
            $lines[] = "Progress: {$percentage}% ({$stats['processed']}/{$stats['total']})";
            $lines[] = "Memory: {$stats['memory_usage']}MB";
            $lines[] = "ETA: {$stats['estimated_remaining']} seconds";
        });
        $processor->process("SELECT * FROM {$table}", fn ($row) => null);
        $this->assertSame('Progress: 100% (1000/1000)', $lines[0]);
        $this->assertStringStartsWith('Memory: ', $lines[1]);
    }

    public static function sqliteKinds(): array
    {
        return ['DSN' => ['sqlite'], 'PDO' => ['sqlite-pdo']];
    }

    /** @dataProvider sqliteKinds */
    public function testRetryThenTheErrorCallbackContinuesOrStops(string $kind): void
    {
        [$connection, , $table] = $this->setUpTable($kind);
        $failures = 0;
        $callback = function (array $batch) use (&$failures, &$done) {
            if ($batch[0]['id'] == 201) {
                $failures++;
                throw new \RuntimeException('chunk 3 is cursed');
            }
            $done += count($batch);
        };
        $logged = [];
        $processor = new ChunkedDatabaseProcessor($connection, ['chunk_size' => 100, 'retry_attempts' => 2, 'retry_delay' => 0]);
        $processor->setErrorCallback(function ($error, $chunk) use (&$logged) {
            $logged[] = "Error processing chunk {$chunk}: {$error->getMessage()}";
            $this->assertInstanceOf(ChunkInfo::class, $chunk);
            $this->assertSame(201, $chunk['first_key']);
            $this->assertSame(300, $chunk->last_key);
            return true;
        });
        $done = 0;
        $stats = $processor->processQuery("SELECT * FROM {$table}", $callback);
        $this->assertSame(3, $failures, 'one try and two retries');
        $this->assertSame(900, $done);
        $this->assertSame(['Error processing chunk #3 (keys 201..300, 100 rows): chunk 3 is cursed'], $logged);
        $this->assertSame(1, $stats['failed_chunks']);
        $this->assertSame(2, $stats['retries']);

        // false stops the run: the callback's own exception is rethrown
        $processor->setErrorCallback(fn ($error, $chunk) => false);
        $done = $failures = 0;
        try {
            $processor->processQuery("SELECT * FROM {$table}", $callback);
            $this->fail('the run must stop');
        } catch (\RuntimeException $e) {
            $this->assertSame('chunk 3 is cursed', $e->getMessage());
        }
        $this->assertSame(200, $done);

        // a chunk that fails once succeeds on its retry, and nothing is thrown
        $once = 0;
        $done = 0;
        $processor->processQuery("SELECT * FROM {$table}", function ($batch) use (&$once, &$done) {
            if ($batch[0]['id'] == 501 && $once++ === 0) {
                throw new \RuntimeException('flaky');
            }
            $done += count($batch);
        });
        $this->assertSame(self::ROWS, $done);
    }

    /** @dataProvider sqliteKinds */
    public function testACallbackExceptionIsRethrownAsTheSameObject(string $kind): void
    {
        [$connection, , $table] = $this->setUpTable($kind);
        $boom = new \DomainException('row 250 is bad');
        $processor = new ChunkedDatabaseProcessor($connection, ['chunk_size' => 100, 'retry_attempts' => 0]);
        try {
            $processor->process("SELECT * FROM {$table}", function ($row) use ($boom) {
                if ($row['id'] == 250) {
                    throw $boom;
                }
            });
            $this->fail('the exception must reach the caller');
        } catch (\DomainException $e) {
            $this->assertSame($boom, $e);
        }
        $progress = new \LogicException('progress broke');
        $processor->setProgressCallback(function () use ($progress) {
            throw $progress;
        });
        try {
            $processor->process("SELECT * FROM {$table}", fn ($row) => null);
            $this->fail('the progress exception must reach the caller');
        } catch (\LogicException $e) {
            $this->assertSame($progress, $e);
        }
    }

    /** @dataProvider sqliteKinds */
    public function testCheckpointResume(string $kind): void
    {
        [$connection, , $table] = $this->setUpTable($kind);
        $checkpoint = tempnam(sys_get_temp_dir(), 'mw-php-ckpt-');
        unlink($checkpoint);
        $this->cleanup[] = fn () => @unlink($checkpoint);
        $config = ['chunk_size' => 100, 'checkpoint' => $checkpoint, 'retry_attempts' => 0];
        $seen = [];
        try {
            (new ChunkedDatabaseProcessor($connection, $config))->processQuery("SELECT * FROM {$table}", function ($batch) use (&$seen) {
                if ($batch[0]['id'] == 401) {
                    throw new \RuntimeException('crash in chunk 5');
                }
                array_push($seen, ...array_column($batch, 'id'));
            });
            $this->fail('the first run must stop');
        } catch (\RuntimeException $e) {
            $this->assertSame('crash in chunk 5', $e->getMessage());
        }
        $this->assertCount(400, $seen);
        $second = [];
        $stats = (new ChunkedDatabaseProcessor($connection, $config))->processQuery("SELECT * FROM {$table}", function ($batch) use (&$second) {
            array_push($second, ...array_column($batch, 'id'));
        });
        $this->assertSame(range(401, self::ROWS), array_map('intval', $second), 'the rerun continues after the last finished chunk');
        $this->assertTrue((bool) $stats['resumed']);
    }

    public function testParallelChunksCoverEveryIdOnce(): void
    {
        [$connection, , $table] = $this->setUpTable('sqlite', 5000);
        $count = [];
        $stats = (new ChunkedDatabaseProcessor($connection, ['chunk_size' => 250, 'parallel_chunks' => 3]))
            ->processQuery("SELECT id, score FROM {$table}", function ($batch) use (&$count) {
                foreach ($batch as $row) {
                    $count[$row['id']] = ($count[$row['id']] ?? 0) + 1;
                }
            });
        ksort($count);
        $this->assertSame(range(1, 5000), array_keys($count));
        $this->assertSame([1], array_values(array_unique($count)));
        $this->assertSame(5000, $stats['processed']);

        // a PDO connection serves one thread: reduced to 1, said in the warnings
        [$pdo, , $pdoTable] = $this->setUpTable('sqlite-pdo', 10);
        $stats = (new ChunkedDatabaseProcessor($pdo, ['parallel_chunks' => 3]))->processQuery(
            "SELECT * FROM {$pdoTable}",
            fn ($b) => null
        );
        $this->assertNotEmpty($stats['warnings'] ?? []);
    }

    public function testErrorsCarryTheCoresMessage(): void
    {
        [$connection, $pdo, $table] = $this->setUpTable('sqlite-pdo', 10);
        try {
            new ChunkedDatabaseProcessor('sqlite:' . sys_get_temp_dir() . '/x.db', ['chunk_sise' => 10]);
            $this->fail('unknown key');
        } catch (InvalidConfigException $e) {
            $this->assertStringContainsString("did you mean 'chunk_size'", $e->getMessage());
        }
        try {
            (new ChunkedDatabaseProcessor($connection))->process('SELECT * FROM no_such_table', fn ($r) => null);
            $this->fail('a missing table must fail');
        } catch (DatabaseException $e) {
            $this->assertInstanceOf(\PDOException::class, $e->getPrevious());
            $this->assertStringContainsString('no_such_table', $e->getMessage());
        }
        $this->expectException(DatabaseException::class);
        (new ChunkedDatabaseProcessor('sqlite:' . sys_get_temp_dir() . '/mw-no-such-dir/x.db'))->process("SELECT * FROM {$table}", fn ($r) => null);
    }

    public function testADsnOnAFileThatAPdoHoldsOpenIsRefused(): void
    {
        // PDO's SQLite (the system's libsqlite3) and memwarden's bundled one are two SQLite
        // libraries in one process: they do not see each other's locks.
        [$pdo, , $table] = $this->setUpTable('sqlite-pdo', 10);
        $file = (string) $pdo->query('PRAGMA database_list')->fetch(\PDO::FETCH_ASSOC)['file'];
        $dsn = 'sqlite:' . $file;
        try {
            new ChunkedDatabaseProcessor($dsn);
            $this->fail('a DSN on a file that a PDO holds open must be refused');
        } catch (InvalidArgumentException $e) {
            foreach ([$file, 'two SQLite libraries in one process', 'a PDO object in PHP', 'allow_shared_sqlite_file: true'] as $part) {
                $this->assertStringContainsString($part, $e->getMessage());
            }
        }
        // The way out the message names: the PDO itself.
        $this->assertSame(10, (new ChunkedDatabaseProcessor($pdo))->process("SELECT * FROM {$table}", fn ($r) => null)['processed']);
        // The opt-out, for a reader that knows nothing writes the file meanwhile.
        $this->assertSame(10, (new ChunkedDatabaseProcessor($dsn, ['allow_shared_sqlite_file' => true]))->process("SELECT * FROM {$table}", fn ($r) => null)['processed']);

        // A PDO opened after the processor: refused when the run starts; fine once it is gone.
        // (A fresh file: the processors above still hold the PDO.)
        [$dsn, , $table] = $this->setUpTable('sqlite', 10);
        $processor = new ChunkedDatabaseProcessor($dsn);
        $late = new \PDO($dsn);
        try {
            $processor->process("SELECT * FROM {$table}", fn ($r) => null);
            $this->fail('a PDO opened after the processor must be seen when the run starts');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString('two SQLite libraries', $e->getMessage());
        }
        $late = null;
        $this->assertSame(10, $processor->process("SELECT * FROM {$table}", fn ($r) => null)['processed']);
    }

    public function testTheSeedsCombinedExampleWithAPool(): void
    {
        [$connection, , $table] = $this->setUpTable('sqlite');
        $query = "SELECT * FROM {$table}";
        $worker = new class {
            public int $rows = 0;

            public function processBatch(array $row): void
            {
                $this->rows++;
            }
        };
        $container = new LazyContainer();
        $pool = new MemoryPool(['max_size' => 10, 'factory' => fn () => clone $worker]);
        $processor = new ChunkedDatabaseProcessor($connection);
        $handled = 0;
        $processor->process($query, function ($batch) use ($pool, &$handled) {
            $worker = $pool->acquire();
            try {
                $worker->processBatch($batch);
                $handled++;
            } finally {
                $pool->release($worker);
            }
        });
        $this->assertSame(self::ROWS, $handled);
        $this->assertSame(0, $pool->getStatistics()['active']);
        unset($container);
    }

    /**
     * The same-transaction mode: a chunk's writes commit with the checkpoint row, so a run that
     * dies after writing chunk 3 and its rerun leave every row written exactly once.
     *
     * @dataProvider connections
     */
    public function testCheckpointTableWritesEachRowExactlyOnce(string $kind): void
    {
        [$connection, $pdo, $table] = $this->setUpTable($kind, 500);
        $out = "{$table}_out";
        $ck = "{$table}_ck";
        $pdo->exec("CREATE TABLE {$out} (id BIGINT NOT NULL, v BIGINT NOT NULL)");
        $this->cleanup[] = fn () => $pdo->exec("DROP TABLE IF EXISTS {$out}");
        $this->cleanup[] = fn () => $pdo->exec("DROP TABLE IF EXISTS {$ck}");
        $viaPdo = $connection instanceof \PDO;
        $insert = "INSERT INTO {$out} (id, v) VALUES " . ($kind === 'pgsql' ? '($1, $2)' : '(?, ?)');
        $kept = null;
        $write = function (array $rows, ChunkTransaction $tx, ?int $failAt = null) use ($pdo, $insert, $viaPdo, &$kept): void {
            $kept = $tx;
            foreach ($rows as $row) {
                if ($viaPdo && $row['id'] % 2 === 0) {
                    // The callback may use its own PDO: the same connection, the same transaction.
                    $pdo->prepare($insert)->execute([$row['id'], $row['id'] * 2]);
                } else {
                    $tx->execute($insert, [(int) $row['id'], (int) $row['id'] * 2]);
                }
            }
            if ((int) $rows[0]['id'] === $failAt) {
                throw new \RuntimeException('dies after writing chunk 3');
            }
        };
        $config = ['chunk_size' => 100, 'retry_attempts' => 0, 'checkpoint_table' => $ck];
        $p = new ChunkedDatabaseProcessor($connection, $config);
        try {
            $p->processQuery("SELECT * FROM {$table}", fn (array $rows, ChunkTransaction $tx) => $write($rows, $tx, 201));
            $this->fail('the run should stop');
        } catch (\RuntimeException $e) {
            $this->assertSame('dies after writing chunk 3', $e->getMessage());
        }
        $counts = function () use ($pdo, $out): array {
            return array_map(
                fn ($r) => array_map('intval', $r),
                $pdo->query("SELECT id, COUNT(*), SUM(v) FROM {$out} GROUP BY id ORDER BY id")->fetchAll(\PDO::FETCH_NUM)
            );
        };
        $expect = fn (int $n) => array_map(fn ($i) => [$i, 1, 2 * $i], range(1, $n));
        $this->assertSame($expect(200), $counts(), "chunk 3's writes were rolled back");
        try {
            $kept->execute($insert, [0, 0]);
            $this->fail('a kept transaction must refuse');
        } catch (ClosedException $e) {
            $this->assertStringContainsString('transaction has ended', $e->getMessage());
        }

        $firsts = [];
        $stats = (new ChunkedDatabaseProcessor($connection, $config))->processQuery(
            "SELECT * FROM {$table}",
            function (array $rows, ChunkTransaction $tx) use ($write, &$firsts): void {
                $firsts[] = (int) $rows[0]['id'];
                $write($rows, $tx);
            }
        );
        $this->assertSame(201, $firsts[0]);
        $this->assertTrue($stats['resumed']);
        $this->assertSame(500, $stats['processed']);
        $this->assertSame($expect(500), $counts());
        $this->assertSame(0, (int) $pdo->query("SELECT COUNT(*) FROM {$ck}")->fetchColumn(), 'a finished run deletes its row');

        // process() hands ($row, $tx); $tx->query() reads inside the transaction.
        $seen = [];
        (new ChunkedDatabaseProcessor($connection, $config))->process(
            "SELECT * FROM {$table} WHERE id <= 1",
            function (array $row, ChunkTransaction $tx) use ($out, &$seen): void {
                $seen[] = (int) $tx->query("SELECT COUNT(*) AS n FROM {$out}")[0]['n'];
            }
        );
        $this->assertSame([500], $seen);
    }

    public function testCheckpointTableBadInput(): void
    {
        [$url, $pdo, $table] = $this->setUpTable('sqlite', 10);
        $bad = [
            [['checkpoint_table' => 'ck', 'checkpoint' => '/tmp/x'], "'checkpoint_table' and 'checkpoint' exclude each other"],
            [['checkpoint_table' => 'ck', 'parallel_chunks' => 2], "'parallel_chunks' must be 1, not 2"],
            [['checkpoint_table' => 'ck', 'pagination' => 'offset'], 'needs keyset pagination'],
            [['checkpoint_table' => 'ck; DROP TABLE x'], "invalid value for 'checkpoint_table'"],
        ];
        foreach ($bad as [$config, $message]) {
            try {
                new ChunkedDatabaseProcessor($url, $config);
                $this->fail("accepted: " . json_encode($config));
            } catch (InvalidConfigException $e) {
                $this->assertStringContainsString($message, $e->getMessage());
            }
        }
        $errors = [];
        (new ChunkedDatabaseProcessor($url, ['checkpoint_table' => 'ck', 'retry_attempts' => 0]))->processQuery(
            "SELECT * FROM {$table}",
            function (array $rows, ChunkTransaction $tx) use (&$errors): void {
                foreach ([[[1, [2]]], [[new \stdClass()]]] as [$params]) {
                    try {
                        $tx->execute('SELECT ?', $params);
                    } catch (\TypeError $e) {
                        $errors[] = $e->getMessage();
                    }
                }
                try {
                    $tx->execute('INSERT INTO no_such_table VALUES (1)');
                } catch (DatabaseException $e) {
                    $errors[] = $e->getMessage();
                }
            }
        );
        $this->assertCount(3, $errors);
        $this->assertStringContainsString('parameter 1 is array', $errors[0]);
        $this->assertStringContainsString('parameter 0 is stdClass', $errors[1]);
        $this->assertStringContainsString('no such table', $errors[2]);
    }
}
