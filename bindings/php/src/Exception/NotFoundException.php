<?php

declare(strict_types=1);

namespace Memwarden\Exception;

/** A named thing does not exist (or a host source has no reading yet). Code: MW_STATUS_NOT_FOUND. */
class NotFoundException extends MemwardenException
{
}
