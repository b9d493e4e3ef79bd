<?php

declare(strict_types=1);

namespace Memwarden\Exception;

/** Not available on this system or in this mode. Code: MW_STATUS_UNSUPPORTED. */
class UnsupportedException extends MemwardenException
{
}
