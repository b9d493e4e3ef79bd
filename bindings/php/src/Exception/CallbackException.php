<?php

declare(strict_types=1);

namespace Memwarden\Exception;

/** A callback failed (a PHP callback's own exception is rethrown instead). Code: MW_STATUS_CALLBACK. */
class CallbackException extends MemwardenException
{
}
