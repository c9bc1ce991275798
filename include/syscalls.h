/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Syscall latency: per service x syscall log2 histograms, errors by errno. Shared by bpf/syscalls.bpf.c and
 * src/collectors/syscalls.c. */
#ifndef LOUPE_SYSCALLS_H
#define LOUPE_SYSCALLS_H
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif
#include "hist.h"

/* Index space for syscall numbers; x86_64 numbers are below 512 (x32 ones, with bit 30 set, are ignored). */
#define SYSCALL_MAX_NR 512

/* --syscalls sampled: sys_enter is attached for SYSCALL_SAMPLE_ON_MS of every SYSCALL_SAMPLE_PERIOD_MS. */
#define SYSCALL_SAMPLE_PERIOD_MS 10000
#define SYSCALL_SAMPLE_ON_MS 1000

/* Key of syscall_errors: one counter per (service, syscall, errno). */
struct syscall_err_key {
	__u16 service;
	__u16 nr;
	__u16 err;
	__u16 pad;
};

/* Per-thread start of the syscall in flight (task local storage). */
struct syscall_start {
	__u64 ts;
	__u32 nr;
	__u32 window; /* window_seq when it began: a start left by an earlier window is not this call's */
};

enum syscall_drop {
	SYSCALL_DROP_ERRMAP_FULL, /* syscall_errors full: an error was not counted */
	SYSCALL_DROP_STORAGE,     /* no task storage: a syscall was not timed */
	SYSCALL_DROP_NR,
};

#endif
