<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;
use Memwarden\Exception\CallbackException;
use Memwarden\Exception\DatabaseException;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;

/**
 * Processes a large result set in chunks with keyset pagination, over memwarden's native
 * chunk processor.
 *
 * ```php
 * $processor = new ChunkedDatabaseProcessor('sqlite:/var/data/app.db', [
 *     'chunk_size' => 1000,
 *     'memory_limit' => '128M',
 *     'progress_callback' => function ($processed, $total) { echo "Processed: {$processed}/{$total}\n"; },
 * ]);
 * $processor->process('SELECT * FROM large_table WHERE active = 1', function ($row) { updateUserRecord($row); });
 * $processor->processQuery('SELECT * FROM users WHERE status = \'active\'', function ($batch) {
 *     foreach ($batch as $user) { sendNotification($user); }
 * }, ['batch_size' => 500, 'parallel' => true]);
 * ```
 *
 * $connection: a URL (`sqlite:///path.db`, `postgres://user@host/db`, `mysql://user@host/db`)
 * or a PDO DSN (`sqlite:/path.db`, `pgsql:host=..;dbname=..`, `mysql:host=..;dbname=..`, with
 * the 'user' and 'password' config keys): memwarden connects itself and reads in native code.
 * Or a PDO object: the same keyset queries run through it (prepare/execute, `?` parameters)
 * and the rows stay in PHP; progress, retries and checkpoints are driven by the core. Such a
 * connection serves one thread, so parallel_chunks is reduced to 1 (stats['warnings'] says so).
 *
 * The query must be one SELECT whose output includes the key column (the primary key, or
 * 'key_column'); it is wrapped as `SELECT * FROM (<sql>) t WHERE key > ? ORDER BY key LIMIT n`,
 * so rows the callback updates or deletes are never skipped or seen twice.
 *
 * Config (the core's keys): chunk_size (1000), memory_limit ('128M' per chunk: a bigger
 * chunk runs the manager's cleanup and halves the chunk size), timeout (300 s per query),
 * retry_attempts (3), retry_delay (0.1 s, doubled per retry), parallel_chunks (1),
 * key_column, pagination ('keyset', 'cursor' (PostgreSQL), 'offset': a fallback that
 * rereads earlier rows; stats['warnings'] says so), checkpoint (a file: the last key of
 * every finished chunk is saved and a rerun resumes after it), checkpoint_fsync,
 * exact_count, prefetch, row_format ('dict': rows are associative arrays; 'tuple': lists),
 * user, password, connect_timeout (10 s), checkpoint_table (the same-transaction mode: a
 * table name; each chunk's writes and the run's checkpoint row commit in one transaction, so
 * a resume after a crash applies every row exactly once; callbacks get ($rows, ChunkTransaction
 * $tx), and with a PDO connection may write through that PDO too), allow_shared_sqlite_file
 * (false: a DSN's SQLite file that this process already holds open outside memwarden, e.g.
 * through a PDO, is refused, because PDO's SQLite and memwarden's do not see each other's
 * locks; pass the PDO object instead). Binding keys: progress_callback($processed,
 * $total), error_callback(\Throwable $error, ChunkInfo $chunk): bool (true skips the chunk
 * and goes on, false stops the run), manager (a MemoryManager whose cleanup runs when a
 * chunk exceeds memory_limit).
 *
 * Callbacks run synchronously in process() / processQuery(), on PHP's thread, one chunk at
 * a time (also with parallel_chunks, which reads in parallel). A callback that throws fails
 * its chunk: it is retried retry_attempts times, then the error callback decides; when the
 * run stops, the callback's own exception object is rethrown. Guarantee: no row is lost and
 * finished chunks are not repeated; a retried chunk is handed out again, so callbacks should
 * be idempotent. Errors of the library are exceptions under Memwarden\Exception with the
 * core's message (DatabaseException for a failed query or connection).
 *
 * Warnings (OFFSET pagination, parallel_chunks reduced, ...) are in getStats()['warnings'];
 * the processor does not raise PHP warnings.
 */
