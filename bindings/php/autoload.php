<?php

declare(strict_types=1);

// The Memwarden\ classes => their files under src/ (one class per file, PSR-4 layout), so tests,
// examples and front controllers need no Composer. A classmap rather than a path built and
// checked with is_file() per class: under php-fpm or php -S the autoloader runs on every
// request, and this way it costs one array lookup and the require (cached by opcache).
// tests/AutoloadTest.php checks that every class in src/ loads through it.
// With opcache.preload=preload.php the classes are already there: nothing to register.
if (function_exists('Memwarden\\preloaded')) {
    return;
}
spl_autoload_register(static function (string $class): void {
    // A literal array: opcache keeps it immutable, nothing is built per call.
    $file = [
        'Memwarden\\CallbackGuard' => 'CallbackGuard.php',
        'Memwarden\\ChunkInfo' => 'ChunkInfo.php',
        'Memwarden\\ChunkTransaction' => 'ChunkTransaction.php',
        'Memwarden\\ChunkedDatabaseProcessor' => 'ChunkedDatabaseProcessor.php',
        'Memwarden\\ContainerInstances' => 'ContainerInstances.php',
        'Memwarden\\ContainerScope' => 'ContainerScope.php',
        'Memwarden\\Exception\\CallbackException' => 'Exception/CallbackException.php',
        'Memwarden\\Exception\\ClosedException' => 'Exception/ClosedException.php',
        'Memwarden\\Exception\\CycleException' => 'Exception/CycleException.php',
        'Memwarden\\Exception\\DatabaseException' => 'Exception/DatabaseException.php',
        'Memwarden\\Exception\\ExhaustedException' => 'Exception/ExhaustedException.php',
        'Memwarden\\Exception\\InvalidArgumentException' => 'Exception/InvalidArgumentException.php',
        'Memwarden\\Exception\\InvalidConfigException' => 'Exception/InvalidConfigException.php',
        'Memwarden\\Exception\\IoException' => 'Exception/IoException.php',
        'Memwarden\\Exception\\MemwardenException' => 'Exception/MemwardenException.php',
        'Memwarden\\Exception\\NotFoundException' => 'Exception/NotFoundException.php',
        'Memwarden\\Exception\\NullArgumentException' => 'Exception/NullArgumentException.php',
        'Memwarden\\Exception\\PanicException' => 'Exception/PanicException.php',
        'Memwarden\\Exception\\TimeoutException' => 'Exception/TimeoutException.php',
        'Memwarden\\Exception\\UnsupportedException' => 'Exception/UnsupportedException.php',
        'Memwarden\\FilteredIterator' => 'FilteredIterator.php',
        'Memwarden\\ItemTable' => 'ItemTable.php',
        'Memwarden\\LazyContainer' => 'LazyContainer.php',
        'Memwarden\\LazyIterator' => 'LazyIterator.php',
        'Memwarden\\MemoryAlertingService' => 'MemoryAlertingService.php',
        'Memwarden\\MemoryManager' => 'MemoryManager.php',
        'Memwarden\\MemoryPool' => 'MemoryPool.php',
        'Memwarden\\MemoryTrackingMiddleware' => 'MemoryTrackingMiddleware.php',
        'Memwarden\\Monitor' => 'Monitor.php',
        'Memwarden\\Native' => 'Native.php',
        'Memwarden\\PoolObjects' => 'PoolObjects.php',
        'Memwarden\\ResourceTracker' => 'ResourceTracker.php',
        'Memwarden\\SourcePuller' => 'SourcePuller.php',
        'Memwarden\\StreamProcessor' => 'StreamProcessor.php',
        'Memwarden\\StreamingIterator' => 'StreamingIterator.php',
        'Memwarden\\TypedMemoryPool' => 'TypedMemoryPool.php',
    ][$class] ?? null;
    if ($file !== null) {
        require __DIR__ . '/src/' . $file;
    }
});
