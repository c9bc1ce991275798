// SPDX-License-Identifier: GPL-2.0
/* PostgreSQL internals from the USDT probes of the postgres binary: lock waits and checkpoints (durations),
 * deadlocks and transaction aborts (counts), and, only when asked for, query durations and commits.
 *
 * Every program is a uprobe that userspace places on a probe's address in .note.stapsdt, with the probe's
 * semaphore as the uprobe reference counter (the kernel raises it in every process mapping the binary, which
 * turns the probe on). None reads the probe's arguments: what they measure is when the probe fires and in
 * which process. A hit costs a trap into the kernel (~3-5 us here, docs/postgres-usdt.md), which is why only
 * rare events are probed by default. Backends are single-threaded processes, so a start is keyed by thread. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "bits.bpf.h"
#include "targets.bpf.h"
#include "pgusdt.h"

char LICENSE[] SEC("license") = "GPL";

struct pg_start_key {
	__u32 tid;
	__u32 what; /* enum pg_hist */
};

/* LRU: a start whose done never fires (a lock wait that ends in an error: deadlock, lock_timeout, cancel) must
 * not fill the map; PostgreSQL fires lock__wait__done only when the lock is granted. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct pg_start_key);
	__type(value, __u64);
} pg_starts SEC(".maps");

/* [service][enum pg_hist], service 0 unused */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, (LOUPE_MAX_SERVICES + 1) * PG_HIST_NR);
	__type(key, __u32);
	__type(value, struct loupe_hist);
} pg_hists SEC(".maps");

/* [service][enum pg_counter], service 0 unused */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, (LOUPE_MAX_SERVICES + 1) * PG_CNT_NR);
	__type(key, __u32);
	__type(value, __u64);
} pg_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PG_DROP_NR);
	__type(key, __u32);
	__type(value, __u64);
} pg_drops SEC(".maps");

static __always_inline __u32 current_service(__u32 *tid)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 svc = target_service(id >> 32);
	*tid = (__u32)id;
	return svc <= LOUPE_MAX_SERVICES ? svc : 0;
}

static __always_inline int on_start(__u32 what)
{
	__u32 tid, svc = current_service(&tid);
	if (!svc)
		return 0;
	struct pg_start_key key = {.tid = tid, .what = what};
	__u64 now = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&pg_starts, &key, &now, BPF_ANY))
		count_drop(&pg_drops, PG_DROP_START_MAP_FULL);
	return 0;
}

static __always_inline int on_done(__u32 what)
{
	__u32 tid, svc = current_service(&tid);
	if (!svc)
		return 0;
	struct pg_start_key key = {.tid = tid, .what = what};
	__u64 *start = bpf_map_lookup_elem(&pg_starts, &key);
	if (!start) {
		count_drop(&pg_drops, PG_DROP_NO_START);
		return 0;
	}
	__u64 ns = bpf_ktime_get_ns() - *start;
	bpf_map_delete_elem(&pg_starts, &key);
	__u32 idx = svc * PG_HIST_NR + what;
	struct loupe_hist *h = bpf_map_lookup_elem(&pg_hists, &idx);
	if (h) {
		h->slots[hist_slot(ns)]++;
		h->sum_ns += ns;
	}
	return 0;
}

static __always_inline int on_count(__u32 what)
{
	__u32 tid, svc = current_service(&tid);
	if (!svc)
		return 0;
	__u32 idx = svc * PG_CNT_NR + what;
	__u64 *c = bpf_map_lookup_elem(&pg_counters, &idx);
	if (c)
		(*c)++;
	return 0;
}

/* Names stay within 15 characters: the kernel's program name (bpftool, /proc/PID/fdinfo) is cut there. */
SEC("uprobe")
int pg_lock_start(void *ctx) { return on_start(PG_HIST_LOCK_WAIT); }
SEC("uprobe")
int pg_lock_done(void *ctx) { return on_done(PG_HIST_LOCK_WAIT); }
SEC("uprobe")
int pg_ckpt_start(void *ctx) { return on_start(PG_HIST_CHECKPOINT); }
SEC("uprobe")
int pg_ckpt_done(void *ctx) { return on_done(PG_HIST_CHECKPOINT); }
SEC("uprobe")
int pg_deadlock(void *ctx) { return on_count(PG_CNT_DEADLOCKS); }
SEC("uprobe")
int pg_xact_abort(void *ctx) { return on_count(PG_CNT_XACT_ABORTS); }
/* Per-query probes: loaded and attached only with --pg-usdt-query. */
SEC("uprobe")
int pg_query_start(void *ctx) { return on_start(PG_HIST_QUERY); }
SEC("uprobe")
int pg_query_done(void *ctx) { return on_done(PG_HIST_QUERY); }
SEC("uprobe")
int pg_xact_commit(void *ctx) { return on_count(PG_CNT_XACT_COMMITS); }
