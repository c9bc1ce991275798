/* SPDX-License-Identifier: BSD-2-Clause */
/* What this kernel supports, probed by loading and attaching tiny programs (bpf/probe.bpf.c). */
#ifndef LOUPE_PROBE_H
#define LOUPE_PROBE_H
#include <stdbool.h>

enum kfeature {
	KF_BTF,       /* /sys/kernel/btf/vmlinux: CO-RE and tp_btf need it */
	KF_TP_BTF,    /* BTF-typed raw tracepoints */
	KF_RAW_TP,    /* raw tracepoints */
	KF_FENTRY,    /* fentry/fexit trampolines */
	KF_KPROBE,    /* kprobes (perf-event based attach) */
	KF_UPROBE,    /* uprobes (perf-event based attach; CAP_SYS_ADMIN since Linux 6.15) */
	KF_UPROBE_MULTI, /* uprobes through a BPF uprobe_multi link (Linux 6.6; CAP_BPF and CAP_PERFMON suffice) */
	KF_PERF_EVENT,/* perf_event programs on a cpu-clock software event */
	KF_RINGBUF,   /* BPF ring buffer maps */
	KF_BPF_STATS, /* run time statistics (bpf_enable_stats) */
	KF_NR,
};

struct kprobe_result {
	bool ok;
	char detail[160]; /* why not, when !ok */
};

struct kfeatures {
	bool probed;
	struct kprobe_result r[KF_NR];
};

const char *kfeature_name(enum kfeature f);
/* Probe everything; needs the privileges to load BPF. libbpf's output is silenced during probes. */
void kfeatures__probe(struct kfeatures *kf);

/* Tracepoint flavour for collectors: "tp_btf", "raw_tp", or NULL when neither works. */
const char *kfeatures__tp_flavour(const struct kfeatures *kf);

/* Privilege check: 0; -EPERM with a message naming what is missing to load programs; or 1 with a warning naming
 * what runs degraded (other users' processes without their stacks). */
int check_privileges(char *msg, int msglen);

#endif
