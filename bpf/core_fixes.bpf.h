/* SPDX-License-Identifier: GPL-2.0 */
/* CO-RE shims: one place for differences between kernel versions. */
#ifndef LOUPE_CORE_FIXES_BPF_H
#define LOUPE_CORE_FIXES_BPF_H
#include <bpf/bpf_core_read.h>

/* Threads still alive in p's thread group. do_exit() decrements signal->live before it fires
 * trace_sched_process_exit (kernel/exit.c, unchanged since 2.6), so 0 here means p is the last thread. */
static __always_inline int task_group_live(struct task_struct *p)
{
	return BPF_CORE_READ(p, signal, live.counter);
}

/* Boot-based start time of the thread group leader, as /proc/PID/stat reports it (in ns). The field was
 * real_start_time before Linux 5.5 (commit cf25e24db61c "time: Rename tsk->real_start_time to ->start_boottime"). */
struct task_struct___pre55 {
	__u64 real_start_time;
};

static __always_inline __u64 task_start_ns(struct task_struct *p)
{
	struct task_struct *leader = BPF_CORE_READ(p, group_leader);
	if (bpf_core_field_exists(leader->start_boottime))
		return BPF_CORE_READ(leader, start_boottime);
	return BPF_CORE_READ((struct task_struct___pre55 *)leader, real_start_time);
}

#endif
