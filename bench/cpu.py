#!/usr/bin/env python3
# bench/cpu.py ROUNDS RUNS name=cmd ...: interleaved `perf stat -r RUNS -e
# task-clock` rounds, one of each command in turn; prints the median over
# the rounds of the mean CPU time (ms; the command and every process it
# starts) and its ratio to the first command. On a machine loaded by
# others, CPU time swings less than wall time (bench/NOTES.md).
import subprocess, sys, statistics
R,N=int(sys.argv[1]),int(sys.argv[2]); cmds=[a.split('=',1) for a in sys.argv[3:]]
cpu={n:[] for n,_ in cmds}
for r in range(R):
    for n,c in cmds:
        p=subprocess.run(['perf','stat','-r',str(N),'-x,','-e','task-clock','--']+c.split(),stdout=subprocess.DEVNULL,stderr=subprocess.PIPE,text=True)
        for line in p.stderr.splitlines():
            f=line.split(',')
            if len(f)>2 and f[2].startswith('task-clock'): cpu[n].append(float(f[0]))
b=statistics.median(cpu[cmds[0][0]])
for n,_ in cmds:
    m=statistics.median(cpu[n]); print(f"{n:24s} cpu {m:7.2f} ms  x{m/b:5.2f}  (rounds: {' '.join(f'{x:.2f}' for x in cpu[n])})")