class ChunkedDatabaseProcessor
{
    private const BINDING_KEYS = ['progress_callback', 'error_callback', 'manager'];

    private \FFI $ffi;
    private CData $handle;
    /** @var object what the C callbacks share (never this processor) */
    private object $st;
    private CallbackGuard $guard;
    /** @var list<mixed> closures handed to C */
    private array $keep = [];
    private CData $callbacks;
    private \Closure $errorClosure;
    /** @var array<string,mixed> */
    private array $lastStats = [];

    /** @param array<string,mixed> $config */
    public function __construct(\PDO|string $connection, array $config = [])
    {
        $progress = $config['progress_callback'] ?? null;
        $error = $config['error_callback'] ?? null;
        $manager = $config['manager'] ?? null;
        foreach (self::BINDING_KEYS as $key) {
            unset($config[$key]);
        }
        foreach (['progress_callback' => $progress, 'error_callback' => $error] as $key => $fn) {
            if ($fn !== null && !is_callable($fn)) {
                throw new InvalidConfigException(
                    "ChunkedDatabaseProcessor config: '{$key}' must be callable, got " . get_debug_type($fn),
                    3
                );
            }
        }
        if ($manager !== null && !$manager instanceof MemoryManager) {
            throw new InvalidConfigException(
                "ChunkedDatabaseProcessor config: 'manager' must be a Memwarden\\MemoryManager, got "
                . get_debug_type($manager),
                3
            );
        }
        $this->ffi = Native::ffi();
        $this->guard = new CallbackGuard();
        $st = $this->st = new \stdClass();
        $st->guard = $this->guard;
        $st->ffi = $this->ffi;
        $st->pdo = $connection instanceof \PDO ? $connection : null;
        $st->tuple = ($config['row_format'] ?? 'dict') === 'tuple';
        $st->held = [];
        $st->queryError = null;
        $st->handler = null;
        $st->progressPair = $progress;
        $st->progressStats = null;
        $st->onError = $error;
        $st->txMode = isset($config['checkpoint_table']);
        $json = Native::configJson('ChunkedDatabaseProcessor', $config);

        $out = $this->ffi->new('mw_chunk*');
        if ($connection instanceof \PDO) {
            $driver = (string) $connection->getAttribute(\PDO::ATTR_DRIVER_NAME);
            $dialect = match ($driver) {
                'sqlite' => 'sqlite',
                'pgsql' => 'postgres',
                'mysql' => 'mysql',
                default => throw new InvalidArgumentException(
                    "ChunkedDatabaseProcessor: PDO driver '{$driver}' is not supported (sqlite, pgsql, mysql)",
                    2
                ),
            };
            $query = static function ($user, $sql, $params, $key, $meta, $result) use ($st): int {
                try {
                    self::hostQuery($st, self::str($sql), self::str($params), $key === null ? null : self::str($key), (bool) $meta, $result);
                    return 0;
                } catch (\Throwable $e) {
                    $st->queryError = $e;
                    return 1;
                }
            };
            $this->keep[] = $query;
            Native::check($this->ffi->mw_chunk_new_host($dialect, 'qmark', $query, null, $json, \FFI::addr($out)));
        } else {
            Native::check($this->ffi->mw_chunk_open($connection, $json, \FFI::addr($out)));
        }
        $this->handle = $out;
        if ($manager !== null) {
            Native::check($this->ffi->mw_chunk_set_manager($this->handle, $manager->nativeHandle()));
        }

        $cb = $this->callbacks = $this->ffi->new('mw_chunk_callbacks');
        $cb->user = null;
        $cb->on_row = null;
        $cb->on_batch_tx = null;
        if ($st->txMode) {
            $cb->on_batch_tx = $this->keep[] = static function ($user, $batch, $tx) use ($st): int {
                $t = new ChunkTransaction($st->ffi, $tx);
                try {
                    ($st->handler)(self::rows($st, $batch), $t);
                    return 0;
                } catch (\Throwable $e) {
                    $st->guard->fail($e);
                    return 1;
                } finally {
                    $t->end();
                }
            };
        }
        $cb->on_batch = $this->keep[] = static function ($user, $batch) use ($st): int {
            try {
                ($st->handler)(self::rows($st, $batch));
                return 0;
            } catch (\Throwable $e) {
                $st->guard->fail($e);
                return 1;
            }
        };
        $cb->on_progress = $this->keep[] = static function ($user, $json) use ($st): int {
            try {
                $stats = Native::decode(self::str($json));
                if ($st->progressPair !== null) {
                    ($st->progressPair)($stats['processed'] ?? 0, $stats['total'] ?? null);
                }
                if ($st->progressStats !== null) {
                    ($st->progressStats)($stats);
                }
                return 0;
            } catch (\Throwable $e) {
                $st->guard->fail($e);
                return 1;
            }
        };
        $this->keep[] = $this->errorClosure = static function ($user, $message, $chunkJson) use ($st): int {
            try {
                $error = $st->guard->error ?? new CallbackException(self::str($message), 10);
                $chunk = ChunkInfo::fromArray(Native::decode(self::str($chunkJson)));
                if (($st->onError)($error, $chunk)) {
                    $st->guard->error = null; // handled: the chunk is skipped
                    return 1;
                }
                return 0;
            } catch (\Throwable $e) {
                $st->guard->fail($e);
                return -1;
            }
        };
        $this->keep[] = $cb;
    }

