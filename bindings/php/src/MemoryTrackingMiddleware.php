<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;

/**
 * Per-request memory tracking for PHP front controllers and PSR-15 stacks, over memwarden's
 * native request tracker (core::request): memory at start and end, the peak during the
 * request, delta and duration, sampling, the high-usage threshold and analytics per route
 * template. The readings are PHP's own: memory_get_usage() at start and end and
 * memory_get_peak_usage() after memory_reset_peak_usage() (PHP >= 8.2; on 8.1 the peak is
 * max(start, end)). Under one request per process (php-fpm, php -S) they are exact for the
 * request.
 *
 * Config (the seed's keys): enabled (true), track_peak (true), log_high_usage (true),
 * threshold_mb (50: growth of the peak over the start above this many MiB makes a request
 * high-usage), detailed_tracking (false, or an array with track_allocations,
 * track_deallocations, include_stack_traces — also accepted at the top level), include_headers
 * (true), log_file (JSON lines; default: stderr, which is the server's log), sample_rate (1.0,
 * 0..1); also random_seed, max_routes (200; more templates are counted under "other"),
 * memory_limit (for X-Memory-Limit; default PHP's memory_limit). detailed_tracking and its
 * keys are accepted and do nothing in PHP: the engine offers userland no per-allocation hook
 * (there is no tracemalloc), only the totals this class already reads.
 *
 * Binding-only key: route_resolver (callable($request): string) gives the route template;
 * $request is the PSR-7 request in process() and the $_SERVER array in the plain wrapper.
 * Without it: the request attribute 'route_template' (a string) or Slim's '__route__'
 * (getPattern()), else the method and the path's first segment ("GET /users/*" for
 * /users/42). Never the raw path: analytics are kept per template, at most max_routes.
 *
 * A bad option throws InvalidConfigException naming the key. A high-usage or analytics
 * handler that throws is logged (log_file, else stderr / error_log) and the response is
 * returned as usual. Exceptions of the application itself are rethrown after the request
 * was measured.
 */
final class MemoryTrackingMiddleware
{
    private const BINDING_KEYS = ['route_resolver'];
    private const MIB = 1048576.0;

    private \FFI $ffi;
    private CData $handle;
    private CData $token;
    private CData $out;
    private bool $trackPeak;
    private bool $resetPeak;
    private ?string $logFile;
    /** @var (callable(mixed):string)|null */
    private $routeResolver;
    /** @var (callable(array<string,mixed>):mixed)|null */
    private $analyticsHandler = null;
    /**
     * What the high-usage trampoline needs: `handler` and `current` (the request being ended,
     * for the handler that runs inside end). A separate object, so that the trampoline does
     * not hold $this and the middleware is freed as soon as it is unreferenced.
     */
    private \stdClass $highUsage;
    /** The C trampoline of the high-usage handler, kept alive while it is set. */
    private ?\Closure $trampoline = null;

    /** @param array<string,mixed> $config */
    public function __construct(array $config = [])
    {
        $resolver = $config['route_resolver'] ?? null;
        if ($resolver !== null && !is_callable($resolver)) {
            throw new InvalidConfigException(
                "MemoryTrackingMiddleware config: 'route_resolver' must be callable, got " . get_debug_type($resolver),
                3
            );
        }
        $this->routeResolver = $resolver;
        $this->highUsage = (object) ['handler' => null, 'current' => null];
        $core = array_diff_key($config, array_flip(self::BINDING_KEYS));
        if (!array_key_exists('memory_limit', $core) && Native::phpMemoryLimit() > 0) {
            $core['memory_limit'] = Native::phpMemoryLimit();
        }
        if (isset($core['detailed_tracking']) && is_array($core['detailed_tracking'])) {
            $core['detailed_tracking'] = (object) $core['detailed_tracking'];
        }
        $this->ffi = Native::ffi();
        $out = $this->ffi->new('mw_request*');
        Native::check($this->ffi->mw_request_new(
            Native::configJson('MemoryTrackingMiddleware', $core),
            \FFI::addr($out)
        ));
        $this->handle = $out;
        $this->token = $this->ffi->new('uint64_t');
        $this->out = $this->ffi->new('char*');
        $this->trackPeak = (bool) ($config['track_peak'] ?? true);
        $this->resetPeak = $this->trackPeak && function_exists('memory_reset_peak_usage');
        $log = $config['log_file'] ?? null;
        $this->logFile = is_string($log) && $log !== '' ? $log : null;
    }

