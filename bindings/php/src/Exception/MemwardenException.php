<?php

declare(strict_types=1);

namespace Memwarden\Exception;

/**
 * Base of every exception memwarden throws. getCode() is the numeric mw_status
 * (0 when the error did not come from the library, e.g. the library could not be loaded).
 */
class MemwardenException extends \RuntimeException
{
    /** mw_status => exception class: the one place this mapping lives. */
    public const STATUS_CLASSES = [
        1 => NullArgumentException::class,
        2 => InvalidArgumentException::class,
        3 => InvalidConfigException::class,
        4 => TimeoutException::class,
        5 => ExhaustedException::class,
        6 => CycleException::class,
        7 => NotFoundException::class,
        8 => IoException::class,
        9 => DatabaseException::class,
        10 => CallbackException::class,
        11 => ClosedException::class,
        12 => UnsupportedException::class,
        99 => PanicException::class,
    ];

    /** The exception for a non-zero mw_status, carrying the library's message verbatim. */
    public static function fromStatus(int $status, string $message): self
    {
        $class = self::STATUS_CLASSES[$status] ?? self::class;
        if ($message === '') {
            $message = "memwarden call failed with status {$status}";
        }
        return new $class($message, $status);
    }
}
