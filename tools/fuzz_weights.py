#!/usr/bin/env python3
"""Mutation fuzzer for the .gzw loaders (outside CI): random byte edits of valid files, fed to the native
loader (gazecrop._core) and the Python reader (gazecrop.weights). Passes when nothing crashes, every
rejection is a WeightsFormatError (ValueError), both readers accept exactly the same files, and every
accepted model runs (or refuses a too-small image with ValueError).

    python tools/fuzz_weights.py --cases 100000 [--seed 0]

The CRC is refreshed after most mutations so that the checks behind the checksum are reached. For a
sanitizer run of the same idea, build cpp/fuzz/fuzz_weights with -DGAZECROP_SANITIZE=ON -DGAZECROP_BUILD_FUZZ=ON.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
import zlib

import numpy as np

from gazecrop import _core, weights
from gazecrop._testing import (inverted_residual_net, random_network, readers_agree, student_like, with_head_map,
                               with_int8_trunk)

INTERESTING = [0, 1, 2, 3, 7, 8, 9, 13, 16, 27, 63, 64, 65, 255, 256, 4096, 65536, 0x7FFFFFFF, 0x80000000,
               0xFFFFFFFF, 0xFFFFFFFE]
FLOATS = [0.0, -0.0, 1e30, -1e30, 1e-30, 0.5, float("nan"), float("inf"), -float("inf")]


def seeds() -> list:
    nets = [random_network(np.random.default_rng(s), max_blocks=2, max_layers=2) for s in range(4)]
    nets.append(student_like(0, stem=8, blocks=(((4, 8),) * 2, ((4, 8),) * 2, ((4, 8),) * 2), readout=(4,)))
    # format version 2 (depthwise_conv2d, add, ReLU6, every padding mode, model name and version)
    nets += [inverted_residual_net(np.random.default_rng(s), stages=2, max_channels=9) for s in range(4)]
    # format version 3: a head map (a second output) on a random value
    nets += [with_head_map(nets[s], np.random.default_rng(10 + s)) for s in (0, 4, 5, 6)]
    # format version 3: an int8 trunk (with and without a head map)
    nets += [with_int8_trunk(nets[s], np.random.default_rng(20 + s)) for s in (5, 6, 11)]
    # a DenseNet's int8 trunk: pools and dense blocks (the student-like net, and one with a head map)
    nets += [with_int8_trunk(nets[s], np.random.default_rng(30 + s)) for s in (4, 10)]
    return [weights.to_bytes(n) for n in nets]


def fix(buf: bytearray, rng: np.random.Generator) -> None:
    if len(buf) < 144 or rng.random() < 0.1:
        return
    if rng.random() < 0.5:  # keep file_size / trailer consistent after length changes
        struct.pack_into("<Q", buf, 32, len(buf))
        buf[-12:] = b"\0\0\0\0GZWEND\0\0"
    struct.pack_into("<I", buf, len(buf) - 16, zlib.crc32(bytes(buf[:-16])) & 0xFFFFFFFF)


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        if not b:
            break
        pos = int(rng.integers(0, len(b)))
        kind = int(rng.integers(0, 8))
        p4 = pos & ~3
        if kind == 0:
            b[pos] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            b[pos] = int(rng.integers(0, 256))
        elif kind == 2 and p4 + 4 <= len(b):
            struct.pack_into("<I", b, p4, INTERESTING[int(rng.integers(0, len(INTERESTING)))])
        elif kind == 3 and p4 + 4 <= len(b):
            struct.pack_into("<I", b, p4, int(rng.integers(0, 300)))
        elif kind == 4:
            del b[int(rng.integers(0, len(b) + 1)):]
        elif kind == 5:
            b[pos:pos] = bytes([int(rng.integers(0, 256))]) * int(rng.integers(1, 65))
        elif kind == 6 and p4 + 4 <= len(b):
            struct.pack_into("<f", b, p4, FLOATS[int(rng.integers(0, len(FLOATS)))])
        elif kind == 7 and p4 + 4 <= len(b) and len(b) > 200:  # copy a 4-byte field from elsewhere
            src = int(rng.integers(0, len(b) - 4)) & ~3
            b[p4:p4 + 4] = b[src:src + 4]
    fix(b, rng)
    return bytes(b)


def check(data: bytes) -> bool:
    """Feeds one file to both readers; returns whether it was accepted. Raises AssertionError on a bug."""
    return readers_agree(_core, data)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    corpus = seeds()
    accepted = 0
    t0 = time.time()
    for i in range(args.cases):
        data = mutate(corpus[i % len(corpus)], rng)
        try:
            accepted += check(data)
        except AssertionError as e:
            path = f"fuzz-failure-{args.seed}-{i}.gzw"
            with open(path, "wb") as f:
                f.write(data)
            print(f"case {i}: {e} (saved {path})", file=sys.stderr)
            return 1
        if (i + 1) % 10000 == 0:
            print(f"{i + 1} cases, {accepted} accepted, {time.time() - t0:.0f} s", flush=True)
    print(f"fuzz_weights.py: {args.cases} cases, {accepted} accepted, 0 crashes, readers agree "
          f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
