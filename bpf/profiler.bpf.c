// SPDX-License-Identifier: GPL-2.0
/* CPU and off-CPU profiling of target threads (off-CPU state in task storage with tp_btf, in a hash by thread id
 * with raw_tp, whose task pointers are not BTF-typed).
 *  - prof_sample: perf_event cpu-clock on every CPU (userspace opens one event per CPU at --profile-hz); a sample
 *    of a target thread (or of any thread with profile_all) sends its kernel and user stacks to prof_events.
 *  - offcpu_switch_*: sched_switch, which runs in the task being switched out. A target thread leaving the CPU
 *    while not runnable (it blocked) keeps its switch-out time and the ids of its stacks (prof_stacks, taken
 *    there, since user stacks can only be walked in the task itself) in task storage; when it is switched in
 *    again after at least offcpu_min_ns, one record carries the time blocked and the stack ids (or, when that
 *    switch-in was not seen, at its next switch-out: see on_switch). Untargeted switches cost two array
 *    lookups. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "bits.bpf.h"
#include "maps.bpf.h"
#include "targets.bpf.h"
#include "profiler.h"

char LICENSE[] SEC("license") = "GPL";

/* include/linux/sched.h: the state of a task's final switch-out (not a block: it never runs again). */
#define KERNEL_TASK_DEAD 0x80

const volatile bool profile_all = false;
const volatile __u64 offcpu_min_ns = NSEC_PER_MSEC;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 2 * 1024 * 1024);
} prof_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct offcpu_start);
} offcpu_start SEC(".maps");

/* The same for raw_tp, whose task pointers are not BTF-typed (no task storage): keyed by thread id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct offcpu_start);
} offcpu_start_raw SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__uint(value_size, PROF_STACK_MAX * sizeof(__u64));
} prof_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PROF_DROP_NR);
	__type(key, __u32);
	__type(value, __u64);
} prof_drops SEC(".maps");

/* Processes whose records userspace has been woken for (tgid -> 1). See prof_wakeup_flag(). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} prof_seen SEC(".maps");

/* Records are read every 100 ms by userspace's poll (and drained before a session is rendered): waking the reader
 * for each one cost a wakeup (an IPI in the sampled task's context, a context switch for loupe) per sample, most
 * of `loupe profile`'s CPU at 99 Hz. A wakeup is forced for a process's first record, so that userspace snapshots
 * its mappings while it lives (a short-lived process is still symbolised), and when a quarter of the ring waits. */
#define PROF_WAKEUP_BYTES (512 * 1024)

static __always_inline __u64 prof_wakeup_flag(__u32 tgid)
{
	if (!bpf_map_lookup_elem(&prof_seen, &tgid)) {
		__u8 one = 1;
		bpf_map_update_elem(&prof_seen, &tgid, &one, BPF_ANY);
		return BPF_RB_FORCE_WAKEUP;
	}
	return bpf_ringbuf_query(&prof_events, BPF_RB_AVAIL_DATA) >= PROF_WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
										      : BPF_RB_NO_WAKEUP;
}

static __always_inline struct prof_rec *rec_new(__u32 type, __u32 svc, __u64 pid_tgid)
{
	struct prof_rec *r = bpf_ringbuf_reserve(&prof_events, sizeof(*r), 0);
	if (!r) {
		count_drop(&prof_drops, PROF_DROP_RINGBUF);
		return NULL;
	}
	r->type = type;
	r->service = svc;
	r->tgid = pid_tgid >> 32;
	r->tid = (__u32)pid_tgid;
	r->ts_ns = bpf_ktime_get_ns();
	r->value_ns = 0;
	r->flags = r->pad = 0;
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	return r;
}

static __always_inline int on_sample(struct bpf_perf_event_data *ctx, __u32 type)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 svc = target_service(id >> 32);
	if ((!svc && !profile_all) || !(id >> 32))
		return 0; /* not a target, or the idle task */
	struct prof_rec *r = rec_new(type, svc, id);
	if (!r)
		return 0;
	r->kstack_bytes = bpf_get_stack(ctx, r->kstack, sizeof(r->kstack), 0);
	r->ustack_bytes = bpf_get_stack(ctx, r->ustack, sizeof(r->ustack), BPF_F_USER_STACK);
	r->ustack_id = r->kstack_id = -1;
	bpf_ringbuf_submit(r, prof_wakeup_flag(r->tgid));
	return 0;
}

/* The continuous profile's events (--profile-hz). */
SEC("perf_event")
int prof_sample(struct bpf_perf_event_data *ctx) { return on_sample(ctx, REC_PROF_SAMPLE); }

/* An on-demand session's events (their own frequency, for as long as the session lasts). */
SEC("perf_event")
int prof_session(struct bpf_perf_event_data *ctx) { return on_sample(ctx, REC_PROF_SESSION); }

