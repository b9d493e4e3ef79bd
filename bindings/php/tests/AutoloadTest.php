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
}
