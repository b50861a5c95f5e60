#!/usr/bin/env python3
# bench/gocmp.py BENCH ROUNDS N old.test new.test ...: bench/api's Go
# benchmark BENCH (e.g. RunInSandbox, SandboxExec, PoolTake) run N
# iterations at a time by each test binary in turn, ROUNDS times
# (interleaved, as bench/cmp.py does for commands), then the median of the
# pooled per-iteration samples of each binary, its interquartile range and
# its ratio to the first. Build each binary with
# `go test -c -o NAME.test ./bench/api` at the commit to compare; the
# store and snapshot come from LIGHTBOX_BENCH_ROOT and
# LIGHTBOX_BENCH_SNAPSHOT (bench/api's doc comment). A slot written
# BIN:OTHER runs benchmark OTHER instead (e.g. PoolTake beside
# PoolTakeIdle of the same binary).
import os, subprocess, sys, statistics, tempfile
rounds, n = int(sys.argv[2]), int(sys.argv[3])
slots = [(a.partition(":")[0], a.partition(":")[2] or sys.argv[1]) for a in sys.argv[4:]]
bins = sys.argv[4:]
tmp = tempfile.mkdtemp(prefix="gocmp.")
# One slot per argument: a binary given twice is measured in both slots.
samples = [os.path.join(tmp, f"{i}.samples") for i in range(len(bins))]
for _ in range(rounds):
    for i, (b, bench) in enumerate(slots):
        env = dict(os.environ, LIGHTBOX_BENCH_SAMPLES=samples[i])
        out = subprocess.run([b, "-test.run=^$", f"-test.bench=^Benchmark{bench}$", f"-test.benchtime={n}x", "-test.count=1"],
                             env=env, capture_output=True, text=True)
        if out.returncode != 0 or "--- FAIL" in out.stdout or "--- SKIP" in out.stdout or not os.path.exists(samples[i]):
            sys.exit(f"{b}: {out.stdout}{out.stderr}")
base = None
for i, b in enumerate(bins):
    xs = [int(l) / 1e6 for l in open(samples[i])]
    m = statistics.median(xs); q = statistics.quantiles(xs, n=4)
    base = base or m
    print(f"{b:28s} {m:7.3f} ms  IQR {q[0]:6.3f}-{q[2]:6.3f}  n={len(xs)}  x{m/base:5.2f}")
    os.remove(samples[i])
os.rmdir(tmp)
