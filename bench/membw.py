#!/usr/bin/env python3
# Memory read bandwidth of this machine, the ceiling of batch-1 decoding (every step streams all the weights):
# a float32 array of --gib GiB (far larger than any L3) is reduced --repeats times, split into --threads
# contiguous slices, one Python thread per slice (numpy releases the GIL inside the reduction); the best
# pass counts. Prints one JSON line, with the 1-thread figure next to the --threads one.
#
# The reduction is np.max by default: one vectorised compare per element, so it is limited by memory, not by
# arithmetic. np.sum on floats is not a good probe here: numpy's pairwise float summation runs well below the
# memory bandwidth of a modern core and did not speed up with a second thread when this script was written.
# Needs a python3 with numpy.
#   python3 bench/membw.py [--gib 1] [--threads 2] [--repeats 10] [--op max|sum-int64|dot]
import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # np.dot: one BLAS thread per slice
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

OPS = {
    "max": lambda s: s.max(),
    "sum-int64": lambda s: s.view(np.int64).sum(),  # integer adds: vectorised, no pairwise tree
    "dot": lambda s: np.dot(s, s),                  # BLAS sdot (each element read once)
}


def one_pass(op, slices):
    threads = [threading.Thread(target=op, args=(s,)) for s in slices]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def best_gbps(a, op, n_threads, repeats):
    slices = np.array_split(a, n_threads)
    one_pass(op, slices)  # warm-up
    times = [one_pass(op, slices) for _ in range(repeats)]
    return a.nbytes / min(times) / 1e9, [a.nbytes / t / 1e9 for t in times]


def main():
    ap = argparse.ArgumentParser(description="memory read bandwidth with numpy (one JSON line)")
    ap.add_argument("--gib", type=float, default=1.0, help="array size in GiB")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10, help="timed passes; the best counts")
    ap.add_argument("--op", choices=sorted(OPS), default="max")
    args = ap.parse_args()
    if args.gib <= 0 or args.threads < 1 or args.repeats < 1:
        raise SystemExit("membw.py: --gib, --threads and --repeats must be positive")
    n = int(args.gib * (1 << 30)) // 4
    n -= n % (2 * args.threads)  # equal slices of an even length (the int64 view pairs float32s)
    a = np.ones(n, dtype=np.float32)  # written once: every page is resident before timing
    op = OPS[args.op]
    gbps, runs = best_gbps(a, op, args.threads, args.repeats)
    gbps1, _ = best_gbps(a, op, 1, args.repeats) if args.threads != 1 else (gbps, runs)
    print(json.dumps({
        "impl": "numpy",
        "measure": "read_bandwidth",
        "op": args.op,
        "bytes": int(a.nbytes),
        "threads": args.threads,
        "gb_per_s": gbps,              # best pass with --threads threads, 1e9 bytes/s
        "gb_per_s_1thread": gbps1,
        "runs_gb_per_s": runs,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
    }))


if __name__ == "__main__":
    main()
