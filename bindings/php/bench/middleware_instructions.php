<?php

declare(strict_types=1);

/*
 * MemoryTrackingMiddleware's cost per request under `php -S`, counted in instructions
 * (valgrind's callgrind), which the load of a shared machine does not change, unlike CPU time.
 *
 *     php bindings/php/bench/middleware_instructions.php [n1] [n2] [variants] [--preload]
 *     (needs valgrind)
 *
 * A hello-world front controller (this file, in the cli-server SAPI) is served by one
 * single-process `php -S` (no PHP_CLI_SERVER_WORKERS) running under callgrind, with the -d
 * settings the README recommends: memory_limit=128M, opcache.enable_cli=1, ffi.enable=1 and
 * ffi.preload=<a header written by Native::writePreloadHeader>, and
 * opcache.validate_timestamps=0 (as production php-fpm setups have it; otherwise opcache
 * re-checks the files every 2 s of wall time, and the count moves with the machine's load). It answers n1, then (in a
 * second server) n2 requests (default 100 and 700), one connection each; (I(n2) - I(n1)) / (n2 - n1) is the
 * server's work per request, start-up and shut-down cancelled out. callgrind follows only
 * the server: the client is this process.
 * The app reads the path from $_SERVER, as every front controller does (PHP builds $_SERVER
 * only for requests whose scripts name it, and the middleware's does).
 * Variants: bare; static4, the app setting the four X-Memory-* headers itself with constant
 * values (what PHP charges for any four headers: the anchor for the headers' own cost);
 * mw, the middleware by default (wrap(), as the README's front controller); mwnohdr, the
 * middleware with include_headers false. Floors and ablations: passthru, a middleware class
 * that measures nothing (PassThrough.php: what PHP charges for any such class); ffi2,
 * FFI::scope and two C calls with an out-parameter (what any FFI binding pays); mwload, the
 * middleware's class loaded and nothing more; mwctor, the middleware constructed and not used.
 * --preload adds opcache.preload=bindings/php/preload.php (the memwarden classes compiled
 * and linked once per server; opcache.preload_user=root when run as root).
 */

const BODY = "hello world\n";

if (PHP_SAPI === 'cli-server') {
    // ---- the front controller ----------------------------------------------------------
    $variant = (string) getenv('MW_BENCH_VARIANT');
    // Every variant routes on $_SERVER as any front controller does: PHP builds $_SERVER only
    // for a request whose scripts name it (~20,000 instructions), and the middleware does.
    $path = (string) parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
    $app = static function () use ($path): void {
        if ($path !== '/users/42') {
            http_response_code(404);
            return;
        }
        header('Content-Type: text/plain');
        echo BODY;
    };
    if ($variant === 'bare') {
        $app();
        return;
    }
    if ($variant === 'static4') {
        header('X-Memory-Usage: 45.7');
        header('X-Memory-Peak: 52.3');
        header('X-Memory-Limit: 128.0');
        header('X-Memory-Efficiency: 89.2');
        $app();
        return;
    }
    if ($variant === 'passthru') {
        // The floor of any middleware class: autoloaded from its own file, constructed per
        // request, wrapping the app in ob_start()/try/finally as wrap() does; no FFI.
        spl_autoload_register(static function (string $class): void {
            if ($class === 'MwBenchPassThrough') {
                require __DIR__ . '/PassThrough.php';
            }
        });
        (new MwBenchPassThrough(['route_resolver' => static fn (array $server): string => 'GET /users/{id}']))->wrap($app)();
        return;
    }
    if ($variant === 'ffi2') {
        // The floor of any FFI binding per request: FFI::scope (ffi.preload) and two C calls,
        // each with an out-parameter (a tracker made and freed), no class, no header.
        $ffi = \FFI::scope('memwarden');
        $out = $ffi->new('mw_request*');
        $ffi->mw_request_new(null, \FFI::addr($out));
        $ffi->mw_request_free($out);
        $app();
        return;
    }
    if (!class_exists(Memwarden\MemoryTrackingMiddleware::class, false)) {
        require __DIR__ . '/../autoload.php';
    }
    $options = ['route_resolver' => static fn (array $server): string => 'GET /users/{id}'];
    if ($variant === 'mwctor') {
        new Memwarden\MemoryTrackingMiddleware($options);
        $app();
        return;
    }
    if ($variant === 'mwload') {
        class_exists(Memwarden\MemoryTrackingMiddleware::class);
        $app();
        return;
    }
    if ($variant === 'mwnohdr') {
        $options['include_headers'] = false;
    } elseif ($variant !== 'mw') {
        http_response_code(500);
        echo "unknown variant {$variant}\n";
        return;
    }
    (new Memwarden\MemoryTrackingMiddleware($options))->wrap($app)();
    return;
}

// ---- the driver ------------------------------------------------------------------------

require __DIR__ . '/../autoload.php';

$args = array_values(array_filter(array_slice($argv, 1), static fn (string $a): bool => $a !== '--preload'));
$opcachePreload = in_array('--preload', $argv, true);
$n1 = (int) ($args[0] ?? 100);
$n2 = (int) ($args[1] ?? 700);
$variants = explode(',', $args[2] ?? 'bare,static4,mw,mwnohdr');

function freePort(): int
{
    $s = stream_socket_server('tcp://127.0.0.1:0');
    $name = (string) stream_socket_get_name($s, false);
    fclose($s);
    return (int) substr($name, (int) strrpos($name, ':') + 1);
}

/**
 * Starts `php -S` under callgrind on a free port; null when the port was taken meanwhile.
 *
 * @param list<string> $ini
 * @return array{0:resource,1:int,2:int}|null proc, pid, port
 */
