// SPDX-License-Identifier: GPL-2.0
/* CPU and off-CPU profiling of target threads (off-CPU state in task storage with tp_btf, in a hash by thread id
 * with raw_tp, whose task pointers are not BTF-typed).
 *  - prof_sample: perf_event cpu-clock on every CPU (userspace opens one event per CPU at --profile-hz); a sample
 *    of a target thread (or of any thread with profile_all) sends its kernel, user and CPython stacks to
 *    prof_events.
 *  - offcpu_switch_*: sched_switch, which runs in the task being switched out. A target thread leaving the CPU
 *    while not runnable (it blocked) keeps its switch-out time and its stacks (taken there, since user stacks can
 *    only be walked in the task itself) in task storage; when it is switched in again after at least
 *    offcpu_min_ns, the record is sent with the time blocked (or, when that switch-in was not seen, at its next
 *    switch-out or at its exit: see on_switch, on_thread_exit). Untargeted switches cost two array lookups.
 *  - offcpu_exit_*: sched_process_exit, in the exiting thread: a block of it still open is sent then.
 * User stacks: unwound here with the rules userspace compiled from the process's files' .eh_frame/.debug_frame
 * (include/unwind.h; frame pointers where no rule covers an address), by bpf_get_stack()'s frame-pointer walk
 * until userspace has loaded them. CPython frames: walked from the thread's PyThreadState when the process runs an
 * interpreter userspace has a layout for. Records are built in a per-CPU scratch record (too large for the BPF
 * stack) and copied into the ring buffer, up to their last CPython frame. */
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
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct offcpu_start);
} offcpu_start_raw SEC(".maps");

/* Native unwinding rules (include/unwind.h): every loaded file's rows, and each process's executable mappings in a
 * slot of unwind_procs (processes with the same mappings, e.g. PostgreSQL's backends, share one), named by
 * unwind_slot. Userspace fills them at a process's first record and when its mappings change. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UNWIND_ROWS_DEFAULT);
	__type(key, __u32);
	__type(value, struct unwind_row);
} unwind_rows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UNWIND_PROC_SLOTS);
	__type(key, __u32);
	__type(value, struct unwind_proc);
} unwind_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);   /* tgid */
	__type(value, __u32); /* slot in unwind_procs */
} unwind_slot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PY_LAYOUTS_MAX);
	__type(key, __u32);
	__type(value, struct py_layout);
} py_layouts SEC(".maps");

/* The record being built (records are too large for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct prof_rec);
} prof_scratch SEC(".maps");

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

/* ---- Native unwinding (include/unwind.h) ---- */

struct uw_ctx {
	__u64 ip, sp, bp;
	__u32 slot;  /* in unwind_procs */
	__u32 n;     /* frames written to the scratch record's ustack */
	__u32 flags; /* PROF_REC_UW_* */
	__u32 pad;
};

/* Binary searches run as bpf_loop() callbacks: the verifier checks a callback once, where an unrolled search
 * (or a bounded loop) nested in the frame loop is explored path by path, past its 1M-instruction limit. */

struct map_search {
	const struct unwind_proc *p;
	__u64 addr;
	__u32 lo, hi; /* the answer is in [lo, hi) */
};

/* maps[mid].start <= addr: look right, else left. */
static long map_search_step(__u32 i, void *arg)
{
	struct map_search *s = arg;
	if (s->lo >= s->hi)
		return 1;
	__u32 mid = (s->lo + s->hi) / 2;
	if (s->addr < s->p->maps[mid & (UNWIND_PROC_MAPS - 1)].start)
		s->hi = mid;
	else
		s->lo = mid + 1;
	return 0;
}

/* The mapping of p holding addr, or NULL. */
static __always_inline const struct unwind_map *uw_map_of(const struct unwind_proc *p, __u64 addr)
{
	struct map_search s = {.p = p, .addr = addr, .hi = p->nmaps};
	if (s.hi > UNWIND_PROC_MAPS)
		return NULL;
	bpf_loop(8, map_search_step, &s, 0); /* 2^7 = UNWIND_PROC_MAPS */
	if (!s.lo)
		return NULL;
	const struct unwind_map *m = &p->maps[(s.lo - 1) & (UNWIND_PROC_MAPS - 1)];
	return addr < m->end ? m : NULL;
}

