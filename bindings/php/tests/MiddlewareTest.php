<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;
use Memwarden\MemoryTrackingMiddleware;
use Memwarden\Tests\Fixtures\FakeHandler;
use Memwarden\Tests\Fixtures\FakeRequest;
use Memwarden\Tests\Fixtures\FakeResponse;
use Memwarden\Tests\Fixtures\FakeRoute;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/Fixtures/HttpDoubles.php';

/**
 * MemoryTrackingMiddleware: the example front controller (examples/middleware/index.php)
 * served by `php -S 127.0.0.1:<port>` and hit with real HTTP requests, and the PSR-15 form
 * with tiny request/response/handler doubles.
 */
final class MiddlewareTest extends TestCase
{
    private const HEADERS = ['x-memory-usage', 'x-memory-peak', 'x-memory-limit', 'x-memory-efficiency'];

    /** @var list<resource> */
    private array $procs = [];
    /** @var list<string> */
    private array $files = [];

    protected function tearDown(): void
    {
        foreach ($this->procs as $proc) {
            if (proc_get_status($proc)['running']) {
                proc_terminate($proc, 9);
            }
            proc_close($proc);
        }
        $this->procs = [];
        foreach ($this->files as $f) {
            @unlink($f);
        }
        $this->files = [];
    }

    // ---- fixtures -------------------------------------------------------------

    private function tempFile(string $prefix): string
    {
        $f = (string) tempnam(sys_get_temp_dir(), $prefix);
        $this->files[] = $f;
        return $f;
    }

    private static function freePort(): int
    {
        $s = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
        self::assertNotFalse($s, $errstr);
        $name = (string) stream_socket_get_name($s, false);
        fclose($s);
        return (int) substr($name, (int) strrpos($name, ':') + 1);
    }

