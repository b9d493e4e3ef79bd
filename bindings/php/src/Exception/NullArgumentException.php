<?php

declare(strict_types=1);

namespace Memwarden\Exception;

/** A required argument was NULL. Code: MW_STATUS_NULL_ARGUMENT. */
class NullArgumentException extends MemwardenException
{
}
