<?php

declare(strict_types=1);

namespace Memwarden;

use FFI\CData;
use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;

/**
 * Memory alerting over memwarden's native core: judges a MemoryManager's readings against
 * the alerting thresholds (percent) and delivers alerts by e-mail, Slack, a generic webhook
 * and Prometheus Alertmanager from the library's own delivery thread, so checkAndAlert()
 * never waits on the network.
 *
 * Config (the seed's keys, nested arrays as the seed writes them): channels.email
 * (enabled, recipients, threshold, throttle_minutes, template, smtp: host, port,
 * tls 'none'|'starttls'|'tls', username, password, from, timeout), channels.slack
 * (enabled, webhook_url, channel, username, threshold, throttle_minutes, timeout,
 * retry_attempts), channels.webhook (enabled, url, threshold, timeout, retry_attempts,
 * headers), channels.alertmanager (enabled, url, threshold, throttle_minutes, timeout,
 * retry_attempts, labels, headers), thresholds (warning, critical, emergency in percent),
 * escalation (enabled, levels keyed 1, 2, 3, escalation_intervals in minutes),
 * history_retention_days, history_path, alert_cooldown_minutes, batch_alerts,
 * batch_window_seconds, include_system_info, custom_metrics (cpu_usage, disk_usage,
 * active_connections), queue_capacity, hysteresis, templates. Bad input (unknown channel,
 * bad URL, bad e-mail address, unknown threshold name, negative interval, ...) throws
 * InvalidConfigException naming it, at construction.
 *
 * PHP never runs on the library's thread: events born there (delivery ok / failed, dropped)
 * are queued by the core and picked up on the PHP thread by pollEvents(), checkAndAlert()
 * and flush(), which then call the onAlert / onDeliveryFailed / onEvent callbacks.
 */
final class MemoryAlertingService
{
    /** Events kept for pollEvents() after checkAndAlert()/flush() dispatched them. */
    private const BUFFER_LIMIT = 1024;

    /** Keys whose empty array means an empty list, not an empty object. */
    private const LIST_KEYS = ['recipients', 'escalation_intervals'];

    private \FFI $ffi;
    private CData $handle;
    /** Keeps the manager (and the PHP closures its native handle calls) alive. */
    private MemoryManager $manager;
    /** @var list<array<string,mixed>> dispatched but not yet returned by pollEvents() */
    private array $buffer = [];
    /** @var list<callable> */
    private array $onAlert = [];
    /** @var list<callable> */
    private array $onDeliveryFailed = [];
    /** @var list<callable> */
    private array $onEvent = [];

    /**
     * @param array<string,mixed> $config
     * @param MemoryManager|null $manager the manager whose readings are judged; by default
     *        a new MemoryManager() (PHP's own memory against its memory_limit)
     */
    public function __construct(array $config = [], ?MemoryManager $manager = null)
    {
        $json = self::encodeConfig($config);
        $this->manager = $manager ?? new MemoryManager();
        $this->ffi = Native::ffi();
        $out = $this->ffi->new('mw_alert*');
        Native::check($this->ffi->mw_alert_new($json, $this->manager->nativeHandle(), \FFI::addr($out)));
        $this->handle = $out;
    }

    public function __destruct()
    {
        if (isset($this->handle)) {
            // Queued deliveries get up to 2 seconds to finish; the rest are recorded as failed.
            $this->ffi->mw_alert_free($this->handle);
            unset($this->handle);
        }
    }

    /** The manager whose readings this service judges. */
    public function getManager(): MemoryManager
    {
        return $this->manager;
    }

    /**
     * Reads the manager, decides (thresholds with hysteresis, throttling, cooldown,
     * escalation, resolve notices), queues deliveries and returns the current level
     * ('normal', 'warning', 'critical', 'emergency') at once. Then calls the callbacks for
     * the events since the last poll.
     */
    public function checkAndAlert(): string
    {
        $level = $this->ffi->new('mw_state');
        Native::check($this->ffi->mw_alert_check($this->handle, \FFI::addr($level)));
        $this->dispatch();
        return Native::stateName($level->cdata);
    }

    /**
     * Sends your own message at $level ('warning', 'critical' or 'emergency') to every
     * channel whose threshold it meets; the same text at the same level is throttled per
     * channel. Returns the alert's history id.
     */
    public function sendAlert(string $message, string $level = 'warning'): int
    {
        $state = match ($level) {
            'warning' => 1,
            'critical' => 2,
            'emergency' => 3,
            default => throw new InvalidArgumentException(
                "sendAlert: unknown level '{$level}'; expected 'warning', 'critical' or 'emergency'",
                2
            ),
        };
        $id = $this->ffi->new('int64_t');
        Native::check($this->ffi->mw_alert_send($this->handle, $message, $state, \FFI::addr($id)));
        $this->dispatch();
        return (int) $id->cdata;
    }

    /**
     * Waits until every queued delivery has been attempted, at most $timeoutSeconds (null:
     * no limit). Returns whether the queue drained in time. Then calls the callbacks for the
     * events since the last poll (deliveries ok / failed).
     */
    public function flush(?float $timeoutSeconds = null): bool
    {
        if ($timeoutSeconds !== null && (is_nan($timeoutSeconds) || $timeoutSeconds < 0)) {
            throw new InvalidArgumentException(
                "flush: timeout must be a number of seconds >= 0 or null, got {$timeoutSeconds}",
                2
            );
        }
        $drained = $this->ffi->new('bool');
        Native::check($this->ffi->mw_alert_flush($this->handle, $timeoutSeconds ?? -1.0, \FFI::addr($drained)));
        $this->dispatch();
        return (bool) $drained->cdata;
    }

