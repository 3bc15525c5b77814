#!/usr/bin/env bash
# Builds gazecrop._core with AddressSanitizer + UndefinedBehaviorSanitizer (-DGAZECROP_SANITIZE=ON, UBSan
# non-recoverable: any report aborts) and runs the test suite against it, plus the C++ fuzz driver on a few
# thousand mutations. The sanitized module is loaded in place of the installed one (an editable install's
# import hook is bypassed for this process only). Usage: tools/run_sanitized_tests.sh [pytest args...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build/asan"
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGAZECROP_SANITIZE=ON \
  -DGAZECROP_BUILD_PYTHON=ON -DGAZECROP_BUILD_FUZZ=ON -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
cd "$root"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
PYTHONPATH="$root/python" python3 -c "import sys; sys.path.insert(0, '$root/tests'); from gazecrop import weights, _testing; import numpy as np; weights.write_weights('$build/seed.gzw', _testing.random_network(np.random.default_rng(0))); weights.write_weights('$build/seed_ir.gzw', _testing.inverted_residual_net(np.random.default_rng(0), stages=2, max_channels=9)); weights.write_weights('$build/seed_v3.gzw', _testing.with_head_map(_testing.inverted_residual_net(np.random.default_rng(1), stages=2, max_channels=9), np.random.default_rng(2))); weights.write_weights('$build/seed_int8.gzw', _testing.with_int8_trunk(_testing.inverted_residual_net(np.random.default_rng(3), stages=2, max_channels=9), np.random.default_rng(4))); weights.write_weights('$build/seed_int8_dense.gzw', _testing.with_int8_trunk(_testing.student_like(0, stem=8, blocks=(((4, 8),) * 2, ((4, 8),) * 2), readout=(4,), input_long_side=64), np.random.default_rng(5)))"
"$build/fuzz_weights" --mutate 5000 "$build/seed.gzw" 7
"$build/fuzz_weights" --mutate 3000 "$build/seed_ir.gzw" 8  # version 2: fused inverted residuals
"$build/fuzz_weights" --mutate 3000 "$build/seed_v3.gzw" 9  # version 3: a head map
"$build/fuzz_weights" --mutate 3000 "$build/seed_int8.gzw" 10  # version 3: an int8 trunk
"$build/fuzz_weights" --mutate 3000 "$build/seed_int8_dense.gzw" 11  # version 3: a DenseNet's int8 trunk
LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
python3 - "$build" "$@" <<'PY'
import sys
build = sys.argv[1]
# drop editable-install import hooks so that gazecrop._core comes from the sanitized build
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
import gazecrop
gazecrop.__path__.insert(0, build)
import gazecrop._core as c
assert c.__file__.startswith(build), c.__file__
print("sanitized module:", c.__file__, "kernel set:", c.kernel_set(), flush=True)
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *(sys.argv[2:] or ["tests"])]))
PY
