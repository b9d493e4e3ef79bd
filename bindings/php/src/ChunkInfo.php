<?php

declare(strict_types=1);

namespace Memwarden;

/**
 * The chunk an error callback is asked about: "{$chunk}" reads like
 * "#3 (keys 201..300, 100 rows)"; the fields are public properties and array keys too
 * ($chunk->first_key, $chunk['rows']).
 *
 * @implements \ArrayAccess<string,mixed>
 */
final class ChunkInfo implements \ArrayAccess, \Stringable
{
    public function __construct(
        public readonly int $index,
        public readonly int|string|null $first_key,
        public readonly int|string|null $last_key,
        public readonly int $rows,
        public readonly int $attempts,
        public readonly int|string|null $after_key = null,
    ) {
    }

    /** @param array<string,mixed> $info the core's chunk JSON, decoded */
    public static function fromArray(array $info): self
    {
        $key = static fn ($v) => is_int($v) || is_string($v) ? $v : (is_scalar($v) ? (string) $v : null);
        return new self(
            (int) ($info['index'] ?? 0),
            $key($info['first_key'] ?? null),
            $key($info['last_key'] ?? null),
            (int) ($info['rows'] ?? 0),
            (int) ($info['attempts'] ?? 0),
            $key($info['after_key'] ?? null),
        );
    }

    public function __toString(): string
    {
        if ($this->first_key !== null && $this->last_key !== null) {
            return "#{$this->index} (keys {$this->first_key}..{$this->last_key}, {$this->rows} rows)";
        }
        return $this->after_key !== null ? "#{$this->index} (after key {$this->after_key})" : "#{$this->index} (from the start)";
    }

    /** @return array<string,mixed> */
    public function toArray(): array
    {
        return get_object_vars($this);
    }

    public function offsetExists(mixed $offset): bool
    {
        return is_string($offset) && property_exists($this, $offset) && $this->{$offset} !== null;
    }

    public function offsetGet(mixed $offset): mixed
    {
        return is_string($offset) && property_exists($this, $offset) ? $this->{$offset} : null;
    }

    public function offsetSet(mixed $offset, mixed $value): void
    {
        throw new \LogicException('ChunkInfo is read-only');
    }

    public function offsetUnset(mixed $offset): void
    {
        throw new \LogicException('ChunkInfo is read-only');
    }
}