    public function __destruct()
    {
        if (isset($this->handle)) {
            $this->ffi->mw_chunk_free($this->handle);
            unset($this->handle);
        }
    }

    /**
     * Calls $rowCallback($row) for every row of $sql (a row is an associative array, or a
     * list with row_format 'tuple'). A throwing row fails its whole chunk, so on a retry the
     * chunk's earlier rows are handed out again. Returns the run's statistics.
     *
     * @return array<string,mixed>
     */
    public function process(string|\Stringable $sql, callable $rowCallback): array
    {
        return $this->run((string) $sql, static function (array $rows, ?ChunkTransaction $tx = null) use ($rowCallback): void {
            foreach ($rows as $row) {
                $tx === null ? $rowCallback($row) : $rowCallback($row, $tx);
            }
        }, null);
    }

    /**
     * Calls $batchCallback($batch) with every chunk of $sql (a list of rows). Options:
     * batch_size (rows per batch, instead of chunk_size), parallel (true or a number of
     * connections, as parallel_chunks). Returns the run's statistics.
     *
     * @param array{batch_size?: int, parallel?: bool|int} $options
     * @return array<string,mixed>
     */
    public function processQuery(string|\Stringable $sql, callable $batchCallback, array $options = []): array
    {
        return $this->run((string) $sql, static function (array $rows, ?ChunkTransaction $tx = null) use ($batchCallback): void {
            $tx === null ? $batchCallback($rows) : $batchCallback($rows, $tx);
        }, $options === [] ? null : Native::configJson('processQuery options', $options));
    }

    /** fn(array $stats) after every chunk: processed, total, memory_usage (MB), estimated_remaining (s), rows_per_second, ... */
    public function setProgressCallback(?callable $callback): void
    {
        $this->st->progressStats = $callback;
    }

    /** fn(\Throwable $error, ChunkInfo $chunk): bool for a chunk that failed after its retries; true skips it, false stops. */
    public function setErrorCallback(?callable $callback): void
    {
        $this->st->onError = $callback;
    }

