<?php

declare(strict_types=1);

namespace Memwarden\Tests\Fixtures;

// Tiny PSR-7 / PSR-15 look-alikes: just the methods MemoryTrackingMiddleware calls, so the
// tests need no psr/http-* packages.

final class FakeUri
{
    public function __construct(private string $path)
    {
    }

    public function getPath(): string
    {
        return $this->path;
    }
}

final class FakeRequest
{
    /** @param array<string,mixed> $attributes */
    public function __construct(private string $method, private string $path, private array $attributes = [])
    {
    }

    public function getMethod(): string
    {
        return $this->method;
    }

    public function getUri(): FakeUri
    {
        return new FakeUri($this->path);
    }

    public function getAttribute(string $name, mixed $default = null): mixed
    {
        return $this->attributes[$name] ?? $default;
    }
}

/** Immutable like PSR-7: withHeader() returns a copy. */
final class FakeResponse
{
    /** @param array<string,string> $headers */
    public function __construct(public readonly int $status = 200, public readonly array $headers = [])
    {
    }

    public function withHeader(string $name, string $value): self
    {
        return new self($this->status, [$name => $value] + $this->headers);
    }
}

final class FakeRoute
{
    public function __construct(private string $pattern)
    {
    }

    public function getPattern(): string
    {
        return $this->pattern;
    }
}

/** A PSR-15 style handler around a callable($request): FakeResponse. */
final class FakeHandler
{
    public int $calls = 0;

    /** @param \Closure(object):FakeResponse $body */
    public function __construct(private \Closure $body)
    {
    }

    public function handle(object $request): FakeResponse
    {
        $this->calls++;
        return ($this->body)($request);
    }
}
