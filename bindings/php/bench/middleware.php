<?php

declare(strict_types=1);

/*
 * MemoryTrackingMiddleware's cost per request, from one run, side by side with a ratio:
 *   1. the example front controller (examples/middleware/index.php, GET /) served by two
 *      `php -S` servers, one with MW_EXAMPLE_MIDDLEWARE=0 (the anchor), under the same
 *      loopback load (ab -c 1 when installed, else a PHP client, keep-alive off), in
 *      alternating rounds; the server's CPU time per request from /proc/PID/stat and the
 *      requests/s of the load;
 *      Run with memory_limit=128M (php.ini-production's value) and once with opcache and
 *      ffi.preload (the header parsed once per server), once without;
 *   2. in one long-running process (RoadRunner/Swoole-style): process() around a trivial
 *      PSR-15 handler vs calling the handler alone — memwarden's own part per request.
 * Usage: php bindings/php/bench/middleware.php [REQUESTS_PER_ROUND] [ROUNDS]
 */

require __DIR__ . '/../autoload.php';

use Memwarden\MemoryTrackingMiddleware;

$perRound = (int) ($argv[1] ?? 3000);
$rounds = (int) ($argv[2] ?? 4);
$tck = (int) trim((string) shell_exec('getconf CLK_TCK')) ?: 100;
$ab = trim((string) shell_exec('command -v ab 2>/dev/null'));

function freePort(): int
{
    $s = stream_socket_server('tcp://127.0.0.1:0');
    $name = (string) stream_socket_get_name($s, false);
    fclose($s);
    return (int) substr($name, (int) strrpos($name, ':') + 1);
}

/**
 * @param list<string> $ini -d settings
 * @return array{0:resource,1:int,2:int} proc, pid, port
 */
