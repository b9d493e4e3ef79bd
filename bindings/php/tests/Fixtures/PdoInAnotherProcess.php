<?php

declare(strict_types=1);

namespace Memwarden\Tests\Fixtures;

/**
 * A PDO on a SQLite file, living in a child PHP process: exec(), prepare()->execute() and
 * query()->fetchColumn() / fetchAll(PDO::FETCH_NUM) as on a PDO, each statement committed
 * before the call returns.
 *
 * A test that reads a file through memwarden's DSN (memwarden's bundled SQLite) must not write
 * it through a PDO of its own process: PDO's SQLite is another SQLite library, and two SQLite
 * libraries in one process do not see each other's locks. Another process is what a DSN is for.
 */
final class PdoInAnotherProcess
{
    private const CHILD = <<<'PHP'
        $pdo = new PDO('sqlite:' . $argv[1], null, null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, PDO::ATTR_TIMEOUT => 30]);
        $pdo->exec('PRAGMA synchronous = OFF');
        while (($line = fgets(STDIN)) !== false) {
            [$sql, $params] = json_decode($line, true);
            $stmt = $pdo->prepare($sql);
            $stmt->execute($params);
            echo json_encode($stmt->columnCount() > 0 ? $stmt->fetchAll(PDO::FETCH_NUM) : []), "\n";
        }
        PHP;

    /** @var resource */
    private $proc;
    /** @var array<int,resource> */
    private array $pipes = [];

    public function __construct(string $file)
    {
        $proc = proc_open([PHP_BINARY, '-r', self::CHILD, $file], [0 => ['pipe', 'r'], 1 => ['pipe', 'w']], $this->pipes);
        if ($proc === false) {
            throw new \RuntimeException('cannot start the writer process');
        }
        $this->proc = $proc;
    }

    public function exec(string $sql): int
    {
        $this->run($sql);
        return 0;
    }

    /**
     * @param list<mixed> $params
     * @return list<list<mixed>> the rows, as PDO::FETCH_NUM gives them
     */
    public function run(string $sql, array $params = []): array
    {
        fwrite($this->pipes[0], json_encode([$sql, $params]) . "\n");
        $line = fgets($this->pipes[1]);
        if ($line === false) {
            throw new \RuntimeException("the writer process failed on: {$sql}");
        }
        return json_decode($line, true);
    }

    public function prepare(string $sql): object
    {
        return new class ($this, $sql) {
            public function __construct(private PdoInAnotherProcess $pdo, private string $sql)
            {
            }

            /** @param list<mixed> $params */
            public function execute(array $params = []): bool
            {
                $this->pdo->run($this->sql, $params);
                return true;
            }
        };
    }

    public function query(string $sql): object
    {
        return new class ($this->run($sql)) {
            /** @param list<list<mixed>> $rows */
            public function __construct(private array $rows)
            {
            }

            public function fetchColumn(): mixed
            {
                return $this->rows[0][0] ?? false;
            }

            /** @return list<list<mixed>> */
            public function fetchAll(int $mode = \PDO::FETCH_NUM): array
            {
                return $this->rows;
            }
        };
    }

    public function __destruct()
    {
        fclose($this->pipes[0]);
        fclose($this->pipes[1]);
        proc_close($this->proc);
    }
}