struct row_search {
	__u32 lo, hi;
	__u32 vaddr;
	__u32 pad;
};

static long row_search_step(__u32 i, void *arg)
{
	struct row_search *s = arg;
	if (s->lo >= s->hi)
		return 1;
	__u32 mid = (s->lo + s->hi) / 2;
	const struct unwind_row *r = bpf_map_lookup_elem(&unwind_rows, &mid);
	if (!r)
		return 1;
	if (r->pc <= s->vaddr)
		s->lo = mid + 1;
	else
		s->hi = mid;
	return 0;
}

/* The row of m's table that applies at vaddr (the last with pc <= vaddr), or NULL. */
static __always_inline const struct unwind_row *uw_row_of(const struct unwind_map *m, __u64 vaddr)
{
	struct row_search s = {.lo = m->row_first, .hi = m->row_first + m->row_count, .vaddr = (__u32)vaddr};
	__u32 first = s.lo;
	if (!m->row_count || vaddr > 0xffffffffull)
		return NULL;
	bpf_loop(22, row_search_step, &s, 0); /* 2^21 = UNWIND_ROWS_DEFAULT */
	if (s.lo == first)
		return NULL;
	__u32 k = s.lo - 1;
	return bpf_map_lookup_elem(&unwind_rows, &k);
}

/* One frame: record c->ip, then step to the caller. 1 ends the loop. */
static long uw_step(__u32 i, void *arg)
{
	struct uw_ctx *c = arg;
	__u32 zero = 0;
	struct prof_rec *rec = bpf_map_lookup_elem(&prof_scratch, &zero);
	const struct unwind_proc *p = bpf_map_lookup_elem(&unwind_procs, &c->slot);
	if (!rec || !p || c->n >= PROF_STACK_MAX)
		return 1;
	rec->ustack[c->n & 127] = c->ip;
	c->n++;
	/* A return address is looked up inside its call (ip - 1): a call ending a function finds that function. */
	__u64 look = c->n > 1 ? c->ip - 1 : c->ip, cfa, ra = 0, bp = c->bp;
	const struct unwind_map *m = uw_map_of(p, look);
	const struct unwind_row *r = m ? uw_row_of(m, look - m->bias) : NULL;
	__u32 kind = r ? UW_ROW_CFA(r) : UW_CFA_NONE;
	if (!m)
		c->flags |= PROF_REC_UW_MISS;
	switch (kind) {
	case UW_CFA_END:
		return 1;
	case UW_CFA_RSP:
		cfa = c->sp + (__s64)r->cfa_off * 8;
		break;
	case UW_CFA_RBP:
		cfa = c->bp + (__s64)r->cfa_off * 8;
		break;
	case UW_CFA_PLT:
		cfa = c->sp + (__s64)r->cfa_off * 8 + ((c->ip & 15) >= (__u64)r->rbp_off ? 8 : 0);
		break;
	case UW_CFA_NONE: /* the frame pointer */
		if (!c->bp)
			return 1;
		cfa = c->bp + 16;
		if (bpf_probe_read_user(&bp, sizeof(bp), (void *)c->bp))
			goto cut;
		break;
	default:
		goto cut;
	}
	if (bpf_probe_read_user(&ra, sizeof(ra), (void *)(cfa - 8)))
		goto cut;
	if (r && kind != UW_CFA_NONE && UW_ROW_RBP(r) == UW_RBP_CFA &&
	    bpf_probe_read_user(&bp, sizeof(bp), (void *)(cfa + (__s64)r->rbp_off * 8)))
		goto cut;
	if (!ra || cfa <= c->sp) /* the end, or a walk going nowhere */
		return 1;
	c->ip = ra;
	c->sp = cfa;
	c->bp = bp;
	return 0;
cut:
	c->flags |= PROF_REC_UW_CUT;
	return 1;
}

