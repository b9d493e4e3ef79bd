<?php

declare(strict_types=1);

namespace Memwarden\Tests\Fixtures;

// Small fake services for the seed's Lazy Container snippets.

final class Logger
{
    public function __construct(public string $channel = 'app')
    {
    }
}

final class AppConfig
{
    /** @param array<string,mixed> $values */
    public function __construct(public array $values = [])
    {
    }

    public function get(string $key): mixed
    {
        return $this->values[$key] ?? null;
    }
}

final class UserService
{
    public function __construct(public DatabaseConnection $database)
    {
    }
}

final class EmailService
{
    public function __construct(public Logger $logger, public AppConfig $config)
    {
    }
}

final class SmsService
{
}

final class RedisCache
{
    public static int $made = 0;

    public function __construct()
    {
        self::$made++;
    }
}

final class StripeProcessor
{
    public function __construct(public AppConfig $config)
    {
    }
}

final class PayPalProcessor
{
    public function __construct(public AppConfig $config)
    {
    }
}

/** Auto-wired: $logger by its class type, $channel by name, $retries by default. */
final class Mailer
{
    public function __construct(public Logger $logger, public string $channel, public int $retries = 3)
    {
    }
}

/** Auto-wired: $missing cannot be resolved. */
final class NeedsMissing
{
    public function __construct(public string $missing)
    {
    }
}
