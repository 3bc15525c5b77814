#!/usr/bin/env bash
# Builds the core's sources with -fsanitize=thread together with tools/tsan_check.cpp and runs it on a
# student-sized random network (a data race or a result differing from the serial run fails).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash "$root/tools/build_sanitized_driver.sh" thread "$root/tools/tsan_check.cpp" "$tmp/tsan_check"
PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}" python3 -c "from gazecrop import weights, _testing; weights.write_weights('$tmp/m.gzw', _testing.student_like(0))"
TSAN_OPTIONS=halt_on_error=1 "$tmp/tsan_check" "$tmp/m.gzw"