/* The current task's user stack into rec->ustack (rec: the per-CPU scratch record), with the rules of its process
 * when userspace has loaded them, else by frame pointers (bpf_get_stack). */
static __always_inline void user_stack(void *ctx, struct prof_rec *rec, struct task_struct *task, const __u32 *slot)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!slot || !regs) {
		rec->ustack_bytes = bpf_get_stack(ctx, rec->ustack, sizeof(rec->ustack), BPF_F_USER_STACK);
		return;
	}
	struct uw_ctx c = {.ip = regs->ip, .sp = regs->sp, .bp = regs->bp, .slot = *slot};
	if (c.ip) /* a kernel thread has no user stack */
		bpf_loop(PROF_STACK_MAX, uw_step, &c, 0);
	rec->ustack_bytes = (__s32)(c.n * sizeof(__u64));
	rec->flags |= c.flags | PROF_REC_UW_TABLES;
}

/* ---- CPython frames (include/unwind.h) ---- */

struct py_ctx {
	__u64 frame;
	__u32 layout;
	__u32 n;
	__u64 entry;
};

/* A CPython frame's head, read at once (the fields the walk needs are in its first 104 bytes in every layout). */
#define PY_FRAME_HEAD 104
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[128]);
} py_frame_buf SEC(".maps");

/* One CPython frame: record it (shims excepted), then go to the previous one. 1 ends the loop. */
static long py_step(__u32 i, void *arg)
{
	struct py_ctx *c = arg;
	__u32 zero = 0;
	struct prof_rec *rec = bpf_map_lookup_elem(&prof_scratch, &zero);
	__u8 *buf = bpf_map_lookup_elem(&py_frame_buf, &zero);
	const struct py_layout *L = bpf_map_lookup_elem(&py_layouts, &c->layout);
	if (!rec || !buf || !L || !c->frame || c->n >= PY_FRAMES_MAX ||
	    bpf_probe_read_user(buf, PY_FRAME_HEAD, (void *)c->frame))
		return 1;
	/* Offsets masked where the verifier sees them: 8-byte fields are 8-aligned, all below PY_FRAME_HEAD. */
	__u64 code = *(__u64 *)(buf + (L->frame_code & 0x78));
	__u64 prev = *(__u64 *)(buf + (L->frame_previous & 0x78)), instr;
	__u8 owner = 0;
	if (L->entry == PY_ENTRY_EACH) {
		instr = *(__u32 *)(buf + (L->frame_instr & 0x7c));
	} else {
		instr = *(__u64 *)(buf + (L->frame_instr & 0x78));
		owner = buf[L->frame_owner & 0x7f];
	}
	c->frame = prev;
	if (L->entry == PY_ENTRY_CSTACK && owner == PY_OWNED_BY_CSTACK) {
		/* A shim: the frame recorded before it began a native call. */
		if (c->n)
			c->entry |= 1ull << ((c->n - 1) & 63);
		return 0;
	}
	__u32 k = c->n & (PY_FRAMES_MAX - 1);
	rec->py[k].code = code;
	rec->py[k].instr = instr;
	if (L->entry == PY_ENTRY_EACH || (L->entry == PY_ENTRY_FLAG && owner))
		c->entry |= 1ull << k;
	c->n++;
	return 0;
}

/* A user pointer at addr; 0 when it cannot be read. */
static __always_inline __u64 user_ptr(__u64 addr)
{
	__u64 v = 0;
	bpf_probe_read_user(&v, sizeof(v), (void *)addr);
	return v;
}

struct py_thread_ctx {
	__u64 tstate, key;
	__u16 next, thread_id;
	__u32 found;
};

/* One thread state of the interpreter's list: 1 when it is the thread's (or the list ended). */
static long py_thread_step(__u32 i, void *arg)
{
	struct py_thread_ctx *c = arg;
	if (!c->tstate)
		return 1;
	if (user_ptr(c->tstate + c->thread_id) == c->key) {
		c->found = 1;
		return 1;
	}
	c->tstate = user_ptr(c->tstate + c->next);
	return 0;
}

