"""Suite 1, model speed-up: the vanilla teacher member vs the pruned and the unpruned student, all in
PyTorch on one thread, each at its own input size for the same 1024x768 photo (teacher 384x512, student
192x256); forward pass only. Gate (measured interleaved in one run): ``time(teacher) / time(pruned) >= 10``.
Val AUC-Judd from the model cards is recorded beside each time (``extra_info``; ``n/a`` before a card exists).
"""

from __future__ import annotations

import pytest

import harness as H
import methods as M
from conftest import run_gate

ROUNDS = {M.TEACHER: 10, M.PRUNED_TORCH: 60, M.UNPRUNED_TORCH: 40, M.SHIPPED_TORCH: 40}


@pytest.fixture(scope="module")
def suite():
    paths, _ = H.photo_paths(1)
    return M.model_speed_methods(paths[0])


@pytest.mark.parametrize("method", [M.TEACHER, M.UNPRUNED_TORCH, M.PRUNED_TORCH, M.SHIPPED_TORCH])
def test_model_speed(benchmark, suite, method):
    fns, skipped, info = suite
    if method not in fns:
        pytest.skip(skipped.get(method, "no interim model: the shipped default is the pruned student"))
    benchmark.group = "1 model speed-up: PyTorch, 1 thread, 1024x768 photo at each model's input size"
    i = info[method]
    benchmark.extra_info.update(label=i["label"], standin=i["standin"], input="x".join(map(str, i["input"])),
                                macs=i.get("macs"), val_auc_judd=i.get("auc"))
    benchmark.pedantic(fns[method], rounds=ROUNDS[method], warmup_rounds=2)


def test_gate_teacher_over_pruned_student_at_least_10x():
    run_gate("model")
