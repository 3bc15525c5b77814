#!/usr/bin/env bash
# gazecrop speed gates and benchmark suites.
#
#   bash benchmarks/gates.sh --quick   # CI: the three speed gates, quick round counts (a few minutes on 2 cores),
#                                      # and the fairness gate (benchmarks/fairness.py --gate, about 2 minutes)
#   bash benchmarks/gates.sh           # the same gates with the full round counts
#   bash benchmarks/gates.sh --all     # everything behind benchmarks/RESULTS.md: the pytest-benchmark suites,
#                                      # the gates (full), the quality script, the kernel-set comparison
#                                      # (kernel_sets.py), the heads-cut measure (head_cuts.py), the crop
#                                      # table (crop_quality.py), the full fairness audit (2 x 2,000 pairs per
#                                      # comparison, checked against its targets), the soak tests
#                                      # (benchmarks/soak.py; thumbor's with THUMBOR_PYTHON set), then the report
#
# Gates compare ratios measured interleaved within one process (benchmarks/gates.py). A method whose package
# is not installed is skipped with a message (install the `bench` extra: pip install ".[bench]"); a missing
# trained model is replaced by a random-weight stand-in of the intended size, and the output says so.
# Exit status: non-zero when a gate fails.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=full
case "${1:-}" in
  --quick) mode=quick ;;
  --all) mode=all ;;
  "") ;;
  -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
  *) echo "usage: bash benchmarks/gates.sh [--quick|--all]" >&2; exit 2 ;;
esac
py=${PYTHON:-python3}
command -v "$py" >/dev/null 2>&1 || py=python
# One thread per library unless a method says otherwise (harness.py sets the same defaults).
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 VIPS_CONCURRENCY=1
# A source checkout that is not installed: use its python/ folder (harness.py finds the built core in build/).
if ! "$py" -c "import gazecrop" >/dev/null 2>&1; then
  export PYTHONPATH="$(pwd)/python${PYTHONPATH:+:$PYTHONPATH}"
fi
missing=$("$py" - <<'PY'
import importlib.util as u
mods = {"torch": "torch", "onnxruntime": "onnxruntime", "onnx": "onnx", "pyvips": "pyvips",
        "cv2": "opencv-contrib-python-headless", "smartcrop": "smartcrop", "pytest_benchmark": "pytest-benchmark",
        "efficientnet_lite_pytorch": "efficientnet-lite-pytorch"}
print(" ".join(p for m, p in mods.items() if u.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
  echo "gates.sh: not installed: $missing -> the methods needing them are skipped (pip install \".[bench]\")"
fi
# The fairness audit skips (exit 0, with the reason) when ../shared/data/faces is absent.
case "$mode" in
  quick|full)
    status=0
    "$py" benchmarks/gates.py $([ "$mode" = quick ] && echo --quick) || status=$?
    "$py" benchmarks/fairness.py --gate --quiet || status=$?
    exit $status ;;
  all)
    out=benchmarks/results
    mkdir -p "$out"
    "$py" -m pytest benchmarks/ -p no:cacheprovider -k "not gate" --benchmark-json="$out/suites.json" \
      --benchmark-columns=min,median,mean,iqr,rounds --benchmark-sort=mean
    status=0
    "$py" benchmarks/gates.py --json "$out/gates.json" || status=$?
    "$py" benchmarks/quality.py --json "$out/quality.json"
    "$py" benchmarks/thumbor_agreement.py --json "$out/thumbor.json"
    "$py" benchmarks/batch_throughput.py --json "$out/batch.json" || status=$?  # skips engines not installed
    "$py" benchmarks/kernel_sets.py --json "$out/kernel_sets.json"
    "$py" benchmarks/crop_quality.py --model weights/gazecrop-fast.gzw --splits val train --explore --time \
      --md benchmarks/crop_quality.md --json "$out/crop_quality.json"
    "$py" benchmarks/head_cuts.py --model weights/gazecrop-fast.gzw --json "$out/head_cuts.json"
    "$py" benchmarks/fairness.py --targets --quiet --json "$out/fairness.json" --draws "$out/fairness_draws.csv.gz" \
      || status=$?
    # soak tests (benchmarks/soak.py, full run: tens of minutes on 2 cores); thumbor's scenario needs an
    # interpreter with thumbor installed (it pins Pillow<13): THUMBOR_PYTHON=/path/to/venv/bin/python
    "$py" benchmarks/soak.py --scenario library --json "$out/soak_library.json" || status=$?
    "$py" benchmarks/soak.py --scenario batch --json "$out/soak_batch.json" || status=$?
    if [ -n "${THUMBOR_PYTHON:-}" ]; then
      "$THUMBOR_PYTHON" benchmarks/soak.py --scenario thumbor --json "$out/soak_thumbor.json" || status=$?
    fi
    "$py" benchmarks/report.py --soak "$out/soak_thumbor.json" "$out/soak_library.json" "$out/soak_batch.json"
    "$py" benchmarks/report.py --suites "$out/suites.json" --gates "$out/gates.json" --quality "$out/quality.json" \
      --thumbor "$out/thumbor.json" --batch "$out/batch.json" --kernel-sets "$out/kernel_sets.json" \
      --crop "$out/crop_quality.json" --fairness "$out/fairness.json" --head-cuts "$out/head_cuts.json"
    exit $status ;;
esac