static __always_inline struct offcpu_start *start_of(struct task_struct *t, bool create, const bool btf)
{
	if (btf)
		return bpf_task_storage_get(&offcpu_start, t, 0, create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	__u32 tid = BPF_CORE_READ(t, pid);
	struct offcpu_start zero = {};
	return create ? map_lookup_or_try_init(&offcpu_start_raw, &tid, &zero)
		      : bpf_map_lookup_elem(&offcpu_start_raw, &tid);
}

/* One off-CPU record for task t (a target thread of service svc): blocked for delta_ns where st says. */
static __always_inline void offcpu_emit(struct task_struct *t, __u32 svc, const struct offcpu_start *st, __u64 now,
					__u64 delta_ns, __u32 flags)
{
	if (delta_ns < offcpu_min_ns)
		return;
	struct prof_rec *r = bpf_ringbuf_reserve(&prof_events, sizeof(*r), 0);
	if (!r) {
		count_drop(&prof_drops, PROF_DROP_RINGBUF);
		return;
	}
	r->type = REC_PROF_OFFCPU;
	r->service = svc;
	r->tgid = BPF_CORE_READ(t, tgid);
	r->tid = BPF_CORE_READ(t, pid);
	r->ts_ns = now;
	r->value_ns = delta_ns;
	r->ustack_bytes = r->kstack_bytes = 0;
	r->ustack_id = st->ustack_id;
	r->kstack_id = st->kstack_id;
	r->flags = flags;
	r->pad = 0;
	BPF_CORE_READ_STR_INTO(&r->comm, t, comm);
	bpf_ringbuf_submit(r, prof_wakeup_flag(r->tgid));
}

static __always_inline int on_switch(void *ctx, struct task_struct *prev, struct task_struct *next,
				     unsigned int prev_state, const bool btf)
{
	__u32 prev_tgid = BPF_CORE_READ(prev, tgid), next_tgid = BPF_CORE_READ(next, tgid);
	__u32 svc = target_service(prev_tgid);
	if (svc) {
		/* prev blocked (prev_state, the state __schedule() decided on, not prev->__state, which may have
		 * changed by now) rather than being preempted while runnable: remember when, where, and its CPU time.
		 * The switch-in that ends a block is not always seen: on 6.18 about one run in ten of 20 sleeps had a
		 * switch-in the kernel counted (schedstat) with no sched_switch call for it, after a block with
		 * EEVDF's delayed dequeue. Such a block is still open at the thread's next switch-out, which values
		 * it exactly: the time since it blocked less the CPU time the thread has run since. */
		bool blocked = prev_state != 0 && !(prev_state & KERNEL_TASK_DEAD); /* not its last switch-out */
		struct offcpu_start *st = start_of(prev, blocked, btf);
		if (st && st->ts_ns) {
			__u64 now = bpf_ktime_get_ns(), ran = BPF_CORE_READ(prev, se.sum_exec_runtime) - st->runtime_ns;
			__u64 gone = now - st->ts_ns;
			st->ts_ns = 0;
			offcpu_emit(prev, svc, st, now, gone > ran ? gone - ran : 0, PROF_REC_LATE);
		}
		if (blocked) {
			if (st) {
				st->ts_ns = bpf_ktime_get_ns();
				st->runtime_ns = BPF_CORE_READ(prev, se.sum_exec_runtime);
				st->kstack_id = bpf_get_stackid(ctx, &prof_stacks, 0);
				st->ustack_id = bpf_get_stackid(ctx, &prof_stacks, BPF_F_USER_STACK);
			} else {
				count_drop(&prof_drops, PROF_DROP_STORAGE);
			}
		} else if (st && !btf) { /* the hash holds blocked threads only: exiting ones leave nothing behind */
			__u32 tid = BPF_CORE_READ(prev, pid);
			bpf_map_delete_elem(&offcpu_start_raw, &tid);
		}
	}
	svc = target_service(next_tgid);
	if (!svc)
		return 0;
	struct offcpu_start *st = start_of(next, false, btf);
	if (!st || !st->ts_ns)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct offcpu_start blocked = *st;
	st->ts_ns = 0;
	if (!btf) {
		__u32 tid = BPF_CORE_READ(next, pid);
		bpf_map_delete_elem(&offcpu_start_raw, &tid);
	}
	offcpu_emit(next, svc, &blocked, now, now - blocked.ts_ns, 0);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(offcpu_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	return on_switch(ctx, prev, next, prev_state, true);
}
SEC("raw_tp/sched_switch")
int BPF_PROG(offcpu_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	return on_switch(ctx, prev, next, prev_state, false);
}