    /**
     * The history, newest first: each alert (id, kind, level, message, usage_percent, status,
     * escalation_level, time, timestamp) with its 'deliveries' (channel, time, timestamp,
     * attempt, outcome 'ok'|'failed'|'throttled'|'dropped', error). Filters: level, channel,
     * kind ('alert', 'resolved', 'escalation', 'custom'), since (epoch seconds), limit.
     *
     * @param array<string,mixed> $filters
     * @return list<array<string,mixed>>
     */
    public function getAlertHistory(array $filters = []): array
    {
        $out = $this->ffi->new('char*');
        Native::check($this->ffi->mw_alert_history(
            $this->handle,
            Native::configJson('alert history filter', $filters),
            \FFI::addr($out)
        ));
        /** @var list<array<string,mixed>> */
        return Native::decode(Native::takeString($out));
    }

    /**
     * Every event since the last pollEvents(), oldest first: arrays with kind
     * ('alert_raised', 'alert_resolved', 'alert_suppressed', 'alert_dropped', 'delivery_ok',
     * 'delivery_failed'), alert_id, level, channel, message, error, time, timestamp. Calls
     * the callbacks for the events they have not seen yet.
     *
     * @return list<array<string,mixed>>
     */
    public function pollEvents(): array
    {
        $this->dispatch();
        $events = $this->buffer;
        $this->buffer = [];
        return $events;
    }

    /** $callback(array $event) for each 'alert_raised' and 'alert_resolved' event. */
    public function onAlert(callable $callback): void
    {
        $this->onAlert[] = $callback;
    }

    /** $callback(array $event) for each 'delivery_failed' and 'alert_dropped' event. */
    public function onDeliveryFailed(callable $callback): void
    {
        $this->onDeliveryFailed[] = $callback;
    }

    /** $callback(array $event) for every event. */
    public function onEvent(callable $callback): void
    {
        $this->onEvent[] = $callback;
    }

    // ---- internals ------------------------------------------------------------

    /**
     * Drains the core's event queue on this (the PHP) thread, keeps the events for
     * pollEvents() and calls the callbacks. Every callback runs; the first exception one
     * throws is rethrown afterwards.
     */
    private function dispatch(): void
    {
        $out = $this->ffi->new('char*');
        Native::check($this->ffi->mw_alert_poll($this->handle, \FFI::addr($out)));
        $events = Native::decode(Native::takeString($out));
        if ($events === []) {
            return;
        }
        $error = null;
        foreach ($events as $event) {
            $this->buffer[] = $event;
            $kind = $event['kind'] ?? '';
            $callbacks = $this->onEvent;
            if ($kind === 'alert_raised' || $kind === 'alert_resolved') {
                $callbacks = array_merge($callbacks, $this->onAlert);
            } elseif ($kind === 'delivery_failed' || $kind === 'alert_dropped') {
                $callbacks = array_merge($callbacks, $this->onDeliveryFailed);
            }
            foreach ($callbacks as $callback) {
                try {
                    $callback($event);
                } catch (\Throwable $e) {
                    $error ??= $e;
                }
            }
        }
        if (count($this->buffer) > self::BUFFER_LIMIT) {
            $this->buffer = array_slice($this->buffer, -self::BUFFER_LIMIT);
        }
        if ($error !== null) {
            throw $error;
        }
    }

    /**
     * The config as JSON: nested arrays as the seed writes them. An empty array is an empty
     * object except under the list keys (recipients, escalation_intervals, a level's email);
     * escalation levels keyed 1, 2, 3 stay an object.
     */
    private static function encodeConfig(array $config): string
    {
        $value = self::normalize($config, 'MemoryAlertingService config', '');
        try {
            return json_encode(
                $value,
                JSON_THROW_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE
            );
        } catch (\JsonException $e) {
            throw new InvalidConfigException(
                "MemoryAlertingService config: cannot be encoded as JSON: {$e->getMessage()}",
                3,
                $e
            );
        }
    }

    private static function normalize(mixed $value, string $component, string $path): mixed
    {
        if (is_float($value) && !is_finite($value)) {
            throw new InvalidConfigException(
                "{$component}: invalid value for '{$path}': expected a finite number, got "
                . var_export($value, true),
                3
            );
        }
        if (is_object($value) && !$value instanceof \stdClass && !$value instanceof \JsonSerializable) {
            throw new InvalidConfigException(
                "{$component}: invalid value for '{$path}': expected a value JSON can carry, got "
                . get_debug_type($value),
                3
            );
        }
        if (!is_array($value)) {
            return $value;
        }
        $last = $path === '' ? '' : substr($path, (int) strrpos('.' . $path, '.'));
        $isList = array_is_list($value);
        $wantsList = in_array($last, self::LIST_KEYS, true)
            || ($last === 'email' && str_starts_with($path, 'escalation.levels.'));
        $out = [];
        foreach ($value as $k => $v) {
            $out[$k] = self::normalize($v, $component, $path === '' ? (string) $k : "{$path}.{$k}");
        }
        if ($value === []) {
            return $wantsList ? [] : new \stdClass();
        }
        return $isList ? $out : (object) $out;
    }
}
