#!/usr/bin/env bash
# LeakSanitizer check of the native core (tools/leak_check.cpp built with -fsanitize=address) over calls
# dumped by the library soak (python benchmarks/soak.py --scenario library writes them):
#   tools/leak_check.sh MODEL.gzw CALLS.bin [THREADS [ROUNDS]]
# Exit status non-zero on a leak (LeakSanitizer's report on stderr), a mismatch or an unrefused bad call.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 MODEL.gzw CALLS.bin [THREADS [ROUNDS]]" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash "$root/tools/build_sanitized_driver.sh" address "$root/tools/leak_check.cpp" "$tmp/leak_check"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 "$tmp/leak_check" "$1" "$2" "${3:-4}" "${4:-3}"