function startServer(string $variant, string $out, string $log, array $ini): ?array
{
    $port = freePort();
    $cmd = ['valgrind', '--tool=callgrind', "--callgrind-out-file={$out}", PHP_BINARY];
    foreach ($ini as $setting) {
        array_push($cmd, '-d', $setting);
    }
    array_push($cmd, '-S', "127.0.0.1:{$port}", __FILE__);
    $env = getenv();
    unset($env['PHP_CLI_SERVER_WORKERS']); // one process: callgrind counts the one that serves
    $env['MW_BENCH_VARIANT'] = $variant;
    $proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', $log, 'w']], $pipes, null, $env);
    $pid = proc_get_status($proc)['pid'];
    // Ready when the server says so on stderr (a probing connection would be work too).
    $deadline = microtime(true) + 120;
    while (true) {
        $text = (string) @file_get_contents($log);
        if (str_contains($text, 'Development Server')) {
            return [$proc, $pid, $port];
        }
        if (str_contains($text, 'Failed to listen')) {
            proc_close($proc);
            return null;
        }
        if (microtime(true) > $deadline || !proc_get_status($proc)['running']) {
            proc_close($proc);
            throw new RuntimeException("{$variant}: php -S did not start:\n{$text}");
        }
        usleep(50_000);
    }
}

/** @param list<string> $ini */
function instructions(string $variant, int $n, array $ini): int
{
    $dir = sys_get_temp_dir();
    $tag = getmypid() . ".{$variant}.{$n}";
    $log = "{$dir}/mw-cg-php.{$tag}.log";
    $server = null;
    for ($attempt = 0; $server === null && $attempt < 5; $attempt++) {
        $server = startServer($variant, "{$dir}/mw-cg-php.{$tag}.%p", $log, $ini);
    }
    if ($server === null) {
        throw new RuntimeException("{$variant}: php -S found no free port");
    }
    [$proc, $pid, $port] = $server;
    try {
        $mw = $variant === 'mw'; // the variants that send the X-Memory-* headers: static4, mw
        for ($i = 0; $i < $n; $i++) {
            $c = stream_socket_client("tcp://127.0.0.1:{$port}", $errno, $errstr, 60);
            if ($c === false) {
                throw new RuntimeException("{$variant}: cannot connect: {$errstr}");
            }
            stream_set_timeout($c, 600);
            fwrite($c, "GET /users/42 HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            $raw = (string) stream_get_contents($c);
            fclose($c);
            if (!str_starts_with($raw, 'HTTP/1.0 200') || !str_ends_with($raw, "\r\n\r\n" . BODY)) {
                throw new RuntimeException("{$variant}: bad answer:\n{$raw}");
            }
            if (($variant === 'static4' || $mw) !== (preg_match('/^X-Memory-Usage: \d/mi', $raw) === 1)) {
                throw new RuntimeException("{$variant}: X-Memory-Usage header not as expected:\n{$raw}");
            }
        }
    } finally {
        posix_kill($pid, SIGINT); // the server stops; callgrind writes its totals
        proc_close($proc);
    }
    $text = (string) file_get_contents($log);
    @unlink($log);
    foreach (glob("{$dir}/mw-cg-php.{$tag}.*") ?: [] as $f) {
        unlink($f);
    }
    // The server's own total: opcache.preload as root forks a child that preloads and exits.
    if (preg_match("/^=={$pid}== Collected : (\\d+)/m", $text, $m) !== 1) {
        throw new RuntimeException("{$variant}: callgrind said\n" . substr($text, -2000));
    }
    return (int) $m[1];
}

$preload = Memwarden\Native::writePreloadHeader((string) tempnam(sys_get_temp_dir(), 'mw-preload-'));
$ini = ['memory_limit=128M', 'opcache.enable_cli=1', 'opcache.validate_timestamps=0', 'ffi.enable=1', "ffi.preload={$preload}"];
if (!function_exists('posix_kill')) {
    throw new RuntimeException('needs the posix extension (to stop the server)');
}
if ($opcachePreload) {
    $ini[] = 'opcache.preload=' . realpath(__DIR__ . '/../preload.php');
    if (function_exists('posix_geteuid') && posix_geteuid() === 0) {
        $ini[] = 'opcache.preload_user=root';
    }
}
try {
    printf("instructions per request of a php -S server under callgrind (%d then %d requests; bare = the anchor)\n", $n1, $n2);
    printf("settings: %s\n", implode(' ', array_map(static fn (string $s): string => preg_replace('#=.*/#', '=.../', $s), $ini)));
    $base = null;
    $perVariant = [];
    foreach ($variants as $v) {
        $per = (instructions($v, $n2, $ini) - instructions($v, $n1, $ini)) / ($n2 - $n1);
        $base ??= $per;
        $perVariant[$v] = $per;
        printf("  %-10s %10.0f instructions/request  %+9.0f (%5.1f%% of the server's work, %5.1f%% of bare)\n",
            $v, $per, $per - $base, ($per - $base) / $per * 100, ($per - $base) / $base * 100);
    }
    if (isset($perVariant['bare'], $perVariant['static4'], $perVariant['mw'])) {
        printf("  memwarden's own part: mw - static4 = %+.0f (%.1f%% of bare)",
            $perVariant['mw'] - $perVariant['static4'], ($perVariant['mw'] - $perVariant['static4']) / $perVariant['bare'] * 100);
        if (isset($perVariant['mwnohdr'])) {
            printf(", mwnohdr - bare = %+.0f (%.1f%% of bare)",
                $perVariant['mwnohdr'] - $perVariant['bare'], ($perVariant['mwnohdr'] - $perVariant['bare']) / $perVariant['bare'] * 100);
        }
        echo "\n";
    }
} finally {
    unlink($preload);
}
