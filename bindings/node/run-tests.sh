#!/usr/bin/env bash
# Builds the Node addon and runs its tests. Exits non-zero on any failure, including
# generated typings (index.d.ts) or loader (index.js) that differ from the committed ones.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

# Install when node_modules is missing or older than the lock file (a dependency was added).
# `npm ci` fails on this platform (other platforms' optional packages are not served).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
fi

npm run build

# The generated files are committed; a build must reproduce them exactly.
if git ls-files --error-unmatch index.d.ts index.js >/dev/null 2>&1; then
  if ! git diff --exit-code -- index.d.ts index.js; then
    echo "error: the generated typings are stale: index.d.ts / index.js changed on rebuild; commit them" >&2
    exit 1
  fi
else
  echo "note: index.d.ts / index.js are not tracked by git yet; skipping the staleness check"
fi

# With --expose-gc, so the 'v8-gc' hook and the collection tests run in-process; the test of
# the hook's absence without --expose-gc starts child processes of its own.
node --expose-gc --test test/
