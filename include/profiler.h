/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* CPU samples and off-CPU time of target threads. Shared by bpf/profiler.bpf.c and src/collectors/profiler.c. */
#ifndef LOUPE_PROFILER_H
#define LOUPE_PROFILER_H
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#include "unwind.h"

#define PROF_STACK_MAX 127 /* frames per stack (the kernel's default perf_event_max_stack) */

enum prof_rec_type {
	REC_PROF_SAMPLE = 48, /* a cpu-clock sample of a target thread: its stacks */
	REC_PROF_OFFCPU = 49, /* a target thread ran again after blocking: how long, and where it blocked */
	REC_PROF_SESSION = 50, /* a sample of an on-demand session's perf events */
};

/* prof_rec.flags */
#define PROF_REC_LATE 1	     /* OFFCPU: the switch-in was not seen; valued at the next switch-out or exit (bpf) */
#define PROF_REC_UW_TABLES 2 /* the user stack was unwound with the process's rules (include/unwind.h), not only
				frame pointers */
#define PROF_REC_UW_MISS 4   /* an address in no mapping the rules know: the process's mappings changed */
#define PROF_REC_UW_CUT 8    /* the unwind stopped early (a rule not evaluated, a bad read): the stack is partial */
#define PROF_REC_PY_NOTHREAD 16 /* a CPython process, but the thread's state was not found */

/* One record. Stacks are instruction pointers, leaf first, the lengths in bytes (< 0: the helper's error); user
 * frames come from the unwinder (flags say how), kernel frames from bpf_get_stack(). SAMPLE and SESSION: taken at
 * the sample. OFFCPU: taken when the thread blocked, sent when it ran again. py[0 .. py_n) are the thread's
 * CPython frames, innermost first; bit i of py_entry: py[i] is the first frame of a _PyEval_EvalFrameDefault
 * call (include/unwind.h). A record is sent up to py[py_n]: its size is prof_rec_size(py_n). */
struct prof_rec {
	__u32 type;
	__u32 service;
	__u32 tgid;
	__u32 tid;
	__u64 ts_ns;
	__u64 value_ns; /* OFFCPU: time blocked */
	__s32 ustack_bytes;
	__s32 kstack_bytes;
	__u32 flags; /* PROF_REC_* */
	__u32 py_n;
	__u64 py_entry;
	char comm[16];
	__u64 ustack[PROF_STACK_MAX];
	__u64 kstack[PROF_STACK_MAX];
	struct prof_pyframe py[PY_FRAMES_MAX];
};
#define prof_rec_size(py_n) (__builtin_offsetof(struct prof_rec, py) + (py_n) * sizeof(struct prof_pyframe))

/* Off-CPU state of a blocked target thread (task storage): when it blocked, its CPU time then, and the record
 * that will be sent when it runs again (its stacks, taken when it blocked). */
struct offcpu_start {
	__u64 ts_ns;
	__u64 runtime_ns; /* the thread's se.sum_exec_runtime when it blocked */
	struct prof_rec rec;
};

enum prof_drop {
	PROF_DROP_RINGBUF,  /* a record did not fit in the ring buffer */
	PROF_DROP_STORAGE,  /* no task storage for a blocked thread's switch-out time */
	PROF_DROP_SCRATCH,  /* no per-CPU scratch record (cannot happen: counted to be sure) */
	PROF_DROP_NR,
};

#endif
