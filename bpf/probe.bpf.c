// SPDX-License-Identifier: GPL-2.0
/* Feature probes for `loupe check` and for choosing program variants: each program is loaded and attached
 * alone (userspace autoloads one at a time); whether that works is the answer. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} probe_ring SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(probe_tp_btf, struct pt_regs *regs, long id) { return 0; }

SEC("raw_tp/sys_enter")
int BPF_PROG(probe_raw_tp, struct pt_regs *regs, long id) { return 0; }

SEC("fentry/do_nanosleep")
int BPF_PROG(probe_fentry) { return 0; }

SEC("kprobe/do_nanosleep")
int BPF_KPROBE(probe_kprobe) { return 0; }

SEC("uprobe")
int BPF_KPROBE(probe_uprobe) { return 0; }

SEC("perf_event")
int probe_perf_event(void *ctx) { return 0; }

SEC("raw_tp/sys_enter")
int BPF_PROG(probe_ringbuf, struct pt_regs *regs, long id)
{
	void *r = bpf_ringbuf_reserve(&probe_ring, 8, 0);
	if (r)
		bpf_ringbuf_discard(r, 0);
	return 0;
}
