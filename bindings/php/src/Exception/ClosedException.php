<?php

declare(strict_types=1);

namespace Memwarden\Exception;

/** The object was closed. Code: MW_STATUS_CLOSED. */
class ClosedException extends MemwardenException
{
}
