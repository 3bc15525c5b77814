"""Mutation fuzzing of the .gzw loaders inside CI (a few thousand cases, well under a minute): hypothesis over
random byte edits of valid files. Both readers must reject with WeightsFormatError or accept, agree with each
other, never crash; accepted models must run. tools/fuzz_weights.py runs the same check over >= 100,000
cases outside CI."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gazecrop import weights
from gazecrop._testing import inverted_residual_net, random_network, readers_agree, with_head_map

from _native_helpers import core

SEEDS = [weights.to_bytes(random_network(np.random.default_rng(s), max_blocks=2, max_layers=2)) for s in range(3)]
# format version 2: depthwise_conv2d, add, ReLU6, every padding mode, model name and version
SEEDS += [weights.to_bytes(inverted_residual_net(np.random.default_rng(s), stages=2, max_channels=9)) for s in range(2)]
# format version 3: a head map (a second output)
SEEDS += [weights.to_bytes(with_head_map(inverted_residual_net(np.random.default_rng(7), stages=2, max_channels=9),
                                         np.random.default_rng(8)))]

edit = st.tuples(st.floats(0, 1, exclude_max=True), st.sampled_from(["xor", "byte", "u32", "f32", "cut", "insert"]),
                 st.integers(0, 2**32 - 1))


def _apply(data: bytes, edits, refresh: bool) -> bytes:
    b = bytearray(data)
    for frac, kind, v in edits:
        if not b:
            break
        pos = int(frac * len(b))
        p4 = pos & ~3
        if kind == "xor":
            b[pos] ^= 1 << (v % 8)
        elif kind == "byte":
            b[pos] = v & 0xFF
        elif kind == "u32" and p4 + 4 <= len(b):
            struct.pack_into("<I", b, p4, v if v % 3 else v % 300)
        elif kind == "f32" and p4 + 4 <= len(b):
            struct.pack_into("<f", b, p4, [float("nan"), float("inf"), 0.0, -1e30, 1e-40][v % 5])
        elif kind == "cut":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = bytes([v & 0xFF]) * (1 + v % 64)
    if refresh and len(b) >= 144:
        struct.pack_into("<Q", b, 32, len(b))
        b[-12:] = b"\0\0\0\0GZWEND\0\0"
        struct.pack_into("<I", b, len(b) - 16, zlib.crc32(bytes(b[:-16])) & 0xFFFFFFFF)
    return bytes(b)


@pytest.mark.parametrize("seed_index", range(len(SEEDS)))
@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(edits=st.lists(edit, min_size=1, max_size=4), refresh=st.booleans())
def test_mutated_files_rejected_cleanly(seed_index, edits, refresh):
    readers_agree(core, _apply(SEEDS[seed_index], edits, refresh))
