#!/usr/bin/env bash
# Builds the C tests against libmemwarden.so and libmemwarden.a, runs both, and runs the
# dynamic build under valgrind's leak checker. Called by scripts/test.
#   tests/c/run.sh               # every tests/c/test_*.c
#   tests/c/run.sh stream pool   # only test_stream.c and test_pool.c
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
out="$root/tests/c/build"
mkdir -p "$out"
cargo build --release -p memwarden-ffi --quiet
static_libs="$(cargo rustc --release -p memwarden-ffi --quiet --crate-type staticlib -- --print native-static-libs 2>&1 \
  | sed -n 's/.*native-static-libs: //p' | tail -1)"
tests=("$root"/tests/c/test_*.c)
if [ "$#" -gt 0 ]; then
  tests=()
  for n in "$@"; do tests+=("$root/tests/c/test_${n#test_}.c"); done
fi
for t in "${tests[@]}"; do
  name="$(basename "$t" .c)"
  gcc -std=c11 -Wall -Wextra -Werror -g -I"$root/include" "$t" -L"$target/release" -lmemwarden \
    -Wl,-rpath,"$target/release" -lpthread -o "$out/$name-dynamic"
  gcc -std=c11 -Wall -Wextra -Werror -g -I"$root/include" "$t" "$target/release/libmemwarden.a" \
    ${static_libs:--lgcc_s -lutil -lrt -lpthread -lm -ldl -lc} -o "$out/$name-static"
  echo "== $name (dynamic)"; "$out/$name-dynamic"
  echo "== $name (static)"; "$out/$name-static"
  if command -v valgrind >/dev/null; then
    echo "== $name (valgrind)"
    valgrind --quiet --error-exitcode=3 --leak-check=full --show-leak-kinds=definite,indirect \
      --errors-for-leak-kinds=definite,indirect "$out/$name-dynamic"
  else
    echo "valgrind is missing: the leak check did not run" >&2
    exit 1
  fi
done

# The ffi_config fuzz corpus through the real C functions, under valgrind (issue 9).
gcc -std=c11 -Wall -Wextra -Werror -g -I"$root/include" "$root/tests/c/replay_corpus.c" -L"$target/release" \
  -lmemwarden -Wl,-rpath,"$target/release" -lpthread -o "$out/replay_corpus"
echo "== replay_corpus (valgrind)"
valgrind --quiet --error-exitcode=3 --leak-check=full --show-leak-kinds=definite,indirect \
  --errors-for-leak-kinds=definite,indirect "$out/replay_corpus" \
  "$root/fuzz/corpus/ffi_config" "$root/fuzz/regressions/ffi_config"
