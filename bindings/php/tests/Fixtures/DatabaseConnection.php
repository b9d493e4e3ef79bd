<?php

declare(strict_types=1);

namespace Memwarden\Tests\Fixtures;

/** A fake database connection for the seed's pool snippets: counts what is done to it. */
final class DatabaseConnection
{
    public static int $opened = 0;

    public int $number;
    public bool $connected = true;
    public bool $inTransaction = false;
    /** @var array<string,mixed> */
    public array $cache = [];
    public int $rollbacks = 0;
    public int $cacheClears = 0;
    public int $queries = 0;

    /** @param array<string,mixed> $config */
    public function __construct(public array $config = [])
    {
        $this->number = ++self::$opened;
    }

    /** @return list<array<string,mixed>> */
    public function query(string $sql): array
    {
        if (!$this->connected) {
            throw new \RuntimeException("connection #{$this->number} is closed");
        }
        $this->queries++;
        $this->inTransaction = true;
        $this->cache[$sql] = true;
        return [['id' => 1, 'name' => 'alice', 'sql' => $sql, 'connection' => $this->number]];
    }

    public function rollback(): void
    {
        $this->rollbacks++;
        $this->inTransaction = false;
    }

    public function clearCache(): void
    {
        $this->cacheClears++;
        $this->cache = [];
    }

    public function isConnected(): bool
    {
        return $this->connected;
    }

    public function disconnect(): void
    {
        $this->connected = false;
    }
}
