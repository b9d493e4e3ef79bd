<?php

declare(strict_types=1);

namespace Memwarden\Exception;

/** An argument is out of range or malformed (a bad size like '12X', a freed handle). Code: MW_STATUS_INVALID_ARGUMENT. */
class InvalidArgumentException extends MemwardenException
{
}
