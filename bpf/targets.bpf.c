// SPDX-License-Identifier: GPL-2.0
/* Target tracking: forked children of targets inherit the service from their first instruction, exited targets
 * are forgotten at once (so a reused pid is never mislabelled), and every exec is reported so userspace can
 * classify the new image. Each hook has a tp_btf and a raw_tp variant; userspace autoloads one set. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "bits.bpf.h"
#include "core_fixes.bpf.h"
#include "targets.bpf.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 self_tgid = 0;
/* Leading literal comm rules, in rule order (see target_rules__exec_literals()). */
const volatile __u32 n_exec_comms = 0;
const volatile char exec_comm[LOUPE_EXEC_COMMS][LOUPE_COMM_LEN] = {};
const volatile __u32 exec_comm_svc[LOUPE_EXEC_COMMS] = {};

/* Membership list with start times (iterated by userspace for loupe_targets, checked against pid reuse). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct target_info);
} target_procs SEC(".maps");

/* Processes that exited lately (tgid -> start time), whether targets or not. Userspace classifies a process
 * after it may already have exited (it is still in /proc as a zombie): it checks here after tracking it, and
 * undoes the insert, since the exit hook below has run already and will not remove it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} recent_exits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} target_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TARGET_DROP_NR);
	__type(key, __u32);
	__type(value, __u64);
} target_drops SEC(".maps");

static __always_inline void emit(__u32 type, __u32 tgid, __u32 service, __u32 ppid, __u64 start_ns)
{
	struct target_rec *r = bpf_ringbuf_reserve(&target_events, sizeof(*r), 0);
	if (!r) {
		count_drop(&target_drops, TARGET_DROP_RINGBUF);
		return;
	}
	r->type = type;
	r->tgid = tgid;
	r->service = service;
	r->ppid = ppid;
	r->start_ns = start_ns;
	bpf_ringbuf_submit(r, 0);
}

static __always_inline int on_fork(struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	if (ptgid == ctgid) /* a new thread, not a new process */
		return 0;
	__u32 svc = target_service(ptgid);
	if (!svc)
		return 0;
	struct target_info info = {.service = svc, .start_ns = task_start_ns(child)};
	if (bpf_map_update_elem(&target_procs, &ctgid, &info, BPF_ANY)) {
		count_drop(&target_drops, TARGET_DROP_MAP_FULL);
		return 0;
	}
	bpf_map_update_elem(&target_svc, &ctgid, &svc, BPF_ANY);
	emit(REC_TARGET_FORK, ctgid, svc, ptgid, info.start_ns);
	return 0;
}

static __always_inline __u32 exec_comm_match(void)
{
	char comm[LOUPE_COMM_LEN] = {};
	bpf_get_current_comm(comm, sizeof(comm)); /* already the new image's name at this tracepoint */
	for (__u32 i = 0; i < LOUPE_EXEC_COMMS; i++) {
		if (i >= n_exec_comms)
			break;
		int same = 1;
		for (int j = 0; j < LOUPE_COMM_LEN; j++) {
			if (comm[j] != exec_comm[i][j]) {
				same = 0;
				break;
			}
			if (!comm[j])
				break;
		}
		if (same)
			return exec_comm_svc[i];
	}
	return 0;
}

static __always_inline int on_exec(struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	if (tgid == self_tgid)
		return 0;
	__u64 start_ns = task_start_ns(p);
	__u32 svc = n_exec_comms ? exec_comm_match() : 0;
	if (svc) {
		struct target_info info = {.service = svc, .start_ns = start_ns};
		if (bpf_map_update_elem(&target_procs, &tgid, &info, BPF_ANY))
			count_drop(&target_drops, TARGET_DROP_MAP_FULL);
		else
			bpf_map_update_elem(&target_svc, &tgid, &svc, BPF_ANY);
	}
	emit(REC_TARGET_EXEC, tgid, target_service(tgid), 0, start_ns);
	return 0;
}

static __always_inline int on_exit(struct task_struct *p)
{
	if (task_group_live(p) > 0) /* not the last thread */
		return 0;
	__u32 tgid = BPF_CORE_READ(p, tgid);
	__u64 start_ns = task_start_ns(p);
	bpf_map_update_elem(&recent_exits, &tgid, &start_ns, BPF_ANY);
	__u32 svc = target_service(tgid);
	if (!svc)
		return 0;
	__u32 none = 0;
	bpf_map_update_elem(&target_svc, &tgid, &none, BPF_ANY);
	bpf_map_delete_elem(&target_procs, &tgid);
	emit(REC_TARGET_EXIT, tgid, svc, 0, 0);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(fork_btf, struct task_struct *parent, struct task_struct *child) { return on_fork(parent, child); }
SEC("raw_tp/sched_process_fork")
int BPF_PROG(fork_raw, struct task_struct *parent, struct task_struct *child) { return on_fork(parent, child); }

SEC("tp_btf/sched_process_exec")
int BPF_PROG(exec_btf, struct task_struct *p) { return on_exec(p); }
SEC("raw_tp/sched_process_exec")
int BPF_PROG(exec_raw, struct task_struct *p) { return on_exec(p); }

SEC("tp_btf/sched_process_exit")
int BPF_PROG(exit_btf, struct task_struct *p) { return on_exit(p); }
SEC("raw_tp/sched_process_exit")
int BPF_PROG(exit_raw, struct task_struct *p) { return on_exit(p); }
