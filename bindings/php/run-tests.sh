#!/usr/bin/env bash
# Builds the C library and runs the PHP binding's tests and examples.
# Installs php-cli and phpunit with apt-get when they are missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

if ! command -v php >/dev/null 2>&1 || ! command -v phpunit >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y php-cli phpunit
fi

# PDO drivers for the ChunkedDatabaseProcessor tests (PDO connections, table setup).
missing=""
for pair in pdo_sqlite:php-sqlite3 pdo_pgsql:php-pgsql pdo_mysql:php-mysql; do
    php -r "exit(extension_loaded('${pair%%:*}') ? 0 : 1);" || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
    $sudo apt-get update
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
fi

php -r 'exit(extension_loaded("ffi") ? 0 : 1);' || {
    echo "run-tests.sh: PHP's FFI extension is not loaded (php -m | grep FFI)" >&2
    exit 1
}

cargo build --release -p memwarden-ffi

phpunit -c bindings/php/phpunit.xml

status=0
for example in bindings/php/examples/*.php; do
    echo "== php $example"
    if ! php "$example"; then
        echo "run-tests.sh: example failed: $example" >&2
        status=1
    fi
done
exit "$status"