    public function __destruct()
    {
        if (isset($this->handle)) {
            $this->ffi->mw_request_free($this->handle);
            unset($this->handle);
        }
    }

    /**
     * PSR-15 style: measures `$handler->handle($request)` and adds the X-Memory-* headers to
     * the response with withHeader() (duck-typed: no dependency on psr/http-server).
     */
    public function process(object $request, object $handler): object
    {
        $token = $this->begin($request);
        try {
            $response = $handler->handle($request);
        } catch (\Throwable $e) {
            $this->end($token, $request);
            throw $e;
        }
        $report = $this->end($token, $request);
        if ($report !== null) {
            foreach ($report['headers'] ?? [] as $name => $value) {
                $response = $response->withHeader($name, $value);
            }
        }
        return $response;
    }

    /**
     * Two forms: `$mw($request, $handler)` is process() (Slim's callable middleware), and
     * `$mw($app, ...$args)` runs the callable $app measured, as wrap() does, and returns its
     * result.
     */
    public function __invoke(mixed ...$args): mixed
    {
        if (count($args) === 2 && is_object($args[0]) && is_object($args[1]) && method_exists($args[1], 'handle')) {
            return $this->process($args[0], $args[1]);
        }
        if ($args !== [] && is_callable($args[0])) {
            $app = array_shift($args);
            return $this->run($app, $args);
        }
        throw new InvalidArgumentException(
            'MemoryTrackingMiddleware: call it as ($request, $handler) or ($app callable, ...$args)',
            2
        );
    }

    /**
     * A plain front-controller wrapper: the returned closure runs $app with its arguments,
     * measured, and sets the X-Memory-* headers with header(). The body output is buffered
     * (ob_start) until $app returns so the headers can still be set; output that $app
     * flushes itself sends the head early, and then the headers are left out (the figures
     * still go to the analytics handler and the log).
     */
    public function wrap(callable $app): \Closure
    {
        return fn (mixed ...$args): mixed => $this->run($app, $args);
    }

    /**
     * $handler(float $usageMb, $request, array $report) for each high-usage request, called
     * while the request ends. $usageMb is the peak during the request in MiB (the seed's
     * `$usage > 100`); $request is the PSR-7 request or the $_SERVER array. null removes it.
     */
    public function setHighUsageHandler(?callable $handler): void
    {
        if ($handler === null) {
            Native::check($this->ffi->mw_request_set_high_usage_callback($this->handle, null, null, null));
            $this->highUsage->handler = null;
            $this->trampoline = null;
            return;
        }
        $this->highUsage->handler = $handler;
        $state = $this->highUsage;
        $this->trampoline ??= static function ($userData, $reportJson, $errorBuf, $errorLen) use ($state): int {
            try {
                $json = is_string($reportJson) ? $reportJson : \FFI::string($reportJson);
                $report = json_decode($json, true, 512, JSON_THROW_ON_ERROR);
                if ($state->handler !== null) {
                    ($state->handler)($report['peak_bytes'] / self::MIB, $state->current, $report);
                }
                return 0;
            } catch (\Throwable $e) {
                // Never let an exception escape into C (fatal in PHP): the core logs this text.
                $msg = 'high-usage handler threw ' . get_class($e) . ': ' . $e->getMessage();
                $n = min(strlen($msg), (int) $errorLen - 1);
                if ($n > 0) {
                    \FFI::memcpy($errorBuf, $msg, $n);
                    $errorBuf[$n] = "\0";
                }
                return 1;
            }
        };
        Native::check($this->ffi->mw_request_set_high_usage_callback($this->handle, $this->trampoline, null, null));
    }

    /**
     * $handler(array $report) after every measured request: route, start/end/peak/delta in
     * bytes and MiB, duration_ms, overlapped, high_usage, headers. null removes it.
     */
    public function setAnalyticsHandler(?callable $handler): void
    {
        $this->analyticsHandler = $handler;
    }

    /**
     * The aggregates per route template: routes (count, high_usage, overlapped,
     * overlapped_share, delta_bytes / peak_bytes {p50, p95, max}, duration_ms {avg, max}),
     * in_flight, sampled_out, handler_errors, max_routes, overflowed_routes, note. Kept for
     * the life of this object: per process in long-running servers (RoadRunner, Swoole,
     * FrankenPHP workers), per request under php-fpm or php -S.
     *
     * @return array<string,mixed>
     */
    public function getAnalytics(): array
    {
        Native::check($this->ffi->mw_request_analytics($this->handle, \FFI::addr($this->out)));
        return Native::decode(Native::takeString($this->out));
    }

