#!/usr/bin/env python3
# bench/runseg.py FILE.all...: the segments of each run bench/runtrace.sh
# recorded (ms, from the CLI's exec through the init, the workload and
# back), followed down the process tree from the CLI's exec; the median
# and the minimum of each over all runs of all files.
import re,sys,statistics
def runs(fn):
    cur=[]; binp=None
    for l in open(fn):
        if l.startswith('RUNSTART'):
            binp=l.split(None,1)[1].strip(); continue
        if l.startswith('RUNEND'):
            yield binp,cur; cur=[]; continue
        m=re.match(r'\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)',l)
        if m: cur.append(m.groups())
segs={}
names=['iexec>accept','iexec>wexec','cli exec>init exec','init exec>pivot','pivot>accept','accept>recv','recv>clone','clone>wexec','wexec>wexit','wexit>init exit_group','wexit>init dead','init dead>waitid','waitid>cli exit','total']
for fn in sys.argv[1:]:
  for binp,r in runs(fn):
    t={}; cli=None; fam=set(); init=None; wl=None
    for comm,pid,tid,ts,ev,rest in r:
        ts=float(ts)*1000
        if 'process_exec' in ev and cli is None and 'filename='+binp+' ' in rest:
            cli=pid; fam.add(pid); t['cli']=ts
        if cli is None: continue
        if 'process_fork' in ev and pid in fam:
            c=re.search(r'child_pid=(\d+)',rest).group(1)
            if pid==init and wl is None and 'clone' in t: wl=c
            elif pid!=init: fam.add(c)
        if 'process_exec' in ev and '/proc/self/fd' in rest and pid in fam and init is None:
            init=pid; t['iexec']=ts
        if init is None or pid not in (cli,init,wl) and pid not in fam: continue
        if pid==init:
            if ev.endswith('sys_enter_pivot_root'): t['pivot']=ts
            if ev.endswith('sys_exit_accept4') and 'pivot' in t: t.setdefault('accept',ts)
            if ev.endswith('sys_exit_recvmsg') and 'accept' in t: t.setdefault('recv',ts)
            if ev.endswith('sys_enter_clone') and 'recv' in t and '0x00004111' in rest: t.setdefault('clone',ts)
            if ev.endswith('sys_enter_exit_group'): t.setdefault('ieg',ts)
            if 'process_exit' in ev and 'group_dead=true' in rest: t['idead']=ts
        if pid==wl:
            if 'process_exec' in ev: t['wexec']=ts
            if 'process_exit' in ev: t['wexit']=ts
        if pid==cli:
            if ev.endswith('sys_exit_waitid') and 'idead' in t: t.setdefault('waitid',ts)
            if 'process_exit' in ev and 'group_dead=true' in rest: t['cliexit']=ts
    pairs=[('iexec','accept'),('iexec','wexec'),('cli','iexec'),('iexec','pivot'),('pivot','accept'),('accept','recv'),('recv','clone'),('clone','wexec'),('wexec','wexit'),('wexit','ieg'),('wexit','idead'),('idead','waitid'),('waitid','cliexit'),('cli','cliexit')]
    for n,(a,b) in zip(names,pairs):
        if a in t and b in t: segs.setdefault(n,[]).append(t[b]-t[a])
for n in names:
    v=segs.get(n,[])
    if v: print(f"{n:24s} n={len(v):3d} median {statistics.median(v):7.3f}  min {min(v):7.3f}")
