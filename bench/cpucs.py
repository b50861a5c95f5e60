#!/usr/bin/env python3
# bench/cpucs.py ROUNDS RUNS name=cmd ...: bench/cpu.py's interleaved
# `perf stat -r RUNS` rounds, with context switches and CPU migrations
# too (the command and every process it starts), and the median over the
# rounds of each command's CPU time divided by the first command's in the
# same round (with its quartiles): on a machine loaded in bursts by
# others, the per-round ratio moves less than either median.
import subprocess, sys, statistics
R,N=int(sys.argv[1]),int(sys.argv[2]); cmds=[a.split('=',1) for a in sys.argv[3:]]
ev=['task-clock','context-switches','cpu-migrations']
res={n:{e:[] for e in ev} for n,_ in cmds}
for r in range(R):
    for n,c in cmds:
        p=subprocess.run(['perf','stat','-r',str(N),'-x,','-e',','.join(ev),'--']+c.split(),stdout=subprocess.DEVNULL,stderr=subprocess.PIPE,text=True)
        for line in p.stderr.splitlines():
            f=line.split(',')
            for e in ev:
                if len(f)>2 and f[2].startswith(e): res[n][e].append(float(f[0]))
b=statistics.median(res[cmds[0][0]]['task-clock'])
for n,_ in cmds:
    m={e:statistics.median(res[n][e]) for e in ev}
    rr=sorted(x/y for x,y in zip(res[n]['task-clock'],res[cmds[0][0]]['task-clock']))
    print(f"{n:12s} cpu {m['task-clock']:7.2f} ms x{m['task-clock']/b:5.3f}  per-round ratio {statistics.median(rr):.3f} (q1-q3 {rr[len(rr)//4]:.3f}-{rr[3*len(rr)//4]:.3f})  switches {m['context-switches']:6.1f}  migrations {m['cpu-migrations']:5.1f}")
