/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* CPU samples and off-CPU time of target threads. Shared by bpf/profiler.bpf.c and src/collectors/profiler.c. */
#ifndef LOUPE_PROFILER_H
#define LOUPE_PROFILER_H
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define PROF_STACK_MAX 127 /* frames per stack (the kernel's default perf_event_max_stack) */

enum prof_rec_type {
	REC_PROF_SAMPLE = 48, /* a cpu-clock sample of a target thread: its stacks */
	REC_PROF_OFFCPU = 49, /* a target thread ran again after blocking: how long, and where it blocked */
	REC_PROF_SESSION = 50, /* a sample of an on-demand session's perf events */
};

/* Off-CPU state of a blocked target thread (task storage): when and where it blocked, and its CPU time then. */
struct offcpu_start {
	__u64 ts_ns;
	__u64 runtime_ns; /* the thread's se.sum_exec_runtime when it blocked */
	__s32 ustack_id;  /* ids in the prof_stacks map (< 0: the helper's error) */
	__s32 kstack_id;
};

/* prof_rec.flags */
#define PROF_REC_LATE 1 /* OFFCPU: the hook did not see the switch-in; valued at the next switch-out (see bpf) */

/* One record. SAMPLE: stacks are instruction pointers, leaf first, the lengths in bytes (< 0: the helper's
 * error). OFFCPU: the stacks are in prof_stacks under ustack_id and kstack_id, taken when the thread blocked. */
struct prof_rec {
	__u32 type;
	__u32 service;
	__u32 tgid;
	__u32 tid;
	__u64 ts_ns;
	__u64 value_ns; /* OFFCPU: time blocked */
	__s32 ustack_bytes;
	__s32 kstack_bytes;
	__s32 ustack_id;
	__s32 kstack_id;
	__u32 flags; /* PROF_REC_* */
	__u32 pad;
	char comm[16];
	__u64 ustack[PROF_STACK_MAX];
	__u64 kstack[PROF_STACK_MAX];
};

enum prof_drop {
	PROF_DROP_RINGBUF,  /* a record did not fit in the ring buffer */
	PROF_DROP_STORAGE,  /* no task storage for a blocked thread's switch-out time */
	PROF_DROP_NR,
};

#endif
