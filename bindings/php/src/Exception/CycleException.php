<?php

declare(strict_types=1);

namespace Memwarden\Exception;

/** A dependency cycle. Code: MW_STATUS_CYCLE. */
class CycleException extends MemwardenException
{
}