    /**
     * The last run's statistics: processed, total, total_is_exact, percent, memory_usage
     * (MB), estimated_remaining, rows_per_second, elapsed, chunks, failed_chunks,
     * failed_rows, retries, chunk_size, cleanups, resumed, key_column, warnings, ...
     *
     * @return array<string,mixed>
     */
    public function getStats(): array
    {
        $out = $this->ffi->new('char*');
        Native::check($this->ffi->mw_chunk_stats($this->handle, \FFI::addr($out)));
        return Native::decode(Native::takeString($out));
    }

    // ---- internals ------------------------------------------------------------

    /** @return array<string,mixed> */
    private function run(string $sql, \Closure $handler, ?string $options): array
    {
        $st = $this->st;
        $st->handler = $handler;
        $st->held = [];
        $st->queryError = null;
        $this->callbacks->on_error = $st->onError !== null ? $this->errorClosure : null;
        $stats = $this->ffi->new('char*');
        try {
            $this->guard->invokeHandled(
                fn () => $options === null
                    ? $this->ffi->mw_chunk_process_query($this->handle, $sql, null, \FFI::addr($this->callbacks), \FFI::addr($stats))
                    : $this->ffi->mw_chunk_process_query($this->handle, $sql, $options, \FFI::addr($this->callbacks), \FFI::addr($stats)),
                static function (int $status, ?\Throwable $error) use ($st): ?\Throwable {
                    $cause = $st->queryError;
                    if ($status === 9 && $cause !== null) {
                        $message = (string) Native::ffi()->mw_last_error_message();
                        return new DatabaseException(
                            $message . ' [' . get_class($cause) . ': ' . $cause->getMessage() . ']',
                            9,
                            $cause
                        );
                    }
                    return null;
                }
            );
        } finally {
            $st->handler = null;
            $st->held = [];
            $json = Native::takeString($stats);
            $this->lastStats = $json === '' ? [] : Native::decode($json);
        }
        return $this->lastStats;
    }

    private static function str(mixed $s): string
    {
        return is_string($s) ? $s : \FFI::string($s);
    }

    /** The rows of one batch as PHP arrays. */
    private static function rows(object $st, CData $batch): array
    {
        $ffi = $st->ffi;
        if ($ffi->mw_batch_is_host_rows($batch)) {
            $out = $ffi->new('char*');
            Native::check($ffi->mw_batch_info($batch, \FFI::addr($out)));
            $info = Native::decode(Native::takeString($out));
            $token = self::token($info['first_key'] ?? null, $info['last_key'] ?? null);
            if (!isset($st->held[$token])) {
                throw new \LogicException("ChunkedDatabaseProcessor: no rows kept for the chunk with keys {$token}");
            }
            return $st->held[$token];
        }
        $out = $ffi->new('char*');
        Native::check($ffi->mw_batch_json($batch, $st->tuple, \FFI::addr($out)));
        $rows = json_decode(Native::takeString($out), true, 512, JSON_THROW_ON_ERROR | JSON_BIGINT_AS_STRING);
        return is_array($rows) ? $rows : [];
    }

    private static function token(mixed $first, mixed $last): string
    {
        return json_encode([$first, $last], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE);
    }

    /** A key as the core wants it: ints stay ints, integer strings become ints. */
    private static function normalizeKey(mixed $v): int|string|null
    {
        if (is_int($v) || $v === null) {
            return $v;
        }
        if (is_string($v) && preg_match('/^-?(0|[1-9][0-9]{0,18})$/', $v) && (string) (int) $v === $v) {
            return (int) $v;
        }
        if (is_float($v) && floor($v) === $v && abs($v) < 9.0e18) {
            return (int) $v;
        }
        if (is_bool($v)) {
            return (int) $v;
        }
        return (string) $v;
    }

