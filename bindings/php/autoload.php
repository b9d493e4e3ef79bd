<?php

declare(strict_types=1);

// A tiny PSR-4 autoloader for Memwarden\ => src/, so tests and examples need no Composer.
spl_autoload_register(static function (string $class): void {
    $prefix = 'Memwarden\\';
    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