/* The current thread's CPython frames into rec->py, when its process runs a CPython userspace has a layout for. */
static __always_inline void python_stack(struct prof_rec *rec, struct task_struct *task, const __u32 *slot)
{
	const struct unwind_proc *p = slot ? bpf_map_lookup_elem(&unwind_procs, slot) : NULL;
	if (!p || !p->py_layout)
		return;
	__u32 layout = p->py_layout;
	const struct py_layout *L = bpf_map_lookup_elem(&py_layouts, &layout);
	if (!L)
		return;
	/* The thread's state, matched by pthread_t: the thread's fs base on glibc x86-64. */
	struct py_thread_ctx t = {.key = task->thread.fsbase, .next = L->tstate_next, .thread_id = L->tstate_thread_id};
	__u64 interp = user_ptr(p->py_runtime + L->runtime_interpreters_head);
	t.tstate = interp ? user_ptr(interp + L->interp_threads_head) : 0;
	bpf_loop(64, py_thread_step, &t, 0);
	if (!t.found) { /* not among the first 64 thread states: not this thread's (another's frames would follow) */
		rec->flags |= PROF_REC_PY_NOTHREAD;
		return;
	}
	struct py_ctx c = {.layout = layout};
	if (L->tstate_cframe != PY_OFF_NONE) {
		__u64 cframe = user_ptr(t.tstate + L->tstate_cframe);
		c.frame = cframe ? user_ptr(cframe + L->cframe_current_frame) : 0;
	} else {
		c.frame = user_ptr(t.tstate + L->tstate_frame);
	}
	bpf_loop(PY_FRAMES_MAX, py_step, &c, 0);
	rec->py_n = c.n;
	rec->py_entry = c.entry;
}

/* ---- Records ---- */

/* The per-CPU scratch record, its header filled for the current task, its stacks not yet taken. */
static __always_inline struct prof_rec *rec_new(__u32 type, __u32 svc, __u64 pid_tgid)
{
	__u32 zero = 0;
	struct prof_rec *r = bpf_map_lookup_elem(&prof_scratch, &zero);
	if (!r) {
		count_drop(&prof_drops, PROF_DROP_SCRATCH);
		return NULL;
	}
	r->type = type;
	r->service = svc;
	r->tgid = pid_tgid >> 32;
	r->tid = (__u32)pid_tgid;
	r->ts_ns = bpf_ktime_get_ns();
	r->value_ns = 0;
	r->flags = 0;
	r->py_n = 0;
	r->py_entry = 0;
	r->ustack_bytes = r->kstack_bytes = 0;
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	return r;
}

/* The current task's stacks (kernel, user, CPython) into the scratch record r. */
static __always_inline void rec_stacks(void *ctx, struct prof_rec *r)
{
	r->kstack_bytes = bpf_get_stack(ctx, r->kstack, sizeof(r->kstack), 0);
	/* The process's unwinding slot and the task: looked up once for both walks. */
	__u32 tgid = r->tgid, *slot = bpf_map_lookup_elem(&unwind_slot, &tgid);
	struct task_struct *task = bpf_get_current_task_btf();
	user_stack(ctx, r, task, slot);
	python_stack(r, task, slot);
}

/* r's size up to its last CPython frame (clamped where the verifier sees it). */
static __always_inline __u64 rec_size(const struct prof_rec *r)
{
	__u64 size = prof_rec_size((__u64)r->py_n);
	if (size > sizeof(struct prof_rec))
		size = sizeof(struct prof_rec);
	return size;
}

/* Send r up to its last CPython frame. */
static __always_inline void rec_send(const struct prof_rec *r)
{
	if (bpf_ringbuf_output(&prof_events, (void *)r, rec_size(r), prof_wakeup_flag(r->tgid)))
		count_drop(&prof_drops, PROF_DROP_RINGBUF);
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
	rec_stacks(ctx, r);
	rec_send(r);
	return 0;
}

/* The continuous profile's events (--profile-hz). */
SEC("perf_event")
int prof_sample(struct bpf_perf_event_data *ctx) { return on_sample(ctx, REC_PROF_SAMPLE); }

