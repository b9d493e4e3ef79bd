<?php

declare(strict_types=1);

namespace Memwarden;

/**
 * Wraps PHP callables for use as C callbacks (internal).
 *
 * An exception escaping an FFI callback is fatal in PHP, so every wrapper catches
 * \Throwable, keeps the first one here and returns 1 (the core then finishes the rest
 * of the run and returns MW_STATUS_CALLBACK); the binding rethrows the kept exception
 * after the C call returns. The wrappers capture this object, not the manager, so that
 * the manager can still be freed while PHP's FFI keeps its callback trampolines alive.
 *
 * @internal
 */
final class CallbackGuard
{
    public ?\Throwable $error = null;

    /**
     * Runs $call (a C call returning mw_status) and rethrows a callback's exception or
     * maps a non-zero status to an exception. Nested calls (from inside a callback) keep
     * their own error slot.
     */
    public function invoke(callable $call): void
    {
        $outer = $this->error;
        $this->error = null;
        try {
            $status = $call();
        } finally {
            $error = $this->error;
            $this->error = $outer;
        }
        if ($error !== null) {
            throw $error;
        }
        Native::check($status);
    }

    /** @param callable(mixed...):mixed $body */
    public function wrap(callable $body): \Closure
    {
        return function (...$args) use ($body): int {
            try {
                $body(...$args);
                return 0;
            } catch (\Throwable $e) {
                $this->error ??= $e;
                return 1;
            }
        };
    }
}
