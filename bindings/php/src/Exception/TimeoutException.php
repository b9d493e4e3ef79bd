<?php

declare(strict_types=1);

namespace Memwarden\Exception;

/** Waiting took longer than allowed. Code: MW_STATUS_TIMEOUT. */
class TimeoutException extends MemwardenException
{
}
