"""pytest configuration of gazecrop's benchmark suites (``benchmarks/test_*.py``).

- Imports :mod:`harness` first, so every library starts on one thread.
- Without pytest-benchmark installed, the ``benchmark`` fixture skips (the gate tests still run: they time
  with :func:`harness.interleaved`, not with pytest-benchmark).
- ``GAZECROP_BENCH_QUICK=1`` (set by ``benchmarks/gates.sh --quick``) runs the gates with the quick round
  counts of :data:`gates.ROUNDS`.
- The gate reports are printed at the end of the session.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import harness  # noqa: E402,F401 - one-thread environment before numpy / torch load
import pytest  # noqa: E402

GATE_REPORTS: list = []

try:
    import pytest_benchmark  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    @pytest.fixture
    def benchmark():
        pytest.skip("pytest-benchmark is not installed (`pip install \".[bench]\"`)")


def rounds(gate: str) -> int:
    import gates

    return gates.ROUNDS["quick" if os.environ.get("GAZECROP_BENCH_QUICK") == "1" else "full"][gate]


def run_gate(gate: str) -> dict:
    """Run one gate of :mod:`gates`, keep its report for the summary, skip when it cannot be checked here,
    else assert it passed."""
    import gates

    r = gates.GATES[gate](rounds=rounds(gate))
    text = gates.format_result(r)
    GATE_REPORTS.append(text)
    if r["gate"].get("passed") is None:
        pytest.skip(f"gate {gate} not checked: {r['gate'].get('skipped', '')}")
    assert r["gate"]["passed"], "\n" + text
    return r


def pytest_terminal_summary(terminalreporter):
    if GATE_REPORTS:
        terminalreporter.section("gazecrop speed gates")
        for text in GATE_REPORTS:
            terminalreporter.write_line(text)
