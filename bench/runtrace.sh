#!/bin/bash
# bench/runtrace.sh BIN STORE N OUT: N runs of `BIN --root STORE run
# --network none bb /bin/true`, each under a light `perf record -a -k
# CLOCK_MONOTONIC` (exec, fork and exit of every process; the syscalls
# pivot_root, accept4, recvmsg, sendmsg, clone, fsync, exit_group, waitid,
# kill), appended as text to OUT.all. bench/runseg.py turns that into the
# launch's segments. Root only; the timings are inflated a little by the
# tracing, their order is not. Interleave variants (a few runs of each in
# turn) and compare medians.
bin=$(readlink -f "$1")
ev=sched:sched_process_exec,sched:sched_process_exit,sched:sched_process_fork
for s in pivot_root accept4 recvmsg sendmsg clone fsync exit_group waitid kill; do ev=$ev,syscalls:sys_enter_$s,syscalls:sys_exit_$s; done
for i in $(seq "$3"); do
	perf record -q -a -k CLOCK_MONOTONIC -o "$4.data" -e "$ev" -- "$bin" --root "$2" run --network none bb /bin/true >/dev/null 2>&1
	echo "RUNSTART $bin" >>"$4.all"
	perf script -i "$4.data" -F comm,pid,tid,time,event,trace 2>/dev/null | grep -v '^ *perf' >>"$4.all"
	echo RUNEND >>"$4.all"
done
rm -f "$4.data"
