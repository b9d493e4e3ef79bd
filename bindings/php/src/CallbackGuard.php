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

    /**
     * As invoke(), for runs whose callback failures the core may handle itself (retried,
     * skipped by error_handling 'continue' or an error callback): a kept exception is
     * rethrown only when the call fails with MW_STATUS_CALLBACK; after a successful call it
     * was handled and is dropped. Callbacks record with fail(), the last failure wins.
     *
     * @param callable():int $call
     * @param (callable(int,?\Throwable):?\Throwable)|null $map turns other failures into an exception
     */
    public function invokeHandled(callable $call, ?callable $map = null): void
    {
        $outer = $this->error;
        $this->error = null;
        try {
            $status = $call();
        } finally {
            $error = $this->error;
            $this->error = $outer;
        }
        if ($status === 0) {
            return;
        }
        if ($error !== null && $status === 10) {
            throw $error;
        }
        if ($map !== null) {
            $mapped = $map($status, $error);
            if ($mapped !== null) {
                throw $mapped;
            }
        }
        Native::check($status);
    }

    /** Records a callback's exception for invokeHandled() (the last one wins). */
    public function fail(\Throwable $e): void
    {
        $this->error = $e;
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
