<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;

/**
 * One request's `scoped` services, from LazyContainer::createScope(). get() resolves scoped
 * services once per scope and the rest as the container does; dispose() (or dropping the
 * scope) tears its instances down in reverse creation order.
 */
final class ContainerScope
{
    private \FFI $ffi;
    private CData $handle;
    /** The scope keeps its container alive: the native scope must be freed first. */
    private LazyContainer $container;

    /** @internal use LazyContainer::createScope() */
    public function __construct(LazyContainer $container, CData $handle)
    {
        $this->ffi = Native::ffi();
        $this->container = $container;
        $this->handle = $handle;
    }

    public function __destruct()
    {
        if (isset($this->handle)) {
            $handle = $this->handle;
            unset($this->handle);
            try {
                $this->container->guarded(function () use ($handle): int {
                    $this->ffi->mw_scope_free($handle);
                    return 0;
                });
            } catch (\Throwable) {
                // A dispose callback failed; a destructor must not throw. Call dispose() first.
            }
        }
    }

    /** The service $name in this scope. */
    public function get(string $name): mixed
    {
        return $this->container->resolve(fn (CData $out): int => $this->ffi->mw_scope_get($this->handle, $name, \FFI::addr($out)));
    }

    /** Tears down this scope's instances in reverse creation order. Idempotent. */
    public function dispose(): void
    {
        $this->container->guarded(fn () => $this->ffi->mw_scope_dispose($this->handle));
    }
}
