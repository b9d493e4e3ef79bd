<?php

/*
 * A plain front controller measured by Memwarden\MemoryTrackingMiddleware.
 *
 *     php -d ffi.enable=1 -S 127.0.0.1:8080 bindings/php/examples/middleware/index.php
 *     curl -i http://127.0.0.1:8080/users/42
 *
 * (php -S is the "cli-server" SAPI, where ffi.enable's default 'preload' does not allow FFI.)
 *
 * Routes: GET / (hello), GET /users/{id}, GET /big (grows memory by ~8 MiB: a high-usage
 * request with the default threshold of 5 MiB here), GET /boom (the application throws),
 * GET /memory (this server process's analytics per route template, as JSON: every request it
 * served through the middleware, since the library keeps them between requests).
 * Environment, for the tests and the benchmark:
 *   MW_EXAMPLE_MIDDLEWARE=0       serve the same app without the middleware
 *   MW_EXAMPLE_SAMPLE_RATE        sample_rate (default 1.0)
 *   MW_EXAMPLE_THRESHOLD_MB       threshold_mb (default 5)
 *   MW_EXAMPLE_LOG_FILE           log_file (default: the server's stderr)
 *   MW_EXAMPLE_ANALYTICS_LOG      the analytics handler appends each request's report here
 *   MW_EXAMPLE_HANDLER_THROWS=1   the high-usage handler throws (the request still succeeds)
 */

declare(strict_types=1);

require __DIR__ . '/../../autoload.php';

use Memwarden\MemoryTrackingMiddleware;

/** The application's routes: template => handler. */
$routes = [
    'GET /' => static fn (): string => "hello\n",
    'GET /users/{id}' => static fn (string $id): string => json_encode(['id' => (int) $id, 'name' => "user {$id}"]) . "\n",
    'GET /big' => static function (): string {
        $blob = str_repeat('x', 8 << 20);
        return strlen($blob) . " bytes\n";
    },
    'GET /boom' => static function (): string {
        throw new RuntimeException('the application failed');
    },
];

/**
 * The route template and arguments for a method and path: [template, args] or [null, []].
 *
 * @param array<string,callable> $routes
 * @return array{0:?string,1:list<string>}
 */
function match_route(array $routes, string $method, string $path): array
{
    foreach (array_keys($routes) as $template) {
        [$m, $pattern] = explode(' ', $template, 2);
        $regex = '#^' . preg_replace('#\\\\\{[a-z]+\\\\\}#', '([^/]+)', preg_quote($pattern, '#')) . '$#';
        if ($m === $method && preg_match($regex, $path, $args) === 1) {
            return [$template, array_slice($args, 1)];
        }
    }
    return [null, []];
}

$method = $_SERVER['REQUEST_METHOD'] ?? 'GET';
$path = (string) parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);

$app = static function () use ($routes, $method, $path): void {
    [$template, $args] = match_route($routes, $method, $path);
    if ($template === null) {
        http_response_code(404);
        echo "not found\n";
        return;
    }
    try {
        $body = $routes[$template](...$args);
    } catch (Throwable $e) {
        http_response_code(500);
        $body = "error: {$e->getMessage()}\n";
    }
    header('Content-Type: text/plain');
    echo $body;
};

if (getenv('MW_EXAMPLE_MIDDLEWARE') === '0') {
    $app();
    return;
}

$env = static fn (string $name, string $default): string => ($v = getenv($name)) === false || $v === '' ? $default : $v;

$middleware = new MemoryTrackingMiddleware([
    'enabled' => true,
    'track_peak' => true,
    'log_high_usage' => true,
    'threshold_mb' => (float) $env('MW_EXAMPLE_THRESHOLD_MB', '5'),
    'detailed_tracking' => false,
    'include_headers' => true,
    'log_file' => $env('MW_EXAMPLE_LOG_FILE', '') ?: null,
    'sample_rate' => (float) $env('MW_EXAMPLE_SAMPLE_RATE', '1.0'),
    // Analytics per template ("GET /users/{id}"), never per raw path.
    'route_resolver' => static fn (array $server): string => match_route($routes, $method, $path)[0] ?? 'unmatched',
]);

$middleware->setHighUsageHandler(static function (float $usage, array $server, array $report): void {
    if (getenv('MW_EXAMPLE_HANDLER_THROWS') === '1') {
        throw new RuntimeException("high-usage handler failed on {$report['route']}");
    }
    error_log(sprintf('high memory usage: %.1f MB on %s', $usage, $report['route']));
});

$analyticsLog = $env('MW_EXAMPLE_ANALYTICS_LOG', '');
if ($analyticsLog !== '') {
    $middleware->setAnalyticsHandler(static function (array $report) use ($analyticsLog): void {
        file_put_contents($analyticsLog, json_encode($report, JSON_UNESCAPED_SLASHES) . "\n", FILE_APPEND | LOCK_EX);
    });
}

if ($method === 'GET' && $path === '/memory') {
    // Not measured itself: the aggregates of the requests before it.
    header('Content-Type: application/json');
    echo json_encode($middleware->getAnalytics(), JSON_UNESCAPED_SLASHES), "\n";
    return;
}

$middleware->wrap($app)();