/* An on-demand session's events (their own frequency, for as long as the session lasts). */
SEC("perf_event")
int prof_session(struct bpf_perf_event_data *ctx) { return on_sample(ctx, REC_PROF_SESSION); }

static const struct offcpu_start offcpu_zero;

static __always_inline struct offcpu_start *start_of(struct task_struct *t, bool create, const bool btf)
{
	if (btf)
		return bpf_task_storage_get(&offcpu_start, t, 0, create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	__u32 tid = BPF_CORE_READ(t, pid);
	return create ? map_lookup_or_try_init(&offcpu_start_raw, &tid, &offcpu_zero)
		      : bpf_map_lookup_elem(&offcpu_start_raw, &tid);
}

/* Send the off-CPU record kept in st (of a thread of service svc): blocked for delta_ns. */
static __always_inline void offcpu_emit(struct offcpu_start *st, __u32 svc, __u64 now, __u64 delta_ns, __u32 flags)
{
	if (delta_ns < offcpu_min_ns)
		return;
	struct prof_rec *r = &st->rec;
	r->type = REC_PROF_OFFCPU;
	r->service = svc;
	r->ts_ns = now;
	r->value_ns = delta_ns;
	r->flags |= flags;
	rec_send(r);
}

/* Send the block still open in st, of thread t, whose switch-in was not seen (t is running): valued as the time
 * since it blocked less the CPU time t has run since. */
static __always_inline void offcpu_emit_late(struct offcpu_start *st, __u32 svc, struct task_struct *t)
{
	__u64 now = bpf_ktime_get_ns(), ran = BPF_CORE_READ(t, se.sum_exec_runtime) - st->runtime_ns;
	__u64 gone = now - st->ts_ns;
	st->ts_ns = 0;
	offcpu_emit(st, svc, now, gone > ran ? gone - ran : 0, PROF_REC_LATE);
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
		if (st && st->ts_ns)
			offcpu_emit_late(st, svc, prev);
		if (blocked) {
			/* prev is the current task: its stacks are taken now, and sent when it runs again. */
			struct prof_rec *r = st ? rec_new(REC_PROF_OFFCPU, svc, bpf_get_current_pid_tgid()) : NULL;
			if (r) {
				rec_stacks(ctx, r);
				bpf_probe_read_kernel(&st->rec, rec_size(r), r);
				st->ts_ns = bpf_ktime_get_ns();
				st->runtime_ns = BPF_CORE_READ(prev, se.sum_exec_runtime);
			} else if (!st) {
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
	__u64 now = bpf_ktime_get_ns(), delta = now - st->ts_ns;
	st->ts_ns = 0;
	offcpu_emit(st, svc, now, delta, 0);
	if (!btf) {
		__u32 tid = BPF_CORE_READ(next, pid);
		bpf_map_delete_elem(&offcpu_start_raw, &tid);
	}
	return 0;
}

/* A thread exiting with a block still open (its switch-in unseen, see on_switch): valued here, in the thread,
 * like a block valued at its next switch-out. Its final switch-out cannot do it: once the last thread of a process
 * has passed this tracepoint, the targets' hook has already cleared the process's service (a sleeper whose last
 * sleep's switch-in was unseen lost that sleep). With raw_tp it also takes the thread out of the hash. */
static __always_inline int on_thread_exit(struct task_struct *t, const bool btf)
{
	struct offcpu_start *st = start_of(t, false, btf);
	if (!st)
		return 0;
	if (st->ts_ns)
		offcpu_emit_late(st, st->rec.service, t);
	if (!btf) {
		__u32 tid = BPF_CORE_READ(t, pid);
		bpf_map_delete_elem(&offcpu_start_raw, &tid);
	}
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(offcpu_exit_btf, struct task_struct *p) { return on_thread_exit(p, true); }
SEC("raw_tp/sched_process_exit")
int BPF_PROG(offcpu_exit_raw, struct task_struct *p) { return on_thread_exit(p, false); }

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
