<?php

declare(strict_types=1);

/*
 * ChunkedDatabaseProcessor vs its anchors, from one run, side by side with a ratio:
 *   1. sum(score) over an SQLite file table of N rows (default 200,000):
 *      memwarden processQuery through a DSN  vs  a PDO unbuffered statement loop;
 *   2. the same sum over a smaller table (default 20,000 rows):
 *      memwarden  vs  a Laravel-style OFFSET chunk walk (LIMIT 1000 OFFSET n).
 * Usage: php bindings/php/bench/chunk.php [N] [N_OFFSET]
 */

require __DIR__ . '/../autoload.php';

use Memwarden\ChunkedDatabaseProcessor;

$n = (int) ($argv[1] ?? 200_000);
$nOffset = (int) ($argv[2] ?? 20_000);

function makeTable(int $rows): string
{
    $file = tempnam(sys_get_temp_dir(), 'mw-bench-');
    $pdo = new PDO('sqlite:' . $file);
    $pdo->setAttribute(PDO::ATTR_ERRMODE, PDO::ERRMODE_EXCEPTION);
    $pdo->exec('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER NOT NULL, active INTEGER NOT NULL)');
    $pdo->beginTransaction();
    $st = $pdo->prepare('INSERT INTO t (id, name, score, active) VALUES (?, ?, ?, ?)');
    for ($i = 1; $i <= $rows; $i++) {
        $st->execute([$i, sprintf('customer-name-%07d', $i), $i % 1000, $i % 2]);
    }
    $pdo->commit();
    return $file;
}

function timed(callable $fn): array
{
    gc_collect_cycles();
    $t = hrtime(true);
    $sum = $fn();
    return [(hrtime(true) - $t) / 1e9, $sum];
}

function memwardenSum(string $file): int
{
    $sum = 0;
    $p = new ChunkedDatabaseProcessor('sqlite:' . $file, ['chunk_size' => 1000]);
    $p->processQuery('SELECT id, name, score, active FROM t', function (array $batch) use (&$sum) {
        foreach ($batch as $row) {
            $sum += $row['score'];
        }
    });
    return $sum;
}

function report(string $what, int $rows, array $mw, array $anchor, string $anchorName): void
{
    [$tm, $sm] = $mw;
    [$ta, $sa] = $anchor;
    if ($sm !== $sa) {
        fwrite(STDERR, "sums differ: memwarden {$sm}, {$anchorName} {$sa}\n");
        exit(1);
    }
    printf(
        "%-34s %8d rows  memwarden %7.3f s (%9.0f rows/s)  %-22s %7.3f s (%9.0f rows/s)  ratio %.2fx\n",
        $what,
        $rows,
        $tm,
        $rows / $tm,
        $anchorName,
        $ta,
        $rows / $ta,
        $ta / $tm
    );
}

$file = makeTable($n);
$pdoLoop = function () use ($file): int {
    $pdo = new PDO('sqlite:' . $file);
    $sum = 0;
    foreach ($pdo->query('SELECT id, name, score, active FROM t', PDO::FETCH_ASSOC) as $row) {
        $sum += $row['score'];
    }
    return $sum;
};
$mw = timed(fn () => memwardenSum($file));
$anchor = timed($pdoLoop);
report('sum(score), keyset chunks vs PDO', $n, $mw, $anchor, 'PDO fetch loop');
unlink($file);

$file = makeTable($nOffset);
$offsetWalk = function () use ($file): int {
    $pdo = new PDO('sqlite:' . $file);
    $sum = 0;
    for ($offset = 0; ; $offset += 1000) {
        $rows = $pdo->query("SELECT id, name, score, active FROM t ORDER BY id LIMIT 1000 OFFSET {$offset}")->fetchAll(PDO::FETCH_ASSOC);
        if ($rows === []) {
            break;
        }
        foreach ($rows as $row) {
            $sum += $row['score'];
        }
    }
    return $sum;
};
$mw = timed(fn () => memwardenSum($file));
$anchor = timed($offsetWalk);
report('sum(score), keyset vs OFFSET chunks', $nOffset, $mw, $anchor, 'OFFSET walk (Laravel)');
unlink($file);
echo "ratio = anchor time / memwarden time (> 1: memwarden is faster)\n";
