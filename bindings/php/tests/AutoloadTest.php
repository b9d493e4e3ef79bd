<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use PHPUnit\Framework\TestCase;

/** autoload.php is a classmap: every class file under src/ must be in it (checked in a fresh process). */
final class AutoloadTest extends TestCase
{
    public function testEveryClassInSrcLoadsThroughTheClassmap(): void
    {
        $src = dirname(__DIR__) . '/src';
        $classes = [];
        $it = new \RecursiveIteratorIterator(new \RecursiveDirectoryIterator($src, \FilesystemIterator::SKIP_DOTS));
        foreach ($it as $file) {
            if ($file->getExtension() === 'php') {
                $rel = substr($file->getPathname(), strlen($src) + 1, -4);
                $classes[] = 'Memwarden\\' . str_replace('/', '\\', $rel);
            }
        }
        $this->assertGreaterThan(30, count($classes));
        $script = 'require ' . var_export(dirname(__DIR__) . '/autoload.php', true) . ';'
            . 'foreach (' . var_export($classes, true) . ' as $c) {'
            . ' if (!class_exists($c) && !interface_exists($c)) { echo "MISSING $c\n"; } }'
            . 'echo class_exists("Memwarden\\\\NoSuchClass") ? "BAD" : "OK", "\n";';
        $out = (string) shell_exec(escapeshellarg(PHP_BINARY) . ' -r ' . escapeshellarg($script) . ' 2>&1');
        $this->assertSame("OK\n", $out);
    }

    /**
     * preload.php (opcache.preload) links every class at start-up; then autoload.php registers
     * nothing, and the classes and the middleware work without it.
     */
    public function testPreloadLinksEveryClassAndAutoloadThenRegistersNothing(): void
    {
        $dir = dirname(__DIR__);
        $script = 'echo class_exists("Memwarden\\\\MemoryTrackingMiddleware", false) ? "linked" : "missing", "\n";'
            . '$n = count(spl_autoload_functions());'
            . 'require ' . var_export($dir . '/autoload.php', true) . ';'
            . 'echo count(spl_autoload_functions()) - $n, "\n";'
            . 'echo class_exists("Memwarden\\\\Exception\\\\CycleException", false) ? "linked" : "missing", "\n";'
            . '$m = new Memwarden\\MemoryTrackingMiddleware(["route_resolver" => fn ($s) => "GET /"]);'
            . 'echo $m->wrap(fn () => 42)(), "\n";';
        $ini = ['opcache.enable_cli=1', 'opcache.preload=' . $dir . '/preload.php', 'ffi.enable=1'];
        if (function_exists('posix_geteuid') && posix_geteuid() === 0) {
            $ini[] = 'opcache.preload_user=root';
        }
        $cmd = escapeshellarg(PHP_BINARY);
        foreach ($ini as $setting) {
            $cmd .= ' -d ' . escapeshellarg($setting);
        }
        // Debian's php-cli depends on its opcache package, which the test command installs.
        $this->assertTrue(
            extension_loaded('Zend OPcache') || str_contains((string) shell_exec($cmd . ' -m'), 'Zend OPcache'),
            'opcache is not loaded: install the opcache package of this PHP (php8.2-opcache on Debian 12)'
        );
        $out = (string) shell_exec($cmd . ' -r ' . escapeshellarg($script) . ' 2>&1');
        $this->assertSame("linked\n0\nlinked\n42\n", $out);
    }
}