    /**
     * Serves the example front controller with `php -S`; returns its base URL.
     *
     * @param array<string,string> $env
     * @param list<string> $ini extra -d settings
     */
    private function serve(array $env = [], array $ini = []): string
    {
        $args = [];
        foreach ($ini as $setting) {
            $args[] = '-d';
            $args[] = $setting;
        }
        $index = dirname(__DIR__) . '/examples/middleware/index.php';
        $env += getenv();
        for ($try = 0; $try < 5; $try++) {
            $port = self::freePort();
            $proc = proc_open(
                [PHP_BINARY, '-d', 'ffi.enable=1', ...$args, '-S', "127.0.0.1:{$port}", $index],
                [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', '/dev/null', 'w']],
                $pipes,
                null,
                $env
            );
            $this->assertIsResource($proc);
            $this->procs[] = $proc;
            $deadline = microtime(true) + 10;
            while (microtime(true) < $deadline) {
                $c = @stream_socket_client("tcp://127.0.0.1:{$port}", $errno, $errstr, 0.2);
                if ($c !== false) {
                    fclose($c);
                    return "127.0.0.1:{$port}";
                }
                if (!proc_get_status($proc)['running']) {
                    break;
                }
                usleep(20_000);
            }
        }
        $this->fail('php -S did not start');
    }

    /**
     * One HTTP/1.0 GET over a plain socket.
     *
     * @return array{status:int,headers:array<string,string>,body:string}
     */
    private static function get(string $server, string $path): array
    {
        $c = stream_socket_client("tcp://{$server}", $errno, $errstr, 5);
        self::assertNotFalse($c, $errstr);
        stream_set_timeout($c, 10);
        fwrite($c, "GET {$path} HTTP/1.0\r\nHost: {$server}\r\nConnection: close\r\n\r\n");
        $raw = (string) stream_get_contents($c);
        fclose($c);
        [$head, $body] = explode("\r\n\r\n", $raw, 2) + [1 => ''];
        $lines = explode("\r\n", $head);
        $status = (int) (explode(' ', (string) array_shift($lines))[1] ?? 0);
        $headers = [];
        foreach ($lines as $line) {
            [$k, $v] = explode(':', $line, 2) + [1 => ''];
            $headers[strtolower(trim($k))] = trim($v);
        }
        return ['status' => $status, 'headers' => $headers, 'body' => $body];
    }

    /** @return list<array<string,mixed>> */
    private static function jsonLines(string $file): array
    {
        $out = [];
        foreach (file($file, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) ?: [] as $line) {
            $out[] = json_decode($line, true, 512, JSON_THROW_ON_ERROR);
        }
        return $out;
    }

    // ---- the example front controller over real HTTP --------------------------

    public function testHeadersAreNumericAndAnalyticsArePerRouteTemplate(): void
    {
        $analytics = $this->tempFile('mw-analytics-');
        $log = $this->tempFile('mw-log-');
        $server = $this->serve(['MW_EXAMPLE_ANALYTICS_LOG' => $analytics, 'MW_EXAMPLE_LOG_FILE' => $log]);
        $paths = ['/', '/users/1', '/users/2', '/users/3', '/big', '/nope', '/boom'];
        foreach ($paths as $path) {
            $r = self::get($server, $path);
            $want = ['/nope' => 404, '/boom' => 500][$path] ?? 200;
            $this->assertSame($want, $r['status'], $path . ': ' . $r['body']);
            foreach (self::HEADERS as $h) {
                $this->assertArrayHasKey($h, $r['headers'], "{$path} lacks {$h}");
                $this->assertMatchesRegularExpression('/^\d+\.\d$/', $r['headers'][$h], "{$path} {$h}");
            }
            $this->assertGreaterThan(0.0, (float) $r['headers']['x-memory-usage']);
            $this->assertGreaterThanOrEqual((float) $r['headers']['x-memory-usage'], (float) $r['headers']['x-memory-peak']);
            $this->assertLessThanOrEqual(100.0, (float) $r['headers']['x-memory-efficiency']);
        }
        $this->assertSame('{"id":2,"name":"user 2"}' . "\n", self::get($server, '/users/2')['body']);
        $limit = (float) self::get($server, '/')['headers']['x-memory-limit'];
        $this->assertGreaterThan(0.0, $limit);
        $ini = ini_get('memory_limit');
        if ($ini !== '-1') {
            // the server runs with the same php.ini: X-Memory-Limit is PHP's memory_limit
            $this->assertEqualsWithDelta(\Memwarden\Native::parseSize((string) $ini) / 1048576, $limit, 0.05);
        }

        $byRoute = [];
        foreach (self::jsonLines($analytics) as $report) {
            $byRoute[$report['route']][] = $report;
        }
        $this->assertSame(4, count($byRoute['GET /users/{id}']), 'three raw paths, one template (plus one more request)');
        $this->assertArrayNotHasKey('GET /users/2', $byRoute);
        $this->assertCount(2, $byRoute['GET /']);
        $this->assertCount(1, $byRoute['unmatched']);
        $this->assertCount(1, $byRoute['GET /boom']);
        $big = $byRoute['GET /big'][0];
        $this->assertTrue($big['high_usage']);
        $this->assertGreaterThan(8 << 20, $big['peak_bytes'] - $big['start_bytes'], 'the 8 MiB string is in the peak');
        $this->assertFalse($byRoute['GET /'][0]['high_usage']);
        $this->assertSame(0, $byRoute['GET /'][0]['overlapped'], 'php -S serves one request at a time');
        $lines = self::jsonLines($log);
        $high = array_values(array_filter($lines, static fn ($l) => $l['event'] === 'high_memory_usage'));
        $this->assertCount(1, $high);
        $this->assertSame('GET /big', $high[0]['route']);

        // Each request is a fresh PHP request with a fresh middleware object, and the
        // aggregates still span them: the library keeps the tracker of this config.
        $m = self::get($server, '/memory');
        $this->assertSame(200, $m['status'], $m['body']);
        $agg = json_decode($m['body'], true, 512, JSON_THROW_ON_ERROR);
        $this->assertSame(4, $agg['routes']['GET /users/{id}']['count']);
        $this->assertSame(2, $agg['routes']['GET /']['count']);
        $this->assertSame(1, $agg['routes']['GET /big']['high_usage']);
        $this->assertSame(0, $agg['routes']['GET /']['overlapped']);
        $this->assertSame(0, $agg['in_flight']);
    }

    public function testWithAPreloadedHeaderTheServerUsesTheFfiScope(): void
    {
        $header = \Memwarden\Native::writePreloadHeader($this->tempFile('mw-preload-'));
        $this->assertStringStartsWith("#define FFI_SCOPE \"memwarden\"\n#define FFI_LIB \"/", (string) file_get_contents($header));
        $analytics = $this->tempFile('mw-analytics-');
        $server = $this->serve(['MW_EXAMPLE_ANALYTICS_LOG' => $analytics], ["ffi.preload={$header}"]);
        for ($i = 0; $i < 2; $i++) {
            $r = self::get($server, "/users/{$i}");
            $this->assertSame(200, $r['status'], $r['body']);
            $this->assertMatchesRegularExpression('/^\d+\.\d$/', $r['headers']['x-memory-usage'] ?? '');
        }
        $this->assertSame(['GET /users/{id}', 'GET /users/{id}'], array_column(self::jsonLines($analytics), 'route'));
    }

    public function testSampleRateZeroSendsNoHeaders(): void
    {
        $analytics = $this->tempFile('mw-analytics-');
        $server = $this->serve(['MW_EXAMPLE_SAMPLE_RATE' => '0', 'MW_EXAMPLE_ANALYTICS_LOG' => $analytics]);
        for ($i = 0; $i < 3; $i++) {
            $r = self::get($server, '/users/7');
            $this->assertSame(200, $r['status']);
            $this->assertSame('{"id":7,"name":"user 7"}' . "\n", $r['body']);
            foreach (self::HEADERS as $h) {
                $this->assertArrayNotHasKey($h, $r['headers']);
            }
        }
        $this->assertSame([], self::jsonLines($analytics));
    }

    public function testThrowingHighUsageHandlerStillAnswers200AndIsLogged(): void
    {
        $log = $this->tempFile('mw-log-');
        $server = $this->serve(['MW_EXAMPLE_HANDLER_THROWS' => '1', 'MW_EXAMPLE_LOG_FILE' => $log]);
        $r = self::get($server, '/big');
        $this->assertSame(200, $r['status']);
        $this->assertSame((8 << 20) . " bytes\n", $r['body']);
        $this->assertArrayHasKey('x-memory-peak', $r['headers']);
        $errors = array_values(array_filter(self::jsonLines($log), static fn ($l) => $l['event'] === 'handler_error'));
        $this->assertCount(1, $errors);
        $this->assertStringContainsString('high-usage handler failed on GET /big', $errors[0]['error']);
        $this->assertStringContainsString('RuntimeException', $errors[0]['error']);
    }

    // ---- the PSR-15 form ------------------------------------------------------

    private static function ok(): FakeHandler
    {
        return new FakeHandler(static fn (object $req): FakeResponse => new FakeResponse(200));
    }

    /** X-Memory-Limit from PHP's memory_limit text (parsed by the core), in a fresh process per setting. */
    public function testLimitHeaderFollowsPhpMemoryLimitOrTheCgroup(): void
    {
        $limit = static function (string $ini): string {
            $script = 'require ' . var_export(dirname(__DIR__) . '/autoload.php', true) . ';'
                . 'final class R { public array $h = []; function withHeader($n, $v) { $c = clone $this; $c->h[$n] = $v; return $c; } }'
                . 'final class H { function handle($r) { return new R(); } }'
                . 'final class Q { function getMethod() { return "GET"; } function getAttribute($n) { return null; } }'
                . '$m = new Memwarden\\MemoryTrackingMiddleware(["log_high_usage" => false]);'
                . 'echo $m->process(new Q(), new H())->h["X-Memory-Limit"];';
            return (string) shell_exec(escapeshellarg(PHP_BINARY) . ' -d ffi.enable=1 -d memory_limit=' . $ini
                . ' -r ' . escapeshellarg($script) . ' 2>&1');
        };
        $this->assertSame('96.0', $limit('96M'));
        $this->assertSame('1024.0', $limit('1g'));
        // -1 (no PHP limit): the cgroup's limit, else physical memory, never 0
        $none = $limit('-1');
        $this->assertMatchesRegularExpression('/^\d+\.\d$/', $none);
        $this->assertGreaterThan(96.0, (float) $none);
    }

    public function testProcessAddsHeadersWithWithHeader(): void
    {
        $mw = new MemoryTrackingMiddleware(['memory_limit' => '256M']);
        $handler = self::ok();
        $response = $mw->process(new FakeRequest('GET', '/'), $handler);
        $this->assertSame(1, $handler->calls);
        $this->assertSame(
            ['X-Memory-Efficiency', 'X-Memory-Limit', 'X-Memory-Peak', 'X-Memory-Usage'],
            self::sorted(array_keys($response->headers))
        );
        $this->assertSame('256.0', $response->headers['X-Memory-Limit']);
        $usage = (float) $response->headers['X-Memory-Usage'];
        $this->assertEqualsWithDelta(memory_get_usage() / 1048576, $usage, 2.0, 'PHP\'s own memory_get_usage()');
        // the Slim form: $mw($request, $handler)
        $response = $mw(new FakeRequest('GET', '/'), self::ok());
        $this->assertArrayHasKey('X-Memory-Peak', $response->headers);
    }

    /** @param list<string> $a @return list<string> */
    private static function sorted(array $a): array
    {
        sort($a);
        return $a;
    }

    public function testAnalyticsPerRouteTemplateAndRouteSources(): void
    {
        $mw = new MemoryTrackingMiddleware(['route_resolver' => null, 'max_routes' => 50]);
        $requests = [
            new FakeRequest('GET', '/users/1', ['route_template' => 'GET /users/{id}']),
            new FakeRequest('GET', '/users/2', ['route_template' => 'GET /users/{id}']),
            new FakeRequest('POST', '/orders/9', ['__route__' => new FakeRoute('/orders/{id}')]),
            new FakeRequest('GET', '/files/a/b/c'),
            new FakeRequest('GET', '/files/x'),
            new FakeRequest('GET', '/files'),
            new FakeRequest('GET', '/'),
        ];
        foreach ($requests as $req) {
            $mw->process($req, self::ok());
        }
        $routes = $mw->getAnalytics()['routes'];
        $counts = array_map(static fn ($r) => $r['count'], $routes);
        ksort($counts);
        $this->assertSame([
            'GET /' => 1,
            'GET /files' => 1,
            'GET /files/*' => 2,
            'GET /users/{id}' => 2,
            'POST /orders/{id}' => 1,
        ], $counts);
        $this->assertSame(0, $mw->getAnalytics()['in_flight']);
        $this->assertArrayHasKey('p95', $routes['GET /users/{id}']['peak_bytes']);

        $seen = [];
        $mw = new MemoryTrackingMiddleware(['route_resolver' => static function (object $req) use (&$seen): string {
            $seen[] = $req;
            return 'custom';
        }]);
        $req = new FakeRequest('GET', '/x');
        $mw->process($req, self::ok());
        $this->assertSame([$req], $seen);
        $this->assertSame(['custom'], array_keys($mw->getAnalytics()['routes']));

        $mw = new MemoryTrackingMiddleware(['route_resolver' => static fn (): int => 5]);
        try {
            $mw->process($req, self::ok());
            $this->fail('a resolver returning an int must be refused');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString('route_resolver', $e->getMessage());
        }
    }

    public function testMiddlewaresWithTheSameConfigShareTheProcesssTracker(): void
    {
        $config = ['max_routes' => 37, 'log_high_usage' => false];
        $a = new MemoryTrackingMiddleware($config);
        $b = new MemoryTrackingMiddleware($config + ['route_resolver' => static fn (): string => 'GET /b']);
        $other = new MemoryTrackingMiddleware(['max_routes' => 38, 'log_high_usage' => false]);
        $before = $a->getAnalytics()['routes']['GET /b']['count'] ?? 0;
        $b->wrap(static fn (): int => 1)();
        $b->wrap(static fn (): int => 2)();
        unset($b); // nothing is freed: the tracker is the process's
        $this->assertSame($before + 2, $a->getAnalytics()['routes']['GET /b']['count'], 'same config: one tracker');
        $this->assertArrayNotHasKey('GET /b', $other->getAnalytics()['routes'], 'another config: its own');
    }

    public function testNestedRequestsCountAsOverlapped(): void
    {
        $mw = new MemoryTrackingMiddleware(['max_routes' => 39, 'log_high_usage' => false]);
        $reports = [];
        $mw->setAnalyticsHandler(static function (array $r) use (&$reports): void {
            $reports[$r['route']] = $r['overlapped'];
        });
        $inner = new FakeHandler(static fn (): FakeResponse => new FakeResponse());
        $outer = new FakeHandler(static function () use ($mw, $inner): FakeResponse {
            // a second request measured while the first runs, as in a Swoole or ReactPHP server
            $mw->process(new FakeRequest('GET', '/inner'), $inner);
            return new FakeResponse();
        });
        $mw->process(new FakeRequest('GET', '/outer'), $outer);
        $mw->process(new FakeRequest('GET', '/after'), $inner);
        $this->assertSame(['GET /inner' => 1, 'GET /outer' => 1, 'GET /after' => 0], $reports);
    }

    public function testRoutesAreBounded(): void
    {
        $mw = new MemoryTrackingMiddleware(['max_routes' => 3]);
        for ($i = 0; $i < 20; $i++) {
            $mw->process(new FakeRequest('GET', "/r{$i}/x"), self::ok());
        }
        $a = $mw->getAnalytics();
        $this->assertCount(3, $a['routes']);
        $this->assertSame(18, $a['routes']['other']['count']);
    }

    public function testHighUsageAndAnalyticsHandlers(): void
    {
        $log = $this->tempFile('mw-log-');
        $mw = new MemoryTrackingMiddleware(['threshold_mb' => 2, 'log_file' => $log]);
        $calls = [];
        $mw->setHighUsageHandler(function (float $usage, mixed $request, array $report) use (&$calls): void {
            $calls[] = [$usage, $request, $report];
        });
        $reports = [];
        $mw->setAnalyticsHandler(function (array $report) use (&$reports): void {
            $reports[] = $report;
        });
        $small = new FakeRequest('GET', '/small');
        $big = new FakeRequest('GET', '/big');
        $keep = null;
        $mw->process($small, self::ok());
        $mw->process($big, new FakeHandler(static function () use (&$keep): FakeResponse {
            $keep = str_repeat('y', 6 << 20);
            return new FakeResponse(201);
        }));
        $this->assertCount(1, $calls);
        [$usage, $request, $report] = $calls[0];
        $this->assertSame($big, $request);
        $this->assertSame('GET /big', $report['route']);
        $this->assertEqualsWithDelta($report['peak_bytes'] / 1048576, $usage, 1e-9);
        $this->assertGreaterThan(6 << 20, $report['peak_bytes'] - $report['start_bytes']);
        $this->assertCount(2, $reports);
        $this->assertSame(['GET /small', 'GET /big'], array_column($reports, 'route'));
        $this->assertFalse($reports[0]['high_usage']);
        $this->assertTrue($reports[1]['high_usage']);
        $this->assertEqualsWithDelta($reports[1]['peak_bytes'] / 1048576, $reports[1]['peak_mb'], 1e-9);
        $keep = null;

        // handlers that throw: logged, the response still comes back
        $mw->setHighUsageHandler(static function (): void {
            throw new \LogicException('alerting is down');
        });
        $mw->setAnalyticsHandler(static function (): void {
            throw new \DomainException('metrics are down');
        });
        $response = $mw->process($big, new FakeHandler(static function () use (&$keep): FakeResponse {
            $keep = str_repeat('z', 6 << 20);
            return new FakeResponse(202);
        }));
        $keep = null;
        $this->assertSame(202, $response->status);
        $this->assertArrayHasKey('X-Memory-Usage', $response->headers);
        $text = (string) file_get_contents($log);
        $this->assertStringContainsString('LogicException: alerting is down', $text);
        $this->assertStringContainsString('DomainException: metrics are down', $text);
        $this->assertSame(1, $mw->getAnalytics()['handler_errors']);

        // removed: not called
        $mw->setHighUsageHandler(null);
        $mw->setAnalyticsHandler(null);
        $mw->process($big, new FakeHandler(static function () use (&$keep): FakeResponse {
            $keep = str_repeat('w', 6 << 20);
            return new FakeResponse(200);
        }));
        $this->assertCount(1, $calls);
        $this->assertSame(3, $mw->getAnalytics()['routes']['GET /big']['high_usage']);
    }

    public function testThePeakIsThisRequestsNotTheProcesss(): void
    {
        // a long-running worker: an earlier 16 MiB spike must not show in a later small request
        $spike = str_repeat('s', 16 << 20);
        unset($spike);
        $this->assertGreaterThan(memory_get_usage() + (15 << 20), memory_get_peak_usage());
        $reports = [];
        $mw = new MemoryTrackingMiddleware(['threshold_mb' => 4]);
        $mw->setAnalyticsHandler(function (array $r) use (&$reports): void {
            $reports[] = $r;
        });
        $mw->process(new FakeRequest('GET', '/small'), self::ok());
        $this->assertLessThan(1 << 20, $reports[0]['peak_bytes'] - $reports[0]['start_bytes']);
        $this->assertFalse($reports[0]['high_usage']);
    }

    public function testApplicationExceptionsAreRethrownAfterMeasuring(): void
    {
        $mw = new MemoryTrackingMiddleware();
        try {
            $mw->process(new FakeRequest('GET', '/fail'), new FakeHandler(static function (): FakeResponse {
                throw new \RuntimeException('app failed');
            }));
            $this->fail('the application\'s exception must reach the caller');
        } catch (\RuntimeException $e) {
            $this->assertSame('app failed', $e->getMessage());
        }
        $a = $mw->getAnalytics();
        $this->assertSame(1, $a['routes']['GET /fail']['count']);
        $this->assertSame(0, $a['in_flight']);
    }

    public function testSwitchesAndSampling(): void
    {
        $mw = new MemoryTrackingMiddleware(['include_headers' => false]);
        $r = $mw->process(new FakeRequest('GET', '/'), self::ok());
        $this->assertSame([], $r->headers);
        $this->assertSame(1, $mw->getAnalytics()['routes']['GET /']['count']);

        $mw = new MemoryTrackingMiddleware(['enabled' => false]);
        $r = $mw->process(new FakeRequest('GET', '/'), self::ok());
        $this->assertSame([], $r->headers);
        $this->assertSame([], $mw->getAnalytics()['routes']);

        $mw = new MemoryTrackingMiddleware(['sample_rate' => 0.25, 'random_seed' => 7]);
        $measured = 0;
        for ($i = 0; $i < 400; $i++) {
            $measured += count($mw->process(new FakeRequest('GET', '/'), self::ok())->headers) > 0 ? 1 : 0;
        }
        $this->assertGreaterThan(60, $measured);
        $this->assertLessThan(140, $measured);
        $a = $mw->getAnalytics();
        $this->assertSame($measured, $a['routes']['GET /']['count']);
        $this->assertSame(400 - $measured, $a['sampled_out']);

        // the seed's detailed-tracking keys are accepted (they do nothing in PHP)
        $mw = new MemoryTrackingMiddleware(['detailed_tracking' => true, 'track_allocations' => true,
            'track_deallocations' => true, 'include_stack_traces' => false]);
        $this->assertArrayHasKey('X-Memory-Usage', $mw->process(new FakeRequest('GET', '/'), self::ok())->headers);
        $mw = new MemoryTrackingMiddleware(['detailed_tracking' => ['track_allocations' => true]]);
        $this->assertArrayHasKey('X-Memory-Usage', $mw->process(new FakeRequest('GET', '/'), self::ok())->headers);
    }

    public function testPlainWrapperRunsTheAppAndReturnsItsResult(): void
    {
        $mw = new MemoryTrackingMiddleware();
        $_SERVER['REQUEST_METHOD'] = 'GET';
        $_SERVER['REQUEST_URI'] = '/reports/2024?x=1';
        $level = ob_get_level();
        ob_start();
        $result = $mw->wrap(static function (int $a, int $b): int {
            echo 'body';
            return $a + $b;
        })(2, 3);
        $out = (string) ob_get_clean();
        $this->assertSame(5, $result);
        $this->assertSame('body', $out);
        $this->assertSame($level, ob_get_level());
        $this->assertSame('x', $mw(static fn (): string => 'x'));
        $routes = $mw->getAnalytics()['routes'];
        unset($_SERVER['REQUEST_URI']);
        $this->assertSame(2, $routes['GET /reports/*']['count']);
        try {
            $mw(42);
            $this->fail('a non-callable must be refused');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString('$app callable', $e->getMessage());
        }
    }

    /** @return iterable<string,array{0:array<string,mixed>,1:string}> */
    public static function badOptions(): iterable
    {
        yield 'sample_rate 2' => [['sample_rate' => 2], 'sample_rate'];
        yield 'sample_rate -0.5' => [['sample_rate' => -0.5], 'sample_rate'];
        yield 'threshold_mb -1' => [['threshold_mb' => -1], 'threshold_mb'];
        yield 'a typo' => [['sample_rat' => 1], "did you mean 'sample_rate'"];
        yield 'detailed_tracking 3' => [['detailed_tracking' => 3], 'detailed_tracking'];
        yield 'route_resolver not callable' => [['route_resolver' => 'no such function'], 'route_resolver'];
        yield 'NAN threshold' => [['threshold_mb' => NAN], 'threshold_mb'];
    }

    /**
     * @dataProvider badOptions
     * @param array<string,mixed> $config
     */
    public function testBadOptionsNameTheKey(array $config, string $needle): void
    {
        try {
            new MemoryTrackingMiddleware($config);
            $this->fail('accepted ' . json_encode($config));
        } catch (InvalidConfigException $e) {
            $this->assertStringContainsString($needle, $e->getMessage());
            $this->assertSame(3, $e->getCode());
        }
    }
}
