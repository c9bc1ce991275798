/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Target processes: which tgids belong to which service. Shared by bpf/targets.bpf.c and src/collectors/targets.c. */
#ifndef LOUPE_TARGETS_H
#define LOUPE_TARGETS_H
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Service ids are 1-based in maps (0 = not a target). */
#define LOUPE_MAX_SERVICES 16

/* Literal comm rules (comm:^name$) that BPF applies itself at exec, so such a process is a target from its first
 * syscall instead of after userspace has read /proc (~100 us later). */
#define LOUPE_EXEC_COMMS 8
#define LOUPE_COMM_LEN 16

/* Ring-buffer record types; every record starts with __u32 type. */
enum loupe_rec_type {
	REC_TARGET_EXEC = 1, /* any exec on the host: userspace classifies it */
	REC_TARGET_FORK = 2, /* a target forked a new process, which inherited its service */
	REC_TARGET_EXIT = 3, /* the last thread of a target exited */
};

struct target_rec {
	__u32 type;
	__u32 tgid;
	__u32 service;  /* FORK/EXIT: the service; EXEC: the service it had before exec (0 if none) */
	__u32 ppid;     /* FORK: parent tgid */
	__u64 start_ns; /* task->start_boottime of the group leader: /proc/PID/stat starttime in ns */
};

/* Value of the target_procs hash (tgid -> info); the hot path uses the target_svc array instead. */
struct target_info {
	__u32 service;
	__u32 flags;
	__u64 start_ns;
};

enum target_drop {
	TARGET_DROP_RINGBUF,  /* ring buffer full: an exec/fork/exit record was lost */
	TARGET_DROP_MAP_FULL, /* target_procs full: a forked child could not be tracked */
	TARGET_DROP_NR,
};

#endif
