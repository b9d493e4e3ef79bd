<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\Native;
use PHPUnit\Framework\TestCase;

/** Loading failures are tested in a fresh `php` process, since the library loads once per process. */
final class LibraryLoadingTest extends TestCase
{
    /** @return array{0:int,1:string} exit code and output */
    private function runPhp(string $code, array $env): array
    {
        $autoload = dirname(__DIR__) . '/autoload.php';
        $script = 'require ' . var_export($autoload, true) . ';' . $code;
        $cmd = [PHP_BINARY, '-r', $script];
        $proc = proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes, null, $env + getenv());
        $this->assertIsResource($proc);
        $out = stream_get_contents($pipes[1]) . stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);
        return [proc_close($proc), $out];
    }

    private const PROBE = <<<'PHP'
        try {
            new Memwarden\MemoryManager();
            echo "LOADED\n";
        } catch (Memwarden\Exception\MemwardenException $e) {
            echo get_class($e), "|", $e->getMessage(), "\n";
            exit(3);
        }
        PHP;

    public function testMissingLibraryIsAClearException(): void
    {
        $missing = sys_get_temp_dir() . '/memwarden-missing-' . getmypid() . '/libmemwarden.so';
        [$code, $out] = $this->runPhp(self::PROBE, ['MEMWARDEN_LIB' => $missing]);
        $this->assertSame(3, $code, $out);
        $this->assertStringContainsString('Memwarden\Exception\MemwardenException|', $out);
        $this->assertStringContainsString($missing, $out);
        $this->assertStringContainsString('MEMWARDEN_LIB', $out);
        $this->assertStringNotContainsString('Fatal error', $out);
    }

    public function testAFileThatIsNotALibraryIsAClearException(): void
    {
        $notALib = Native::headerPath();
        [$code, $out] = $this->runPhp(self::PROBE, ['MEMWARDEN_LIB' => $notALib]);
        $this->assertSame(3, $code, $out);
        $this->assertStringContainsString('cannot load the native library', $out);
        $this->assertStringContainsString($notALib, $out);
        $this->assertStringNotContainsString('Fatal error', $out);
    }

    public function testMissingHeaderIsAClearException(): void
    {
        [$code, $out] = $this->runPhp(self::PROBE, ['MEMWARDEN_HEADER' => '/nonexistent/memwarden_php.h']);
        $this->assertSame(3, $code, $out);
        $this->assertStringContainsString('/nonexistent/memwarden_php.h', $out);
    }

    public function testMemwardenLibSelectsTheLibrary(): void
    {
        $lib = realpath(dirname(__DIR__, 3) . '/target/release/libmemwarden.so');
        $this->assertIsString($lib, 'the repository build output exists');
        [$code, $out] = $this->runPhp(self::PROBE . 'echo Memwarden\Native::libraryPath(), "\n";', ['MEMWARDEN_LIB' => $lib]);
        $this->assertSame(0, $code, $out);
        $this->assertSame("LOADED\n{$lib}\n", $out);
    }

    public function testDefaultIsTheRepositoryBuildOutput(): void
    {
        if (getenv('MEMWARDEN_LIB')) {
            $this->markTestSkipped('MEMWARDEN_LIB is set for this run');
        }
        $this->assertSame(
            realpath(dirname(__DIR__, 3) . '/target/release/libmemwarden.so'),
            Native::libraryPath()
        );
        $this->assertMatchesRegularExpression('/^\d+\.\d+\.\d+/', Native::version());
    }
}
