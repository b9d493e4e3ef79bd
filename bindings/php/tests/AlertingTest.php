<?php

declare(strict_types=1);

namespace Memwarden\Tests;

use Memwarden\Exception\InvalidArgumentException;
use Memwarden\Exception\InvalidConfigException;
use Memwarden\MemoryAlertingService;
use Memwarden\MemoryManager;
use PHPUnit\Framework\TestCase;

/**
 * MemoryAlertingService against real endpoints on loopback: `php -S` with
 * Fixtures/router.php stands in for Slack's incoming webhook, the generic webhook and
 * Alertmanager (it logs every request's path and JSON body, hangs on /hang/, answers 500 on
 * /fail/), and Fixtures/smtp_sink.php is a tiny SMTP server that writes each message to a
 * file. Usage is driven with a host-source manager ('php_readings' => false, memory_limit
 * 1000 bytes) and updateHostReading(). Escalation timing needs the core's injectable clock
 * and is covered by the core's tests.
 */
final class AlertingTest extends TestCase
{
    private const LIMIT = 1000;

    /** @var list<resource> child processes to stop in tearDown */
    private array $procs = [];
    /** @var list<string> temporary files to remove */
    private array $files = [];

    protected function tearDown(): void
    {
        foreach ($this->procs as $proc) {
            $status = proc_get_status($proc);
            if ($status['running']) {
                proc_terminate($proc, 9);
            }
            proc_close($proc);
        }
        $this->procs = [];
        foreach ($this->files as $f) {
            @unlink($f);
        }
        $this->files = [];
    }

    // ---- fixtures -------------------------------------------------------------

    private function tempFile(string $prefix): string
    {
        $f = (string) tempnam(sys_get_temp_dir(), $prefix);
        $this->files[] = $f;
        return $f;
    }

    /** A loopback port with nothing listening. */
    private static function deadPort(): int
    {
        $s = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
        self::assertNotFalse($s, $errstr);
        $name = (string) stream_socket_get_name($s, false);
        fclose($s);
        return (int) substr($name, (int) strrpos($name, ':') + 1);
    }

