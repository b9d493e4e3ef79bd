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
    private const MIB = 1048576.0;

    /**
     * Requests of every MemoryTrackingMiddleware in flight in this process, and begun so far:
     * for `overlapped` (PHP's memory figures are the process's, so another request running at
     * the same time, in a Swoole or ReactPHP server, is in them too).
     */
    private static int $inFlight = 0;
    private static int $begun = 0;

    private \FFI $ffi;
    /**
     * The process's tracker for this config (mw_request_shared): kept by the library between
     * requests, so under php-fpm or php -S the analytics span every request the worker
     * served, and nothing is freed per request.
     */
    private CData $handle;
    /** mw_request_report that mw_request_record fills, made on the first request. */
    private ?CData $report = null;
    /** char* for getAnalytics(), made on its first call (one FFI type fewer per request). */
    private ?CData $out = null;
    private bool $trackPeak;
    private bool $resetPeak;
    private ?string $logFile;
    /** @var (callable(mixed):string)|null */
    private $routeResolver;
    /** @var (callable(array<string,mixed>):mixed)|null */
    private $analyticsHandler = null;
    /**
     * Called by end() when the core's report says high_usage: a plain PHP call, no C callback
     * (an FFI closure costs ~13 us to create per request). Failures go to the core
     * (mw_request_handler_failed), which counts and logs them as for any host.
     *
     * @var (callable(float,mixed,array<string,mixed>):mixed)|null
     */
    private $highUsageHandler = null;

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
        $core = $config;
        unset($core['route_resolver']); // the binding-only key
        $fromIni = !array_key_exists('memory_limit', $core);
        if ($fromIni) {
            // PHP's memory_limit text ("128M", "-1": none), parsed by the core with the config:
            // one C call fewer per request than Native::phpMemoryLimit() (each distinct C
            // function costs a few us on its first call in a request).
            $core['memory_limit'] = trim((string) ini_get('memory_limit'));
        }
        if (isset($core['detailed_tracking']) && is_array($core['detailed_tracking'])) {
            $core['detailed_tracking'] = (object) $core['detailed_tracking'];
        }
        $ffi = $this->ffi = self::ffi();
        // Looked up here, not on first use: a bad option must throw from the constructor. The
        // library keeps one tracker per config text for the life of the process; after the
        // first request this call only finds it.
        $out = $ffi->new('mw_request*');
        $status = $ffi->mw_request_shared(self::configJson($core), \FFI::addr($out));
        if ($status !== 0 && $fromIni) {
            // a memory_limit text the core does not read: as before, no PHP limit
            unset($core['memory_limit']);
            $status = $ffi->mw_request_shared(self::configJson($core), \FFI::addr($out));
        }
        if ($status !== 0) {
            throw Native::error($status);
        }
        $this->handle = $out;
        $this->trackPeak = (bool) ($config['track_peak'] ?? true);
        $this->resetPeak = $this->trackPeak && function_exists('memory_reset_peak_usage');
        $log = $config['log_file'] ?? null;
        $this->logFile = is_string($log) && $log !== '' ? $log : null;
    }

    /**
     * PSR-15 style: measures `$handler->handle($request)` and adds the X-Memory-* headers to
     * the response with withHeader() (duck-typed: no dependency on psr/http-server).
     */
    public function process(object $request, object $handler): object
    {
        $route = $this->route($request);
        $begun = $this->begin();
        try {
            $response = $handler->handle($request);
        } catch (\Throwable $e) {
            $this->end($route, $begun, $request);
            throw $e;
        }
        $block = $this->end($route, $begun, $request);
        if ($block !== null && $block !== '') {
            foreach (explode("\n", rtrim($block, "\n")) as $line) {
                [$name, $value] = explode(': ', $line, 2);
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
        $this->highUsageHandler = $handler;
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
     * in_flight, sampled_out, handler_errors, max_routes, overflowed_routes, note. Kept per
     * process and config: every request this process served through a middleware with the
     * same config, under php-fpm and php -S (each worker its own) as in long-running servers
     * (RoadRunner, Swoole, FrankenPHP workers). A different config has its own.
     *
     * @return array<string,mixed>
     */
    public function getAnalytics(): array
    {
        $this->out ??= $this->ffi->new('char*');
        Native::check($this->ffi->mw_request_analytics($this->handle, \FFI::addr($this->out)));
        return Native::decode(Native::takeString($this->out));
    }

    // ---- internals ------------------------------------------------------------

    /**
     * The library, without linking Native on every request of a share-nothing server: with
     * ffi.preload (the recommended setup for php-fpm and php -S) its scope, else Native's.
     */
    private static function ffi(): \FFI
    {
        if ((string) ini_get('ffi.preload') !== '') {
            try {
                return \FFI::scope('memwarden'); // Native::SCOPE
            } catch (\FFI\Exception) {
                // other libraries' headers only: Native loads ours
            }
        }
        return Native::ffi();
    }

    /**
     * The config as JSON: json_encode here when it can (every value a plain scalar, array or
     * null), else Native::configJson(), which names what cannot be encoded.
     *
     * @param array<string,mixed> $config
     */
    private static function configJson(array $config): string
    {
        foreach ($config as $value) {
            if (is_float($value) && !is_finite($value) || is_object($value) && !$value instanceof \stdClass) {
                return Native::configJson('MemoryTrackingMiddleware', $config);
            }
        }
        $json = json_encode($config === [] ? new \stdClass() : (object) $config,
            JSON_PRESERVE_ZERO_FRACTION | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
        return $json === false ? Native::configJson('MemoryTrackingMiddleware', $config) : $json;
    }

    /** @param list<mixed> $args */
    private function run(callable $app, array $args): mixed
    {
        $route = $this->route($_SERVER);
        $begun = $this->begin();
        $level = ob_get_level();
        ob_start();
        try {
            return $app(...$args);
        } finally {
            $block = $this->end($route, $begun, $_SERVER);
            if ($block !== null && $block !== '' && !headers_sent()) {
                // The core's block: "Name: value" lines, as header() takes them.
                foreach (explode("\n", rtrim($block, "\n")) as $line) {
                    header($line);
                }
            }
            while (ob_get_level() > $level) {
                ob_end_flush();
            }
        }
    }

    /**
     * A request starts: its readings, taken by PHP (the library is called once, at its end).
     *
     * @return array{0:int,1:int,2:int,3:int} memory_get_usage(), hrtime, and self::$inFlight
     *     and self::$begun before it
     */
    private function begin(): array
    {
        $others = self::$inFlight++;
        $seq = self::$begun++;
        if ($this->resetPeak) {
            memory_reset_peak_usage();
        }
        return [memory_get_usage(), hrtime(true), $others, $seq];
    }

    /**
     * Records a request begin() started with one call into the library (which samples,
     * aggregates, logs and writes the header block), runs the handlers and returns the block
     * ("" with include_headers off), null when not measured (disabled or sampled out).
     *
     * @param array{0:int,1:int,2:int,3:int} $begun
     */
    private function end(string $route, array $begun, mixed $request): ?string
    {
        [$start, $t0, $others, $seq] = $begun;
        $ms = (hrtime(true) - $t0) / 1e6;
        $bytes = memory_get_usage();
        $peak = $this->resetPeak ? memory_get_peak_usage() : 0;
        self::$inFlight--;
        // Other requests in flight at its start, and begun during it.
        $overlapped = $others + (self::$begun - $seq - 1);
        $r = $this->report ??= $this->ffi->new('mw_request_report');
        $status = $this->ffi->mw_request_record($this->handle, $route, $start, $bytes, $peak, $ms, $overlapped, \FFI::addr($r));
        if ($status !== 0) {
            throw Native::error($status);
        }
        if (!$r->measured) {
            return null;
        }
        $block = \FFI::string($r->headers);
        $highUsage = $r->high_usage && $this->highUsageHandler !== null;
        if (!$highUsage && $this->analyticsHandler === null) {
            return $block;
        }
        $report = [
            'route' => $route,
            'start_bytes' => $r->start_bytes,
            'end_bytes' => $r->end_bytes,
            'peak_bytes' => $r->peak_bytes,
            'delta_bytes' => $r->delta_bytes,
            'duration_ms' => $r->duration_ms,
            'overlapped' => $r->overlapped,
            'high_usage' => $r->high_usage,
            'headers' => [],
        ];
        foreach ($block === '' ? [] : explode("\n", rtrim($block, "\n")) as $line) {
            [$name, $value] = explode(': ', $line, 2);
            $report['headers'][$name] = $value;
        }
        if ($highUsage) {
            try {
                ($this->highUsageHandler)($report['peak_bytes'] / self::MIB, $request, $report);
            } catch (\Throwable $e) {
                // Counted in handler_errors and logged by the core, as for a C callback.
                $msg = 'high-usage handler threw ' . get_class($e) . ': ' . $e->getMessage();
                Native::check($this->ffi->mw_request_handler_failed($this->handle, $route, str_replace("\0", ' ', $msg)));
            }
        }
        if ($this->analyticsHandler !== null) {
            foreach (['start', 'end', 'peak', 'delta'] as $k) {
                $report["{$k}_mb"] = $report["{$k}_bytes"] / self::MIB;
            }
            try {
                ($this->analyticsHandler)($report);
            } catch (\Throwable $e) {
                $this->logHandlerError($route, 'analytics handler threw ' . get_class($e) . ': ' . $e->getMessage());
            }
        }
        return $block;
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
