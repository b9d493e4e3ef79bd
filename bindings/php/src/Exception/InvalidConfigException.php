<?php

declare(strict_types=1);

namespace Memwarden\Exception;

/** Malformed config, an unknown key or a bad value; the message names the key and value. Code: MW_STATUS_INVALID_CONFIG. */
class InvalidConfigException extends MemwardenException
{
}