    // ---- internals ------------------------------------------------------------

    /** @param list<mixed> $args */
    private function run(callable $app, array $args): mixed
    {
        $token = $this->begin($_SERVER);
        $level = ob_get_level();
        ob_start();
        try {
            return $app(...$args);
        } finally {
            $report = $this->end($token, $_SERVER);
            if ($report !== null && !headers_sent()) {
                foreach ($report['headers'] ?? [] as $name => $value) {
                    header("{$name}: {$value}");
                }
            }
            while (ob_get_level() > $level) {
                ob_end_flush();
            }
        }
    }

    private function begin(mixed $request): int
    {
        $route = $this->route($request);
        if ($this->resetPeak) {
            memory_reset_peak_usage();
        }
        Native::check($this->ffi->mw_request_begin_with(
            $this->handle,
            $route,
            memory_get_usage(),
            \FFI::addr($this->token)
        ));
        return $this->token->cdata;
    }

    /** @return array<string,mixed>|null the report, null when the request was not measured */
    private function end(int $token, mixed $request): ?array
    {
        if ($token === 0) {
            return null;
        }
        $bytes = memory_get_usage();
        $peak = $this->resetPeak ? memory_get_peak_usage() : 0;
        $this->highUsage->current = $request;
        try {
            $status = $this->ffi->mw_request_end_with($this->handle, $token, $bytes, $peak, \FFI::addr($this->out));
        } finally {
            $this->highUsage->current = null;
        }
        Native::check($status);
        $report = json_decode(Native::takeString($this->out), true, 512, JSON_THROW_ON_ERROR);
        if (!is_array($report)) {
            return null;
        }
        if ($this->analyticsHandler !== null) {
            foreach (['start', 'end', 'peak', 'delta'] as $k) {
                $report["{$k}_mb"] = $report["{$k}_bytes"] / self::MIB;
            }
            try {
                ($this->analyticsHandler)($report);
            } catch (\Throwable $e) {
                $this->logHandlerError($report['route'], 'analytics handler threw ' . get_class($e) . ': ' . $e->getMessage());
            }
        }
        return $report;
    }

    private function route(mixed $request): string
    {
        if ($this->routeResolver !== null) {
            $route = ($this->routeResolver)($request);
            if (!is_string($route) || $route === '') {
                throw new InvalidArgumentException(
                    'MemoryTrackingMiddleware: route_resolver must return a non-empty string, got '
                    . get_debug_type($route),
                    2
                );
            }
            return $route;
        }
        if (is_array($request)) {
            $method = (string) ($request['REQUEST_METHOD'] ?? 'GET');
            $path = (string) parse_url((string) ($request['REQUEST_URI'] ?? '/'), PHP_URL_PATH);
            return self::firstSegment($method, $path);
        }
        if (is_object($request)) {
            if (method_exists($request, 'getAttribute')) {
                $t = $request->getAttribute('route_template');
                if (is_string($t) && $t !== '') {
                    return $t;
                }
                $r = $request->getAttribute('__route__');
                if (is_object($r) && method_exists($r, 'getPattern')) {
                    $method = method_exists($request, 'getMethod') ? (string) $request->getMethod() : 'GET';
                    return $method . ' ' . $r->getPattern();
                }
            }
            $method = method_exists($request, 'getMethod') ? (string) $request->getMethod() : 'GET';
            $path = '/';
            if (method_exists($request, 'getUri')) {
                $uri = $request->getUri();
                $path = is_object($uri) && method_exists($uri, 'getPath') ? (string) $uri->getPath() : (string) $uri;
            }
            return self::firstSegment($method, $path);
        }
        return 'other';
    }

    /** "GET /users" for /users, "GET /users/*" for /users/42, "GET /" for /. */
    private static function firstSegment(string $method, string $path): string
    {
        $path = trim($path, '/');
        if ($path === '') {
            return "{$method} /";
        }
        $slash = strpos($path, '/');
        return $slash === false ? "{$method} /{$path}" : $method . ' /' . substr($path, 0, $slash) . '/*';
    }

    private function logHandlerError(string $route, string $error): void
    {
        $line = json_encode(['event' => 'handler_error', 'route' => $route, 'error' => $error], JSON_UNESCAPED_SLASHES);
        if ($this->logFile !== null && @file_put_contents($this->logFile, $line . "\n", FILE_APPEND | LOCK_EX) !== false) {
            return;
        }
        error_log("memwarden: {$line}");
    }
}