function serve(bool $middleware, array $ini): array
{
    $args = [];
    foreach ($ini as $setting) {
        array_push($args, '-d', $setting);
    }
    $port = freePort();
    $env = getenv() + ['MW_EXAMPLE_MIDDLEWARE' => $middleware ? '1' : '0'];
    $env['MW_EXAMPLE_MIDDLEWARE'] = $middleware ? '1' : '0';
    $proc = proc_open(
        [PHP_BINARY, '-d', 'ffi.enable=1', ...$args, '-S', "127.0.0.1:{$port}", __DIR__ . '/../examples/middleware/index.php'],
        [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', '/dev/null', 'w']],
        $pipes,
        null,
        $env
    );
    $pid = proc_get_status($proc)['pid'];
    $deadline = microtime(true) + 10;
    while (microtime(true) < $deadline) {
        $c = @stream_socket_client("tcp://127.0.0.1:{$port}", $errno, $errstr, 0.2);
        if ($c !== false) {
            fclose($c);
            return [$proc, $pid, $port];
        }
        usleep(20_000);
    }
    throw new RuntimeException('php -S did not start');
}

function cpuTicks(int $pid): int
{
    $stat = (string) file_get_contents("/proc/{$pid}/stat");
    $fields = explode(' ', substr($stat, (int) strrpos($stat, ')') + 2));
    return (int) $fields[11] + (int) $fields[12]; // utime + stime
}

/** Sends $n requests to GET / one after the other; returns the wall time in seconds. */
function load(string $ab, int $port, int $n): float
{
    $t = hrtime(true);
    if ($ab !== '') {
        exec(escapeshellarg($ab) . " -q -n {$n} -c 1 http://127.0.0.1:{$port}/ 2>&1", $out, $rc);
        if ($rc !== 0 || !preg_grep('/^Failed requests:\s+0$/', $out)) {
            throw new RuntimeException("ab failed:\n" . implode("\n", $out));
        }
    } else {
        for ($i = 0; $i < $n; $i++) {
            $c = stream_socket_client("tcp://127.0.0.1:{$port}", $errno, $errstr, 5);
            fwrite($c, "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            $raw = (string) stream_get_contents($c);
            fclose($c);
            if (!str_starts_with($raw, 'HTTP/1.0 200') && !str_starts_with($raw, 'HTTP/1.1 200')) {
                throw new RuntimeException('bad answer: ' . substr($raw, 0, 80));
            }
        }
    }
    return (hrtime(true) - $t) / 1e9;
}

// ---- 1. php -S with and without the middleware -------------------------------

/** @param list<string> $ini */
function compare(string $label, array $ini, string $ab, int $perRound, int $rounds, int $tck): void
{
    [$procA, $pidA, $portA] = serve(false, $ini);
    [$procB, $pidB, $portB] = serve(true, $ini);
    file_get_contents("http://127.0.0.1:{$portB}/");
    if (!preg_grep('/^X-Memory-Usage: \d/i', $http_response_header ?? [])) {
        throw new RuntimeException('the middleware server sent no X-Memory-Usage header');
    }
    load($ab, $portA, 200); // warm both
    load($ab, $portB, 200);
    $cpu = ['without' => 0, 'with' => 0];
    $wall = ['without' => 0.0, 'with' => 0.0];
    for ($r = 0; $r < $rounds; $r++) {
        $order = $r % 2 === 0 ? ['without', 'with'] : ['with', 'without'];
        foreach ($order as $which) {
            [$pid, $port] = $which === 'with' ? [$pidB, $portB] : [$pidA, $portA];
            $before = cpuTicks($pid);
            $wall[$which] += load($ab, $port, $perRound);
            $cpu[$which] += cpuTicks($pid) - $before;
        }
    }
    foreach ([$procA, $procB] as $p) {
        proc_terminate($p, 9);
        proc_close($p);
    }
    $n = $perRound * $rounds;
    $usA = $cpu['without'] / $tck / $n * 1e6;
    $usB = $cpu['with'] / $tck / $n * 1e6;
    $rpsA = $n / $wall['without'];
    $rpsB = $n / $wall['with'];
    printf("-- %s\n", $label);
    printf("%-44s %9.1f us CPU/request %9.0f requests/s\n", 'php -S front controller with the middleware', $usB, $rpsB);
    printf("%-44s %9.1f us CPU/request %9.0f requests/s\n", 'anchor: the same app without it', $usA, $rpsA);
    printf("%-44s %+9.1f us CPU/request  ratio %.3f (CPU), throughput %.3f of the anchor (%+.1f%%)\n",
        'difference', $usB - $usA, $usB / $usA, $rpsB / $rpsA, ($rpsB / $rpsA - 1) * 100);
}

printf("load: %s, %d requests x %d rounds per server, alternating, keep-alive off, server CPU from /proc/PID/stat\n",
    $ab !== '' ? 'ab -c 1' : 'PHP client', $perRound, $rounds);
$preload = Memwarden\Native::writePreloadHeader((string) tempnam(sys_get_temp_dir(), 'mw-preload-'));
try {
    // memory_limit=128M as php.ini-production sets it (with the CLI's -1 the core takes the
    // cgroup's limit, which it caches for the process: about the same cost).
    compare('memory_limit=128M, opcache.enable_cli=1, ffi.preload (recommended: the header is parsed once per server)',
        ['memory_limit=128M', 'opcache.enable_cli=1', "ffi.preload={$preload}"], $ab, $perRound, $rounds, $tck);
    compare('memory_limit=128M, no opcache, no preload (FFI::cdef parses the header on every request)',
        ['memory_limit=128M'], $ab, $perRound, $rounds, $tck);
} finally {
    unlink($preload);
}

// ---- 2. in one long-running process ------------------------------------------

final class BenchResponse
{
    /** @var array<string,string> */
    public array $headers = [];

    public function withHeader(string $name, string $value): self
    {
        $c = clone $this;
        $c->headers[$name] = $value;
        return $c;
    }
}

final class BenchRequest
{
    public function getMethod(): string
    {
        return 'GET';
    }

    public function getAttribute(string $name): ?string
    {
        return $name === 'route_template' ? 'GET /users/{id}' : null;
    }
}

final class BenchHandler
{
    public function handle(object $request): BenchResponse
    {
        return new BenchResponse();
    }
}

$mw = new MemoryTrackingMiddleware(['log_high_usage' => false]);
$req = new BenchRequest();
$handler = new BenchHandler();
$iterations = 100_000;
$best = ['with' => INF, 'without' => INF];
for ($r = 0; $r < 5; $r++) {
    $t = hrtime(true);
    for ($i = 0; $i < $iterations; $i++) {
        $handler->handle($req);
    }
    $best['without'] = min($best['without'], (hrtime(true) - $t) / $iterations / 1000);
    $t = hrtime(true);
    for ($i = 0; $i < $iterations; $i++) {
        $mw->process($req, $handler);
    }
    $best['with'] = min($best['with'], (hrtime(true) - $t) / $iterations / 1000);
}
printf("\nlong-running process, best of 5 x %d requests:\n", $iterations);
printf("%-44s %9.2f us/request\n", 'process() around the handler (4 headers)', $best['with']);
printf("%-44s %9.2f us/request\n", 'anchor: the handler alone', $best['without']);
printf("%-44s %+9.2f us/request  ratio %.1f\n", 'memwarden\'s part', $best['with'] - $best['without'],
    $best['with'] / $best['without']);
