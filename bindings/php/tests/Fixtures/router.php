<?php

// Router for `php -S 127.0.0.1:<port> router.php`, standing in for Slack's incoming webhook,
// a generic webhook and Alertmanager in AlertingTest. Appends one JSON line per request
// (method, path, content type, decoded JSON body) to the file in env MW_ROUTER_LOG, then:
//   /hang/...  sleeps MW_ROUTER_HANG seconds (default 5) before answering 200;
//   /fail/...  answers 500;
//   anything else answers 200 {"ok":true}.

declare(strict_types=1);

$path = (string) parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
$raw = (string) file_get_contents('php://input');
$line = json_encode([
    'method' => $_SERVER['REQUEST_METHOD'] ?? '',
    'path' => $path,
    'content_type' => $_SERVER['CONTENT_TYPE'] ?? ($_SERVER['HTTP_CONTENT_TYPE'] ?? ''),
    'body' => json_decode($raw, true),
    'raw' => $raw,
], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
$log = getenv('MW_ROUTER_LOG');
if (is_string($log) && $log !== '') {
    file_put_contents($log, $line . "\n", FILE_APPEND | LOCK_EX);
}

header('Content-Type: application/json');
if (str_starts_with($path, '/hang/')) {
    $hang = getenv('MW_ROUTER_HANG');
    sleep(is_string($hang) && $hang !== '' ? (int) $hang : 5);
    echo '{"ok":true}';
    return true;
}
if (str_starts_with($path, '/fail/')) {
    http_response_code(500);
    echo '{"ok":false}';
    return true;
}
echo '{"ok":true}';
return true;
