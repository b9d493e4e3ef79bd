<?php

// A tiny SMTP sink for AlertingTest: `php smtp_sink.php <file>` listens on 127.0.0.1 (port
// 0), prints "PORT <n>" on stdout, and speaks just enough SMTP (220, EHLO/HELO 250,
// MAIL/RCPT 250, DATA 354 ... '.' 250, RSET/NOOP 250, QUIT 221) for any number of clients at
// once. Each message is appended to <file> as one JSON line: from, to (list), data.

declare(strict_types=1);

$file = $argv[1] ?? '';
if ($file === '') {
    fwrite(STDERR, "usage: php smtp_sink.php <file>\n");
    exit(2);
}
$server = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
if ($server === false) {
    fwrite(STDERR, "smtp_sink: cannot listen: {$errstr}\n");
    exit(1);
}
$name = (string) stream_socket_get_name($server, false);
fwrite(STDOUT, 'PORT ' . substr($name, (int) strrpos($name, ':') + 1) . "\n");
fflush(STDOUT);

/** @var array<int,array{sock:resource,buf:string,from:string,to:list<string>,data:?string}> */
$clients = [];

$send = static function ($sock, string $line): void {
    @fwrite($sock, $line . "\r\n");
};

while (true) {
    $read = [$server];
    foreach ($clients as $c) {
        $read[] = $c['sock'];
    }
    $write = $except = null;
    if (@stream_select($read, $write, $except, 1) === false) {
        continue;
    }
    foreach ($read as $sock) {
        if ($sock === $server) {
            $conn = @stream_socket_accept($server, 0);
            if ($conn !== false) {
                $clients[(int) $conn] = ['sock' => $conn, 'buf' => '', 'from' => '', 'to' => [], 'data' => null];
                $send($conn, '220 localhost memwarden test sink');
            }
            continue;
        }
        $id = (int) $sock;
        $chunk = @fread($sock, 65536);
        if ($chunk === false || ($chunk === '' && feof($sock))) {
            fclose($sock);
            unset($clients[$id]);
            continue;
        }
        $clients[$id]['buf'] .= $chunk;
        while (($pos = strpos($clients[$id]['buf'], "\r\n")) !== false) {
            $line = substr($clients[$id]['buf'], 0, $pos);
            $clients[$id]['buf'] = substr($clients[$id]['buf'], $pos + 2);
            $c = &$clients[$id];
            if ($c['data'] !== null) {
                if ($line === '.') {
                    file_put_contents($file, json_encode([
                        'from' => $c['from'],
                        'to' => $c['to'],
                        'data' => $c['data'],
                    ], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE) . "\n", FILE_APPEND | LOCK_EX);
                    $c['data'] = null;
                    $c['from'] = '';
                    $c['to'] = [];
                    $send($sock, '250 OK queued');
                } else {
                    $c['data'] .= (str_starts_with($line, '..') ? substr($line, 1) : $line) . "\n";
                }
                unset($c);
                continue;
            }
            $verb = strtoupper(substr($line, 0, 4));
            if ($verb === 'EHLO' || $verb === 'HELO') {
                $send($sock, '250 localhost');
            } elseif ($verb === 'MAIL') {
                preg_match('/<([^>]*)>/', $line, $m);
                $c['from'] = $m[1] ?? '';
                $send($sock, '250 OK');
            } elseif ($verb === 'RCPT') {
                preg_match('/<([^>]*)>/', $line, $m);
                $c['to'][] = $m[1] ?? '';
                $send($sock, '250 OK');
            } elseif ($verb === 'DATA') {
                $c['data'] = '';
                $send($sock, '354 End data with <CR><LF>.<CR><LF>');
            } elseif ($verb === 'RSET' || $verb === 'NOOP') {
                $c['from'] = '';
                $c['to'] = [];
                $send($sock, '250 OK');
            } elseif ($verb === 'QUIT') {
                $send($sock, '221 Bye');
                fclose($sock);
                unset($c, $clients[$id]);
                continue 2;
            } else {
                $send($sock, '502 Command not implemented');
            }
            unset($c);
        }
    }
}
