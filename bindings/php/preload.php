<?php

declare(strict_types=1);

namespace Memwarden;

// For opcache.preload: compiles and links every Memwarden\ class once, when the server starts,
// so a request under php-fpm or php -S neither autoloads, compiles nor links them:
//
//     php -d opcache.enable_cli=1 -d opcache.preload=/path/to/bindings/php/preload.php \
//         -d ffi.enable=1 -d ffi.preload=/etc/php/memwarden.h -S 127.0.0.1:8080 index.php
//
// (PHP running as root also wants opcache.preload_user.) Front controllers may keep their
// `require 'autoload.php'`: it registers nothing when this file was preloaded.

/** True: the Memwarden\ classes were preloaded (autoload.php checks for this function). */
function preloaded(): bool
{
    return true;
}

$src = __DIR__ . '/src/';
// Not autoload.php, which registers nothing once preloaded() exists (it does, from here on).
$load = static function (string $class) use ($src): void {
    if (str_starts_with($class, __NAMESPACE__ . '\\')) {
        $file = $src . str_replace('\\', '/', substr($class, strlen(__NAMESPACE__) + 1)) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
};
spl_autoload_register($load);
$files = new \RecursiveIteratorIterator(new \RecursiveDirectoryIterator($src, \FilesystemIterator::SKIP_DOTS));
foreach ($files as $file) {
    $path = (string) $file;
    if (!str_ends_with($path, '.php')) {
        continue;
    }
    $class = __NAMESPACE__ . '\\' . str_replace('/', '\\', substr($path, strlen($src), -4));
    if (!class_exists($class) && !interface_exists($class) && !trait_exists($class)) {
        throw new \LogicException("memwarden preload: {$class} did not load from {$path}");
    }
}
spl_autoload_unregister($load);
