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

/* The syscall number at sys_exit, from the user registers, as the kernel's syscall_get_nr() reads it
 * (arch/x86/include/asm/syscall.h: orig_ax). libbpf's bpf_tracing.h has macros for syscall arguments but none for
 * the number, so this is the one place that names a register; another ARCH must add its field here. */
#if defined(__TARGET_ARCH_x86)
static __always_inline __u32 syscall_nr(struct pt_regs *regs, const bool btf)
{
	return btf ? (__u32)regs->orig_ax : (__u32)BPF_CORE_READ(regs, orig_ax);
}
#else
#error "syscall_nr(): only __TARGET_ARCH_x86 is supported (add the arch's syscall_get_nr() register)"
#endif

#endif
