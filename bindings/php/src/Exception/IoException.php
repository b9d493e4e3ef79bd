<?php

declare(strict_types=1);

namespace Memwarden\Exception;

/** The operating system refused a read or write. Code: MW_STATUS_IO. */
class IoException extends MemwardenException
{
}
