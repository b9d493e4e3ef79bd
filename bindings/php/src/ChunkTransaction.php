<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;
use Memwarden\Exception\ClosedException;

/**
 * The transaction of one chunk in the same-transaction mode (config 'checkpoint_table'),
 * handed to the callback as its second argument. What runs through execute() / query()
 * commits together with the chunk's checkpoint row, or not at all. Valid only while its
 * callback runs. Placeholders: `?` (a PDO connection, SQLite and MySQL URLs) or `$1`
 * (PostgreSQL URLs). With a PDO connection the callback may use its PDO as well: it is the
 * same connection, inside the same transaction.
 */
final class ChunkTransaction
{
    private ?CData $tx;

    /** @internal made by ChunkedDatabaseProcessor */
    public function __construct(private \FFI $ffi, CData $tx)
    {
        $this->tx = $tx;
    }

    /** @param list<int|float|string|bool|null> $params */
    public function execute(string $sql, array $params = []): void
    {
        Native::check($this->ffi->mw_chunk_tx_execute($this->handle(), $sql, self::params($params)));
    }

    /**
     * As execute(), and returns the rows as associative arrays.
     *
     * @param list<int|float|string|bool|null> $params
     * @return list<array<string,mixed>>
     */
    public function query(string $sql, array $params = []): array
    {
        $out = $this->ffi->new('char*');
        Native::check($this->ffi->mw_chunk_tx_query($this->handle(), $sql, self::params($params), \FFI::addr($out)));
        $rows = Native::decode(Native::takeString($out));
        return array_values($rows);
    }

    /** @internal the chunk's transaction ended */
    public function end(): void
    {
        $this->tx = null;
    }

    private function handle(): CData
    {
        if ($this->tx === null) {
            throw new ClosedException(
                "ChunkTransaction: this chunk's transaction has ended (use \$tx only inside its callback)",
                11
            );
        }
        return $this->tx;
    }

    /** @param array<mixed> $params */
    private static function params(array $params): string
    {
        foreach ($params as $i => $p) {
            if (!is_scalar($p) && $p !== null) {
                throw new \TypeError(
                    "ChunkTransaction::execute(): parameter {$i} is " . get_debug_type($p)
                    . '; parameters are null, bool, int, float or string'
                );
            }
        }
        return json_encode(array_values($params), JSON_THROW_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION
            | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE);
    }
}
