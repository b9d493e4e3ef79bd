<?php

declare(strict_types=1);

namespace Memwarden\Exception;

/** A database reported an error. Code: MW_STATUS_DATABASE. */
class DatabaseException extends MemwardenException
{
}
