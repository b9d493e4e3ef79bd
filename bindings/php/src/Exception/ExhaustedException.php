<?php

declare(strict_types=1);

namespace Memwarden\Exception;

/** A bounded resource has nothing left. Code: MW_STATUS_EXHAUSTED. */
class ExhaustedException extends MemwardenException
{
}
