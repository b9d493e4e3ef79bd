<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;
use Memwarden\Exception\InvalidConfigException;
use Memwarden\Exception\MemwardenException;

/**
 * The loaded C library (internal). Loads `libmemwarden.so` once per process with
 * FFI::cdef over the PHP-loadable header, and turns statuses into exceptions.
 *
 * Library lookup: env MEMWARDEN_LIB when set; else the repository's build output
 * (target/release/libmemwarden.so next to bindings/); else `libmemwarden.so` from the
 * system library path. Header: env MEMWARDEN_HEADER, else include/memwarden_php.h.
 *
 * Preloading: FFI::cdef parses the header on every load (~0.8 ms), which a share-nothing
 * server (php-fpm, php -S) pays on every request. With `ffi.preload` pointing at a header
 * written by writePreloadHeader() (scope "memwarden"), the header is parsed once at server
 * start and each request takes FFI::scope('memwarden') (~0.1 us) instead.
 *
 * @internal
 */
final class Native
{
    private static ?\FFI $ffi = null;

    /** @var array<string,int> memory_limit text => bytes (-1 = none) */
    private static array $sizeCache = [];

    public static function ffi(): \FFI
    {
        return self::$ffi ??= self::load();
    }

    public static function headerPath(): string
    {
        $env = getenv('MEMWARDEN_HEADER');
        if (is_string($env) && $env !== '') {
            return $env;
        }
        return __DIR__ . '/../../../include/memwarden_php.h';
    }

    public static function libraryPath(): string
    {
        $env = getenv('MEMWARDEN_LIB');
        if (is_string($env) && $env !== '') {
            return $env;
        }
        $built = __DIR__ . '/../../../target/release/libmemwarden.so';
        if (is_file($built)) {
            return (string) realpath($built);
        }
        return 'libmemwarden.so';
    }

    /** The FFI scope name a preload header declares. */
    public const SCOPE = 'memwarden';

    /**
     * Writes a header for `ffi.preload` (FFI_SCOPE "memwarden", FFI_LIB the library's
     * absolute path) to $file and returns $file. Start PHP with
     * `-d ffi.preload=$file` (php.ini for php-fpm) to parse the header once per server.
     */
    public static function writePreloadHeader(string $file): string
    {
        $lib = self::libraryPath();
        $header = file_get_contents(self::headerPath());
        if ($header === false) {
            throw new MemwardenException("memwarden: cannot read the C header '" . self::headerPath() . "'");
        }
        $text = '#define FFI_SCOPE "' . self::SCOPE . "\"\n#define FFI_LIB \"{$lib}\"\n" . $header;
        if (file_put_contents($file, $text) === false) {
            throw new MemwardenException("memwarden: cannot write the preload header '{$file}'");
        }
        return $file;
    }

    private static function load(): \FFI
    {
        if (!extension_loaded('ffi') || !class_exists(\FFI::class)) {
            throw new MemwardenException(
                'memwarden needs PHP\'s FFI extension (ext-ffi); it is not loaded'
            );
        }
        if ((string) ini_get('ffi.preload') !== '') {
            try {
                return \FFI::scope(self::SCOPE);
            } catch (\FFI\Exception) {
                // preloaded headers of other libraries only: load ours below
            }
        }
        $header = self::headerPath();
        if (!is_file($header)) {
            throw new MemwardenException("memwarden: C header not found at '{$header}' (set MEMWARDEN_HEADER)");
        }
        $lib = self::libraryPath();
        // A bare name is looked up on the system library path by dlopen; a path must exist.
        if (str_contains($lib, '/') && !is_file($lib)) {
            $from = getenv('MEMWARDEN_LIB') ? ' (from MEMWARDEN_LIB)' : '';
            throw new MemwardenException("memwarden: native library not found at '{$lib}'{$from}; "
                . 'build it with `cargo build --release -p memwarden-ffi` or set MEMWARDEN_LIB');
        }
        $code = file_get_contents($header);
        if ($code === false) {
            throw new MemwardenException("memwarden: cannot read the C header '{$header}'");
        }
        try {
            return \FFI::cdef($code, $lib);
        } catch (\FFI\Exception $e) {
            throw new MemwardenException(
                "memwarden: cannot load the native library '{$lib}': {$e->getMessage()}; "
                . 'build it with `cargo build --release -p memwarden-ffi` or set MEMWARDEN_LIB',
                0,
                $e
            );
        }
    }

    /** The library's version string, e.g. "0.1.0". */
    public static function version(): string
    {
        return (string) self::ffi()->mw_version();
    }

    /** Throws the exception for a non-zero status, with mw_last_error_message(). */
    public static function check(int $status): void
    {
        if ($status !== 0) {
            throw self::error($status);
        }
    }

    public static function error(int $status): MemwardenException
    {
        return MemwardenException::fromStatus($status, (string) self::ffi()->mw_last_error_message());
    }

    /** Reads a library-owned `char*` out-pointer's string and frees it with mw_string_free. */
    public static function takeString(CData $ptr): string
    {
        if (\FFI::isNull($ptr)) {
            return '';
        }
        try {
            return \FFI::string($ptr);
        } finally {
            self::ffi()->mw_string_free($ptr);
        }
    }

    /** @return array<string,mixed> */
    public static function decode(string $json): array
    {
        if ($json === '') {
            return [];
        }
        $v = json_decode($json, true, 512, JSON_THROW_ON_ERROR | JSON_BIGINT_AS_STRING);
        return is_array($v) ? $v : ['value' => $v];
    }

    /** Parses "512M" / "1G" / bytes / "-1" (-1 = none) as PHP writes sizes. */
    public static function parseSize(string $text): int
    {
        $ffi = self::ffi();
        $out = $ffi->new('int64_t');
        self::check($ffi->mw_size_parse($text, \FFI::addr($out)));
        return $out->cdata;
    }

    /** PHP's own `memory_limit` in bytes, -1 when unlimited or unreadable. */
    public static function phpMemoryLimit(): int
    {
        $ini = trim((string) ini_get('memory_limit'));
        if (!array_key_exists($ini, self::$sizeCache)) {
            try {
                $bytes = $ini === '' ? -1 : self::parseSize($ini);
            } catch (MemwardenException) {
                $bytes = -1;
            }
            self::$sizeCache[$ini] = $bytes > 0 ? $bytes : -1;
        }
        return self::$sizeCache[$ini];
    }

    /** The state's name: 'normal', 'warning', 'critical', 'emergency'. */
    public static function stateName(int $state): string
    {
        return match ($state) {
            0 => 'normal',
            1 => 'warning',
            2 => 'critical',
            3 => 'emergency',
            default => (string) self::ffi()->mw_state_name($state),
        };
    }

    /** JSON object text for a config array ([] becomes "{}", never "[]"). */
    public static function configJson(string $component, array $config): string
    {
        foreach ($config as $key => $value) {
            if (is_float($value) && !is_finite($value)) {
                throw new InvalidConfigException(
                    "{$component} config: invalid value for '{$key}': expected a finite number, got "
                    . var_export($value, true),
                    3
                );
            }
        }
        try {
            return json_encode(
                $config === [] ? new \stdClass() : (object) $config,
                JSON_THROW_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE
            );
        } catch (\JsonException $e) {
            throw new InvalidConfigException(
                "{$component} config: cannot be encoded as JSON: {$e->getMessage()}",
                3,
                $e
            );
        }
    }
}
