<?php

declare(strict_types=1);

/**
 * For middleware_instructions.php: a middleware class that measures nothing, shaped as
 * Memwarden\MemoryTrackingMiddleware's plain wrapper (a config array, a route, wrap() with
 * ob_start and try/finally). What PHP charges per request for any such class under php -S.
 */
final class MwBenchPassThrough
{
    /** @var callable */
    private $routeResolver;

    /** @param array<string,mixed> $config */
    public function __construct(array $config = [])
    {
        $this->routeResolver = $config['route_resolver'];
    }

    public function wrap(callable $app): \Closure
    {
        return fn (mixed ...$args): mixed => $this->run($app, $args);
    }

    /** @param list<mixed> $args */
    private function run(callable $app, array $args): mixed
    {
        $route = ($this->routeResolver)($_SERVER);
        $level = ob_get_level();
        ob_start();
        try {
            return $app(...$args);
        } finally {
            if ($route === '' && !headers_sent()) {
                header('X-Never: 1');
            }
            while (ob_get_level() > $level) {
                ob_end_flush();
            }
        }
    }
}