    /**
     * Starts `php -S 127.0.0.1:<free port> router.php`; returns [base URL, log file].
     *
     * @return array{0:string,1:string}
     */
    private function startHttp(int $hangSeconds = 5): array
    {
        $log = $this->tempFile('mw-http-');
        $router = __DIR__ . '/Fixtures/router.php';
        for ($try = 0; $try < 5; $try++) {
            $port = self::deadPort();
            $env = ['MW_ROUTER_LOG' => $log, 'MW_ROUTER_HANG' => (string) $hangSeconds, 'PATH' => (string) getenv('PATH')];
            $proc = proc_open(
                [PHP_BINARY, '-n', '-S', "127.0.0.1:{$port}", $router],
                [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', '/dev/null', 'w']],
                $pipes,
                null,
                $env
            );
            $this->assertIsResource($proc);
            $this->procs[] = $proc;
            $deadline = microtime(true) + 5;
            while (microtime(true) < $deadline) {
                $c = @stream_socket_client("tcp://127.0.0.1:{$port}", $errno, $errstr, 0.2);
                if ($c !== false) {
                    fclose($c);
                    return ["http://127.0.0.1:{$port}", $log];
                }
                if (!proc_get_status($proc)['running']) {
                    break; // the port was taken meanwhile: try another
                }
                usleep(20_000);
            }
        }
        $this->fail('php -S did not start');
    }

    /**
     * Starts the SMTP sink; returns [port, file it writes messages to].
     *
     * @return array{0:int,1:string}
     */
    private function startSmtp(): array
    {
        $file = $this->tempFile('mw-smtp-');
        $proc = proc_open(
            [PHP_BINARY, '-n', __DIR__ . '/Fixtures/smtp_sink.php', $file],
            [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['file', '/dev/null', 'w']],
            $pipes
        );
        $this->assertIsResource($proc);
        $this->procs[] = $proc;
        $line = (string) fgets($pipes[1]);
        $this->assertMatchesRegularExpression('/^PORT \d+/', $line);
        return [(int) substr(trim($line), 5), $file];
    }

    /** @return list<array<string,mixed>> one entry per line of a JSON-lines file */
    private static function jsonLines(string $file): array
    {
        $out = [];
        foreach (file($file, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) ?: [] as $line) {
            $out[] = json_decode($line, true, 512, JSON_THROW_ON_ERROR);
        }
        return $out;
    }

    /** @return array<string,list<array<string,mixed>>> requests by path */
    private static function requestsByPath(string $log): array
    {
        $by = [];
        foreach (self::jsonLines($log) as $r) {
            $by[$r['path']][] = $r;
        }
        return $by;
    }

    private function manager(float $percent): MemoryManager
    {
        $m = new MemoryManager(['source' => 'host', 'php_readings' => false, 'memory_limit' => self::LIMIT]);
        $this->usage($m, $percent);
        return $m;
    }

    private function usage(MemoryManager $m, float $percent): void
    {
        $m->updateHostReading((int) round($percent * self::LIMIT / 100));
    }

    /** Splits a raw message into unfolded headers and decoded body. @return array{0:array<string,string>,1:string} */
    private static function parseMail(string $data): array
    {
        [$head, $body] = explode("\n\n", str_replace("\r", '', $data), 2) + [1 => ''];
        $head = preg_replace('/\n[ \t]+/', ' ', $head);
        $headers = [];
        foreach (explode("\n", (string) $head) as $line) {
            [$k, $v] = explode(':', $line, 2) + [1 => ''];
            $headers[strtolower(trim($k))] = trim($v);
        }
        $enc = strtolower($headers['content-transfer-encoding'] ?? '');
        if ($enc === 'quoted-printable') {
            $body = quoted_printable_decode($body);
        } elseif ($enc === 'base64') {
            $body = (string) base64_decode($body);
        }
        return [$headers, $body];
    }

    // ---- the seed -------------------------------------------------------------

    public function testTheSeedsBasicSetupAndAdvancedConfigConstruct(): void
    {
        $manager = $this->manager(10);
        $alertService = new MemoryAlertingService([
            'channels' => [
                'email' => [
                    'enabled' => true,
                    'recipients' => ['admin@example.com', 'ops@example.com'],
                    'threshold' => 'warning',
                ],
                'slack' => [
                    'enabled' => true,
                    'webhook_url' => 'https://hooks.slack.com/...',
                    'channel' => '#alerts',
                    'threshold' => 'critical',
                ],
            ],
            'thresholds' => [
                'warning' => 75,   // 75% memory usage
                'critical' => 90,  // 90% memory usage
                'emergency' => 95, // 95% memory usage
            ],
        ], $manager);
        // Usage is normal: nothing is sent anywhere.
        $this->assertSame('normal', $alertService->checkAndAlert());
        $this->assertTrue($alertService->flush(5.0));
        $this->assertSame([], $alertService->getAlertHistory());
        unset($alertService);

        // Every other snippet of the seed's section, together.
        $full = new MemoryAlertingService([
            'channels' => [
                'email' => [
                    'enabled' => true,
                    'recipients' => ['admin@example.com'],
                    'threshold' => 'warning',
                    'throttle_minutes' => 15,
                    'template' => 'memory_alert',
                ],
                'slack' => [
                    'enabled' => true,
                    'webhook_url' => 'https://hooks.slack.com/services/...',
                    'channel' => '#alerts',
                    'username' => 'Glueful Monitor',
                    'threshold' => 'critical',
                    'throttle_minutes' => 5,
                ],
                'webhook' => [
                    'enabled' => true,
                    'url' => 'https://your-monitoring-system.com/alerts',
                    'threshold' => 'warning',
                    'timeout' => 30,
                    'retry_attempts' => 3,
                ],
            ],
            'escalation' => [
                'enabled' => true,
                'levels' => [
                    1 => ['email' => ['admin@example.com']],
                    2 => ['email' => ['manager@example.com'], 'slack' => true],
                    3 => ['webhook' => 'https://pager-duty.com/...'],
                ],
                'escalation_intervals' => [5, 15, 30], // minutes
            ],
            'history_retention_days' => 30,
            'alert_cooldown_minutes' => 10,
            'batch_alerts' => true,
            'include_system_info' => true,
            'custom_metrics' => [
                'cpu_usage' => true,
                'disk_usage' => true,
                'active_connections' => true,
            ],
        ], $manager);
        $this->assertSame('normal', $full->checkAndAlert());
        $this->assertSame([], $full->pollEvents());
    }

    public function testEscalationLevelsKeyedOneTwoThreeEncodeAsAnObject(): void
    {
        $encode = new \ReflectionMethod(MemoryAlertingService::class, 'encodeConfig');
        $encode->setAccessible(true);
        $json = $encode->invoke(null, [
            'channels' => ['email' => ['recipients' => ['a@example.com']]],
            'escalation' => ['levels' => [1 => ['email' => []], 2 => ['email' => ['b@example.com']]]],
            'custom_metrics' => [],
        ]);
        $this->assertStringContainsString('"levels":{"1":{"email":[]},"2":{"email":["b@example.com"]}}', $json);
        $this->assertStringContainsString('"custom_metrics":{}', $json);
        $this->assertStringContainsString('"recipients":["a@example.com"]', $json);
    }

    // ---- HTTP channels --------------------------------------------------------

    public function testSlackWebhookAndAlertmanagerReceiveTheirJsonAndTheResolveNotice(): void
    {
        [$base, $log] = $this->startHttp();
        $m = $this->manager(80);
        $service = new MemoryAlertingService([
            'channels' => [
                'slack' => [
                    'webhook_url' => "{$base}/services/T000/B000/slack-token",
                    'channel' => '#alerts',
                    'username' => 'Glueful Monitor',
                    'threshold' => 'warning',
                ],
                'webhook' => ['url' => "{$base}/hooks/generic", 'threshold' => 'warning', 'timeout' => 5],
                'alertmanager' => ['url' => "{$base}/am", 'labels' => ['team' => 'ops']],
            ],
            'alert_cooldown_minutes' => 0,
        ], $m);
        $raised = [];
        $all = [];
        $service->onAlert(function (array $e) use (&$raised): void {
            $raised[] = $e;
        });
        $service->onEvent(function (array $e) use (&$all): void {
            $all[] = $e['kind'];
        });

        $this->assertSame('warning', $service->checkAndAlert());
        $this->assertCount(1, $raised, 'onAlert fires from checkAndAlert, on the PHP thread');
        $this->assertSame('alert_raised', $raised[0]['kind']);
        $this->assertSame('warning', $raised[0]['level']);
        $this->assertTrue($service->flush(10.0));

        $by = self::requestsByPath($log);
        $this->assertSame(
            ['/am/api/v2/alerts', '/hooks/generic', '/services/T000/B000/slack-token'],
            array_keys(self::sorted($by))
        );
        $slack = $by['/services/T000/B000/slack-token'][0];
        $this->assertSame('POST', $slack['method']);
        $this->assertStringContainsString('application/json', $slack['content_type']);
        $this->assertSame('#alerts', $slack['body']['channel']);
        $this->assertSame('Glueful Monitor', $slack['body']['username']);
        $this->assertStringContainsString('*WARNING*', $slack['body']['text']);
        $this->assertStringContainsString('80.0%', $slack['body']['text']);

        $hook = $by['/hooks/generic'][0]['body'];
        $this->assertSame('memwarden', $hook['source']);
        $this->assertCount(1, $hook['alerts']);
        $this->assertSame('alert', $hook['alerts'][0]['kind']);
        $this->assertSame('warning', $hook['alerts'][0]['level']);
        $this->assertEqualsWithDelta(80.0, $hook['alerts'][0]['usage_percent'], 0.01);
        $this->assertEqualsWithDelta(75.0, $hook['alerts'][0]['threshold'], 0.01);

        $am = $by['/am/api/v2/alerts'][0]['body'];
        $this->assertSame('MemwardenMemoryHigh', $am[0]['labels']['alertname']);
        $this->assertSame('warning', $am[0]['labels']['severity']);
        $this->assertSame('ops', $am[0]['labels']['team']);
        $this->assertArrayHasKey('startsAt', $am[0]);
        $this->assertArrayNotHasKey('endsAt', $am[0]);

        $history = $service->getAlertHistory();
        $this->assertCount(1, $history);
        $this->assertSame('alert', $history[0]['kind']);
        $outcomes = array_column($history[0]['deliveries'], 'outcome', 'channel');
        ksort($outcomes);
        $this->assertSame(['alertmanager' => 'ok', 'slack' => 'ok', 'webhook' => 'ok'], $outcomes);
        $this->assertSame(3, count(array_keys($all, 'delivery_ok', true)));

        // Back to normal: a resolve notice to every channel that heard of it.
        $this->usage($m, 30);
        $this->assertSame('normal', $service->checkAndAlert());
        $this->assertSame('alert_resolved', $raised[1]['kind'] ?? null);
        $this->assertTrue($service->flush(10.0));
        $by = self::requestsByPath($log);
        $this->assertCount(2, $by['/hooks/generic']);
        $this->assertSame('resolved', $by['/hooks/generic'][1]['body']['alerts'][0]['kind']);
        $this->assertArrayHasKey('endsAt', $by['/am/api/v2/alerts'][1]['body'][0]);
        $this->assertSame('warning', $by['/am/api/v2/alerts'][1]['body'][0]['labels']['severity']);
        $this->assertStringContainsString(':white_check_mark:', $by['/services/T000/B000/slack-token'][1]['body']['text']);
        $this->assertCount(1, $service->getAlertHistory(['kind' => 'resolved']));

        // pollEvents() returns what the callbacks saw, once.
        $kinds = array_column($service->pollEvents(), 'kind');
        $this->assertSame($all, $kinds);
        $this->assertSame([], $service->pollEvents());
    }

    /** @param array<string,mixed> $a */
    private static function sorted(array $a): array
    {
        ksort($a);
        return $a;
    }

    public function testSendAlertGoesToChannelsWhoseThresholdItMeets(): void
    {
        [$base, $log] = $this->startHttp();
        $service = new MemoryAlertingService([
            'channels' => [
                'slack' => ['webhook_url' => "{$base}/slack", 'threshold' => 'critical'],
                'webhook' => ['url' => "{$base}/hook", 'threshold' => 'warning'],
            ],
        ], $this->manager(10));
        $id = $service->sendAlert('queue backlog above 10k', 'critical');
        $this->assertGreaterThan(0, $id);
        $id2 = $service->sendAlert('slow responses');
        $this->assertGreaterThan($id, $id2);
        $this->assertTrue($service->flush(10.0));

        $by = self::requestsByPath($log);
        $this->assertCount(2, $by['/hook']);
        $this->assertCount(1, $by['/slack'], 'a warning does not reach a critical-threshold channel');
        $this->assertStringContainsString('queue backlog above 10k', $by['/slack'][0]['body']['text']);
        $custom = $by['/hook'][0]['body']['alerts'][0];
        $this->assertSame('custom', $custom['kind']);
        $this->assertSame('critical', $custom['level']);
        $this->assertSame('queue backlog above 10k', $custom['message']);
        $this->assertSame('warning', $by['/hook'][1]['body']['alerts'][0]['level']);

        $critical = $service->getAlertHistory(['kind' => 'custom', 'level' => 'critical']);
        $this->assertCount(1, $critical);
        $this->assertSame($id, $critical[0]['id']);
        $this->assertCount(1, $service->getAlertHistory(['channel' => 'slack']));
        $this->assertCount(1, $service->getAlertHistory(['limit' => 1]));

        try {
            $service->sendAlert('calm', 'normal');
            $this->fail('normal is not an alert level');
        } catch (InvalidArgumentException $e) {
            $this->assertStringContainsString("'normal'", $e->getMessage());
        }
    }

    // ---- e-mail ---------------------------------------------------------------

    public function testEmailReachesTheSmtpSinkWithRecipientsSubjectAndBody(): void
    {
        [$port, $mails] = $this->startSmtp();
        $service = new MemoryAlertingService([
            'channels' => [
                'email' => [
                    'enabled' => true,
                    'recipients' => ['admin@example.com', 'ops@example.com'],
                    'threshold' => 'warning',
                    'throttle_minutes' => 15,
                    'template' => 'memory_alert',
                    'smtp' => [
                        'host' => '127.0.0.1',
                        'port' => $port,
                        'tls' => 'none',
                        'from' => 'memwarden@example.com',
                        'timeout' => 5,
                    ],
                ],
            ],
            'escalation' => [
                'enabled' => true,
                'levels' => [
                    1 => ['email' => ['oncall@example.com']],
                    2 => ['email' => ['manager@example.com']],
                ],
                'escalation_intervals' => [5, 15],
            ],
        ], $this->manager(92));
        $this->assertSame('critical', $service->checkAndAlert());
        $this->assertTrue($service->flush(10.0));

        $messages = self::jsonLines($mails);
        $this->assertCount(1, $messages);
        $msg = $messages[0];
        $this->assertSame('memwarden@example.com', $msg['from']);
        // The channel's recipients plus escalation level 1's, merged into the first alert.
        $this->assertSame(['admin@example.com', 'ops@example.com', 'oncall@example.com'], $msg['to']);
        [$headers, $body] = self::parseMail($msg['data']);
        $this->assertStringStartsWith('[memwarden] CRITICAL: memory at 92', $headers['subject']);
        $this->assertStringContainsString('admin@example.com', $headers['to']);
        $this->assertStringContainsString('reached the critical threshold (90%)', $body);
        $this->assertStringContainsString('escalation level: 1', $body);

        $history = $service->getAlertHistory(['channel' => 'email']);
        $this->assertSame('ok', $history[0]['deliveries'][0]['outcome']);
        $this->assertSame(1, $history[0]['escalation_level']);
    }

    // ---- failures -------------------------------------------------------------

    public function testHangRefusedAnd500DoNotBlockAndAreRecordedWithoutSecrets(): void
    {
        [$hangBase, $hangLog] = $this->startHttp(3);
        [$failBase, $failLog] = $this->startHttp();
        $dead = self::deadPort();
        $service = new MemoryAlertingService([
            'channels' => [
                'slack' => [
                    'webhook_url' => "http://127.0.0.1:{$dead}/services/SECRET-refused",
                    'threshold' => 'warning',
                    'timeout' => 2,
                    'retry_attempts' => 0,
                ],
                'webhook' => [
                    'url' => "{$hangBase}/hang/SECRET-hang?token=SECRET-query",
                    'threshold' => 'warning',
                    'timeout' => 0.5,
                    'retry_attempts' => 0,
                ],
                'alertmanager' => [
                    'url' => "{$failBase}/fail/SECRET-500",
                    'timeout' => 2,
                    'retry_attempts' => 1,
                ],
            ],
        ], $this->manager(96));
        $failed = [];
        $service->onDeliveryFailed(function (array $e) use (&$failed): void {
            $failed[] = $e;
        });

        $t0 = microtime(true);
        $this->assertSame('emergency', $service->checkAndAlert());
        $this->assertLessThan(0.5, microtime(true) - $t0, 'checkAndAlert returns at once');
        $before = count($failed);

        $this->assertTrue($service->flush(20.0));
        $this->assertCount(3, $failed, 'onDeliveryFailed fires from flush(), once per channel');
        $this->assertLessThan(3, $before);
        $channels = array_column($failed, 'channel');
        sort($channels);
        $this->assertSame(['alertmanager', 'slack', 'webhook'], $channels);
        foreach ($failed as $e) {
            $this->assertSame('delivery_failed', $e['kind']);
            $this->assertSame('emergency', $e['level']);
            $this->assertNotEmpty($e['error']);
        }

        $history = $service->getAlertHistory();
        $this->assertCount(1, $history);
        $byChannel = [];
        foreach ($history[0]['deliveries'] as $d) {
            $byChannel[$d['channel']][] = $d;
        }
        $this->assertCount(1, $byChannel['slack']);
        $this->assertSame('failed', $byChannel['slack'][0]['outcome']);
        $this->assertMatchesRegularExpression('/refused/i', (string) $byChannel['slack'][0]['error']);
        $this->assertCount(1, $byChannel['webhook']);
        $this->assertSame('failed', $byChannel['webhook'][0]['outcome']);
        $this->assertMatchesRegularExpression('/time[d ]*out/i', (string) $byChannel['webhook'][0]['error']);
        $this->assertCount(2, $byChannel['alertmanager'], 'one retry after HTTP 500');
        foreach ($byChannel['alertmanager'] as $i => $d) {
            $this->assertSame($i + 1, $d['attempt']);
            $this->assertSame('failed', $d['outcome']);
            $this->assertSame('HTTP 500', $d['error']);
        }
        $this->assertCount(2, self::jsonLines($failLog));
        $this->assertCount(1, self::jsonLines($hangLog), 'the hanging endpoint got the request');

        $everything = json_encode([$history, $failed, $service->pollEvents()]);
        $this->assertStringNotContainsString('SECRET', (string) $everything);
    }

    public function testFlushWithATimeoutReportsAQueueThatHasNotDrained(): void
    {
        [$base, $log] = $this->startHttp(1);
        $service = new MemoryAlertingService([
            'channels' => ['webhook' => ['url' => "{$base}/hang/x", 'timeout' => 3, 'retry_attempts' => 0]],
        ], $this->manager(80));
        $service->checkAndAlert();
        $t0 = microtime(true);
        $this->assertFalse($service->flush(0.1), 'the endpoint is still answering');
        $this->assertLessThan(0.9, microtime(true) - $t0);
        $this->assertTrue($service->flush(10.0));
        $this->assertSame('ok', $service->getAlertHistory()[0]['deliveries'][0]['outcome']);
        $this->assertCount(1, self::jsonLines($log));
    }

    public function testACallbacksExceptionIsRethrownAfterEveryCallbackRan(): void
    {
        $service = new MemoryAlertingService([], $this->manager(80));
        $seen = 0;
        $service->onAlert(static function (): void {
            throw new \DomainException('alert handler broke');
        });
        $service->onEvent(function () use (&$seen): void {
            $seen++;
        });
        try {
            $service->checkAndAlert();
            $this->fail('the callback exception must reach the caller');
        } catch (\DomainException $e) {
            $this->assertSame('alert handler broke', $e->getMessage());
        }
        $this->assertSame(1, $seen);
        $this->assertSame(['alert_raised'], array_column($service->pollEvents(), 'kind'));
    }

    // ---- policies -------------------------------------------------------------

    public function testThrottlingPerChannelAndLevelAndForRepeatedMessages(): void
    {
        [$base, $log] = $this->startHttp();
        $m = $this->manager(80);
        $service = new MemoryAlertingService([
            'channels' => ['webhook' => ['url' => "{$base}/hook", 'throttle_minutes' => 5]],
            'alert_cooldown_minutes' => 0,
        ], $m);
        $this->assertSame('warning', $service->checkAndAlert());
        $this->usage($m, 20);
        $this->assertSame('normal', $service->checkAndAlert());
        $this->usage($m, 80);
        $this->assertSame('warning', $service->checkAndAlert());
        $service->sendAlert('disk nearly full', 'critical');
        $service->sendAlert('disk nearly full', 'critical');
        $this->assertTrue($service->flush(10.0));

        $kinds = array_map(static fn ($r) => $r['body']['alerts'][0]['kind'], self::jsonLines($log));
        $this->assertSame(['alert', 'resolved', 'custom'], $kinds);

        $alerts = $service->getAlertHistory(['kind' => 'alert']);
        $this->assertCount(2, $alerts);
        $this->assertSame('throttled', $alerts[0]['deliveries'][0]['outcome'], 'the second warning within 5 minutes');
        $this->assertSame('ok', $alerts[1]['deliveries'][0]['outcome']);
        $custom = $service->getAlertHistory(['kind' => 'custom']);
        $this->assertSame('throttled', $custom[0]['deliveries'][0]['outcome']);
        $this->assertSame('ok', $custom[1]['deliveries'][0]['outcome']);
    }

    public function testCooldownAfterAResolveSuppressesTheSameCondition(): void
    {
        [$base, $log] = $this->startHttp();
        $m = $this->manager(80);
        $service = new MemoryAlertingService([
            'channels' => ['webhook' => ['url' => "{$base}/hook", 'throttle_minutes' => 0]],
            'alert_cooldown_minutes' => 10,
        ], $m);
        $service->checkAndAlert();
        $this->usage($m, 20);
        $service->checkAndAlert();
        $this->usage($m, 80);
        $this->assertSame('warning', $service->checkAndAlert());
        $this->assertTrue($service->flush(10.0));
        $this->assertCount(2, self::jsonLines($log), 'the alert and its resolve notice, nothing more');
        $this->assertSame('suppressed', $service->getAlertHistory(['kind' => 'alert'])[0]['status']);
        $this->assertContains('alert_suppressed', array_column($service->pollEvents(), 'kind'));
    }

    public function testHysteresisDoesNotRealertAWobblingValue(): void
    {
        [$base, $log] = $this->startHttp();
        $m = $this->manager(76);
        $service = new MemoryAlertingService([
            'channels' => ['webhook' => ['url' => "{$base}/hook", 'throttle_minutes' => 0]],
            'alert_cooldown_minutes' => 0,
        ], $m);
        foreach ([76, 74.5, 75.5, 74, 76] as $pct) {
            $this->usage($m, $pct);
            $this->assertSame('warning', $service->checkAndAlert(), "at {$pct}%");
        }
        $this->assertTrue($service->flush(10.0));
        $this->assertCount(1, self::jsonLines($log));
    }

    // ---- manager --------------------------------------------------------------

    public function testTheServiceKeepsItsManagerAndDefaultsToOne(): void
    {
        $service = (function (): MemoryAlertingService {
            return new MemoryAlertingService([], $this->manager(91));
        })();
        gc_collect_cycles();
        $this->assertSame('critical', $service->checkAndAlert());
        $this->assertSame('critical', $service->getManager()->getMemoryState());

        $default = new MemoryAlertingService();
        $this->assertContains($default->checkAndAlert(), ['normal', 'warning', 'critical', 'emergency']);
        $this->assertSame('host', $default->getManager()->getMemoryUsage()['source']);
        $this->assertTrue($default->flush());
    }

    // ---- bad input --------------------------------------------------------------

    /** @return array<string,array{0:array<string,mixed>,1:string}> */
    public static function badConfigs(): array
    {
        return [
            'unknown channel' => [['channels' => ['pagerduty' => []]], "unknown channel 'pagerduty'"],
            'misspelt channel' => [['channels' => ['slak' => []]], "did you mean 'slack'"],
            'bad URL scheme' => [
                ['channels' => ['webhook' => ['url' => 'gopher://example.com/SECRET-path']]],
                "bad URL for 'channels.webhook.url'",
            ],
            'not a URL' => [['channels' => ['slack' => ['webhook_url' => 'hooks slack com']]], 'bad URL'],
            'bad e-mail' => [
                ['channels' => ['email' => ['recipients' => ['admin@example.com', 'nobody']]]],
                "bad e-mail address 'nobody'",
            ],
            'unknown threshold name' => [
                ['channels' => ['email' => ['recipients' => ['a@example.com'], 'threshold' => 'high']]],
                "unknown threshold name 'high'",
            ],
            'unknown thresholds key' => [['thresholds' => ['severe' => 80]], "'severe'"],
            'negative interval' => [
                ['escalation' => ['escalation_intervals' => [5, -15]]],
                'escalation.escalation_intervals[1] is negative',
            ],
            'negative throttle' => [
                ['channels' => ['webhook' => ['url' => 'http://127.0.0.1/x', 'throttle_minutes' => -1]]],
                'throttle_minutes',
            ],
            'negative cooldown' => [['alert_cooldown_minutes' => -10], 'alert_cooldown_minutes'],
            'level naming an unconfigured channel' => [
                ['escalation' => ['enabled' => true, 'levels' => [1 => ['slack' => true]]]],
                "channel 'slack'",
            ],
            'level naming an unknown channel' => [
                ['channels' => ['email' => ['recipients' => ['a@example.com']]],
                 'escalation' => ['levels' => [1 => ['sms' => true]]]],
                "unknown channel 'sms'",
            ],
            'unknown key' => [['alert_cooldown_minute' => 10], "did you mean 'alert_cooldown_minutes'"],
            'infinite number' => [['history_retention_days' => INF], 'finite'],
        ];
    }

    /**
     * @dataProvider badConfigs
     * @param array<string,mixed> $config
     */
    public function testBadInputFailsAtConstructionNamingIt(array $config, string $want): void
    {
        try {
            new MemoryAlertingService($config, $this->manager(10));
            $this->fail('expected InvalidConfigException');
        } catch (InvalidConfigException $e) {
            $this->assertStringContainsString($want, $e->getMessage());
            $this->assertSame(3, $e->getCode());
            $this->assertStringNotContainsString('SECRET', $e->getMessage());
        }
    }

    public function testBadHistoryFilterAndFlushTimeout(): void
    {
        $service = new MemoryAlertingService([], $this->manager(10));
        try {
            $service->getAlertHistory(['colour' => 'red']);
            $this->fail('expected InvalidConfigException');
        } catch (InvalidConfigException $e) {
            $this->assertStringContainsString("unknown key 'colour'", $e->getMessage());
        }
        $this->expectException(InvalidArgumentException::class);
        $this->expectExceptionMessage('timeout');
        $service->flush(-1.0);
    }
}
