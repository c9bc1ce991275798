// SPDX-License-Identifier: GPL-2.0
/* Syscall latency and errors of target processes. sys_enter/sys_exit run for every syscall on the host, so the
 * untargeted path is one inlined array lookup and a return (measured: scripts/bench.sh). Targeted threads keep
 * their start time in task local storage (no hash on the hot path) and count into per-CPU histograms. Syscalls
 * of the untimed set (--untimed-syscalls: futex, getpid, ... by default, the bulk of a Python service's calls
 * and not worth two clock reads each) are only counted, at sys_exit, from the number in pt_regs.
 *
 * --syscalls sampled attaches both programs for one SYSCALL_SAMPLE_ON_MS window in every SYSCALL_SAMPLE_PERIOD_MS
 * (userspace does it), so that the host's syscalls pay nothing between windows: the calls that end in a window
 * are counted, and timed when they began in it too. A call that began before the window has no start time of
 * this window (window_seq tells a start left by an earlier one, whose exit was missed) and is counted in
 * syscall_unsampled. --syscalls off loads none of this. Payload capture has its own hooks (bpf/payload.bpf.c). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "bits.bpf.h"
#include "core_fixes.bpf.h"
#include "maps.bpf.h"
#include "targets.bpf.h"
#include "syscalls.h"

char LICENSE[] SEC("license") = "GPL";

/* include/linux/err.h: a syscall's return value is an error when it lies in [-MAX_ERRNO, -1]. */
#define MAX_ERRNO 4095

/* [service-1][syscall] -> histogram; max_entries = services * SYSCALL_MAX_NR, set by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SYSCALL_MAX_NR);
	__type(key, __u32);
	__type(value, struct loupe_hist);
} syscall_hist SEC(".maps");

/* [service-1][syscall] -> calls of untimed syscalls; max_entries as syscall_hist. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SYSCALL_MAX_NR);
	__type(key, __u32);
	__type(value, __u64);
} syscall_untimed SEC(".maps");

/* [service-1][syscall] -> timed-set calls that ended in a sampling window but began before it (--syscalls sampled). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SYSCALL_MAX_NR);
	__type(key, __u32);
	__type(value, __u64);
} syscall_unsampled SEC(".maps");

/* The sampling window in force (--syscalls sampled): userspace advances it before it attaches the programs for a
 * window (with --syscalls on, once, at attach). */
__u32 window_seq = 0;

/* Bitmap of the syscall numbers that are counted but not timed; set by userspace before load. */
const volatile __u64 untimed_nr[SYSCALL_MAX_NR / 64] = {};

static __always_inline bool is_untimed(__u32 nr)
{
	if (nr >= SYSCALL_MAX_NR)
		return false;
	/* The mask after the barrier keeps the index provably in bounds for the verifier: without it the compiler
	 * recomputes nr / 64 from a register the range check did not narrow. */
	__u32 word = nr / 64;
	barrier_var(word);
	word &= SYSCALL_MAX_NR / 64 - 1;
	return (untimed_nr[word] >> (nr % 64)) & 1;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct syscall_err_key);
	__type(value, __u64);
} syscall_errors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct syscall_start);
} syscall_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SYSCALL_DROP_NR);
	__type(key, __u32);
	__type(value, __u64);
} syscall_drops SEC(".maps");

static __always_inline int on_enter(long id)
{
	__u32 svc = target_service(bpf_get_current_pid_tgid() >> 32);
	if (!svc || is_untimed((__u32)id))
		return 0;
	struct syscall_start *s = bpf_task_storage_get(&syscall_start, bpf_get_current_task_btf(), 0,
						       BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s) {
		count_drop(&syscall_drops, SYSCALL_DROP_STORAGE);
		return 0;
	}
	s->ts = bpf_ktime_get_ns();
	s->nr = (__u32)id;
	s->window = window_seq;
	return 0;
}

static __always_inline void count_error(__u32 svc, __u32 nr, long ret)
{
	if (ret >= 0 || ret < -MAX_ERRNO)
		return;
	struct syscall_err_key key = {.service = svc, .nr = nr, .err = (__u16)-ret};
	__u64 zero = 0, *c = map_lookup_or_try_init(&syscall_errors, &key, &zero);
	if (c)
		(*c)++; /* a per-CPU hash: this CPU's slot, also when another CPU created the entry */
	else
		count_drop(&syscall_drops, SYSCALL_DROP_ERRMAP_FULL);
}

static __always_inline int on_exit(struct pt_regs *regs, long ret, const bool btf)
{
	__u32 svc = target_service(bpf_get_current_pid_tgid() >> 32);
	if (!svc || svc > LOUPE_MAX_SERVICES)
		return 0;
	/* The syscall number, as the kernel's syscall_get_nr() reads it: untimed ones have no start time. */
	__u32 nr = syscall_nr(regs, btf);
	if (is_untimed(nr)) {
		__u32 idx = (svc - 1) * SYSCALL_MAX_NR + nr;
		__u64 *n = bpf_map_lookup_elem(&syscall_untimed, &idx);
		if (n)
			(*n)++;
		count_error(svc, nr, ret);
		return 0;
	}
	struct syscall_start *s = bpf_task_storage_get(&syscall_start, bpf_get_current_task_btf(), 0, 0);
	if (!s || !s->ts || s->window != window_seq) {
		/* began before this sampling window, or before the thread became a target */
		if (nr < SYSCALL_MAX_NR) {
			__u32 idx = (svc - 1) * SYSCALL_MAX_NR + nr;
			__u64 *n = bpf_map_lookup_elem(&syscall_unsampled, &idx);
			if (n)
				(*n)++;
		}
		count_error(svc, nr, ret);
		return 0;
	}
	__u64 delta = bpf_ktime_get_ns() - s->ts;
	nr = s->nr;
	s->ts = 0;
	if (nr >= SYSCALL_MAX_NR)
		return 0;
	__u32 idx = (svc - 1) * SYSCALL_MAX_NR + nr;
	struct loupe_hist *h = bpf_map_lookup_elem(&syscall_hist, &idx);
	if (h) {
		__u32 slot = hist_slot(delta);
		if (slot < HIST_SLOTS)
			h->slots[slot]++;
		h->sum_ns += delta;
	}
	count_error(svc, nr, ret);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter_btf, struct pt_regs *regs, long id) { return on_enter(id); }
SEC("raw_tp/sys_enter")
int BPF_PROG(sys_enter_raw, struct pt_regs *regs, long id) { return on_enter(id); }

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit_btf, struct pt_regs *regs, long ret) { return on_exit(regs, ret, true); }
SEC("raw_tp/sys_exit")
int BPF_PROG(sys_exit_raw, struct pt_regs *regs, long ret) { return on_exit(regs, ret, false); }
