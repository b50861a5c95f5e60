#!/usr/bin/env python3
# bench/cmp.py ROUNDS RUNS name=cmd ...: interleaved hyperfine rounds (one round
# of each command in turn, hyperfine -N -i, 2 warm-up runs), then the median of
# the pooled samples of each, its interquartile range and its ratio to the first
# command. For comparing variants on a shared, noisy machine (bench/NOTES.md).
import json, subprocess, sys, statistics, tempfile, os
rounds, runs = int(sys.argv[1]), int(sys.argv[2])
cmds = [a.split('=',1) for a in sys.argv[3:]]
times = {n: [] for n,_ in cmds}
for r in range(rounds):
    for n,c in cmds:
        with tempfile.NamedTemporaryFile(suffix='.json') as f:
            subprocess.run(['hyperfine','-N','-i','--warmup','2','--runs',str(runs),'--export-json',f.name,c],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL,check=True)
            times[n] += json.load(open(f.name))['results'][0]['times']
base = statistics.median(times[cmds[0][0]])
for n,c in cmds:
    m = statistics.median(times[n]); q = statistics.quantiles(times[n], n=4)
    print(f"{n:28s} {m*1000:7.2f} ms  IQR {q[0]*1000:6.2f}-{q[2]*1000:6.2f}  x{m/base:5.2f}")
