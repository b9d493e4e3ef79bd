<?php

declare(strict_types=1);

namespace Memwarden\Exception;

/** The native library panicked; the message says where. Code: MW_STATUS_PANIC. */
class PanicException extends MemwardenException
{
}