    /** Runs one of the core's queries on the PDO connection and fills the host result. */
    private static function hostQuery(object $st, string $sql, string $paramsJson, ?string $key, bool $meta, CData $result): void
    {
        $ffi = $st->ffi;
        /** @var \PDO $pdo */
        $pdo = $st->pdo;
        $params = $paramsJson === '' ? [] : json_decode($paramsJson, true, 512, JSON_THROW_ON_ERROR | JSON_BIGINT_AS_STRING);
        // The same-transaction mode's BEGIN / COMMIT / ROLLBACK go through PDO's own methods,
        // so PDO (and code using $pdo in the callback) knows a transaction is open.
        $verb = strtoupper(trim($sql));
        if (in_array($verb, ['BEGIN', 'BEGIN IMMEDIATE', 'START TRANSACTION', 'COMMIT', 'ROLLBACK'], true)) {
            match ($verb) {
                'COMMIT' => $pdo->inTransaction() && $pdo->commit(),
                'ROLLBACK' => $pdo->inTransaction() && $pdo->rollBack(),
                default => $pdo->inTransaction() || $pdo->beginTransaction(),
            };
            Native::check($ffi->mw_host_result_set_json($result, '{"columns":[],"rows":[]}'));
            return;
        }
        $stmt = $pdo->prepare($sql);
        if ($stmt === false) {
            throw new \PDOException('prepare failed: ' . implode(' ', $pdo->errorInfo()));
        }
        foreach (array_values((array) $params) as $i => $p) {
            $stmt->bindValue($i + 1, $p, match (true) {
                is_int($p) => \PDO::PARAM_INT,
                is_bool($p) => \PDO::PARAM_BOOL,
                $p === null => \PDO::PARAM_NULL,
                default => \PDO::PARAM_STR,
            });
        }
        if ($stmt->execute() === false) {
            throw new \PDOException('execute failed: ' . implode(' ', $stmt->errorInfo()));
        }
        $columns = [];
        for ($i = 0, $c = $stmt->columnCount(); $i < $c; $i++) {
            $m = $stmt->getColumnMeta($i);
            $columns[] = is_array($m) ? (string) $m['name'] : "column{$i}";
        }
        $flags = JSON_THROW_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION | JSON_UNESCAPED_SLASHES
            | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE;
        if ($meta) {
            // A statement without a result set (INSERT, CREATE, ...) has nothing to fetch.
            $rows = $columns === [] ? [] : $stmt->fetchAll(\PDO::FETCH_NUM);
            $stmt->closeCursor();
            Native::check($ffi->mw_host_result_set_json($result, json_encode(['columns' => $columns, 'rows' => $rows], $flags)));
            return;
        }
        $rows = $stmt->fetchAll($st->tuple ? \PDO::FETCH_NUM : \PDO::FETCH_ASSOC);
        $stmt->closeCursor();
        $n = count($rows);
        $first = $last = null;
        $bytes = 0;
        if ($n > 0) {
            if ($key === null) {
                throw new \LogicException('ChunkedDatabaseProcessor: the core asked for rows without a key column');
            }
            $index = array_search($key, $columns, true);
            if ($index === false) {
                foreach ($columns as $i => $name) {
                    if (strcasecmp($name, $key) === 0) {
                        $index = $i;
                        break;
                    }
                }
            }
            if ($index === false) {
                throw new \PDOException("the result has no key column '{$key}' (columns: " . implode(', ', $columns) . ')');
            }
            $field = $st->tuple ? $index : $columns[$index];
            $first = self::normalizeKey($rows[0][$field] ?? null);
            $last = self::normalizeKey($rows[$n - 1][$field] ?? null);
            // About: the first row's values plus PHP's per-value overhead, times the rows.
            $row = 64;
            foreach ($rows[0] as $v) {
                $row += 32 + (is_string($v) ? strlen($v) : 8);
            }
            $bytes = $row * $n;
        }
        $st->held[self::token($first, $last)] = $rows;
        if (count($st->held) > 4) {
            array_shift($st->held);
        }
        Native::check($ffi->mw_host_result_set_host_rows(
            $result,
            json_encode($columns, $flags),
            $n,
            $n > 0 ? json_encode($first, $flags) : null,
            $n > 0 ? json_encode($last, $flags) : null,
            $bytes
        ));
    }
}
