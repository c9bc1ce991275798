// SPDX-License-Identifier: BSD-2-Clause
/* `loupe check`: what this kernel supports and which loupe features will run. */
#include "cli/cli.h"
#include "core/loupe.h"
#include "daemon/collectors.h"
#include "lib/log.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char check_usage[] = "Usage: loupe check [--json]\n"
				  "\n"
				  "Probe this kernel by loading and attaching tiny BPF programs, and report which kinds of\n"
				  "hooks work (BTF, tp_btf, raw_tp, fentry, kprobe, uprobe, perf_event, ring buffer, BPF\n"
				  "statistics) and which loupe features will run. Needs root. Exit status 0 when loupe can\n"
				  "run here, 1 when it cannot, 2 on bad usage.\n";

struct feature_need {
	const char *feature, *what;
	bool ok;
	const char *why;
	const char *hook; /* NULL: the tracepoint flavour */
};

int cmd_check(int argc, char **argv)
{
	static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0}};
	bool json = false;
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'h': fputs(check_usage, stdout); return 0;
		default:
			usage_error("check", "unknown option '%s'", argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		usage_error("check", "unexpected argument '%s'", argv[optind]);
		return EXIT_USAGE;
	}
	char msg[300];
	int priv = check_privileges(msg, sizeof(msg));
	if (priv) {
		fprintf(stderr, "loupe check: %s%s\n", priv > 0 ? "warning: " : "", msg);
		if (priv < 0)
			return 1;
	}
	struct kfeatures kf;
	kfeatures__probe(&kf);
	const char *tp = kfeatures__tp_flavour(&kf);
	char pg_detail[120];
	bool pg_ok = pgusdt__check(pg_detail, sizeof(pg_detail));
	struct feature_need feats[] = {
		{"targets", "process tracking (sched_process_fork/exec/exit)",
		 tp && kf.r[KF_BTF].ok && kf.r[KF_RINGBUF].ok,
		 !tp ? "needs tp_btf or raw_tp" : !kf.r[KF_BTF].ok ? "needs BTF (CO-RE)" : "needs ring buffers"},
		{"syscalls", "syscall latency and errors (sys_enter/sys_exit)", tp && kf.r[KF_BTF].ok,
		 !tp ? "needs tp_btf or raw_tp" : "needs BTF (task local storage)"},
		{"tcp", "TCP lifecycle (inet_sock_set_state, tcp_retransmit_skb, tcp_send/receive_reset)",
		 tp && kf.r[KF_BTF].ok && kf.r[KF_RINGBUF].ok,
		 !tp ? "needs tp_btf or raw_tp" : !kf.r[KF_BTF].ok ? "needs BTF (CO-RE)" : "needs ring buffers"},
		{"payload", "HTTP, WebSocket and PostgreSQL from socket read/write payloads (in the syscalls programs)",
		 tp && kf.r[KF_BTF].ok && kf.r[KF_RINGBUF].ok,
		 !tp ? "needs tp_btf or raw_tp" : !kf.r[KF_BTF].ok ? "needs BTF (CO-RE)" : "needs ring buffers"},
		{"pg_usdt", "PostgreSQL lock waits, deadlocks, checkpoints, aborts (USDT probes of the postgres binary)",
		 kf.r[KF_UPROBE].ok && pg_ok, !kf.r[KF_UPROBE].ok ? "needs uprobes" : pg_detail, "uprobe"},
		{"profiler", "CPU samples (perf_event cpu-clock) and, with --offcpu, blocked time (sched_switch)",
		 kf.r[KF_PERF_EVENT].ok && kf.r[KF_RINGBUF].ok,
		 !kf.r[KF_PERF_EVENT].ok ? "needs perf_event programs" : "needs ring buffers", "perf_event"},
	};
	bool can_run = feats[0].ok; /* the same conditions `loupe run` requires at start */
	if (json) {
		printf("{\"kernel\":{");
		for (int k = 0; k < KF_NR; k++) {
			struct buf detail = {0};
			buf__json_str(&detail, kf.r[k].detail);
			printf("%s\"%s\":{\"ok\":%s,\"detail\":\"%s\"}", k ? "," : "", kfeature_name((enum kfeature)k),
			       kf.r[k].ok ? "true" : "false", detail.p ? detail.p : "");
			buf__free(&detail);
		}
		printf("},\"features\":{");
		for (size_t i = 0; i < ARRAY_SIZE(feats); i++)
			printf("%s\"%s\":{\"runs\":%s,\"hook\":\"%s\"}", i ? "," : "", feats[i].feature,
			       feats[i].ok ? "true" : "false", !feats[i].ok ? "none" : feats[i].hook ? feats[i].hook : tp);
		printf("},\"can_run\":%s}\n", can_run ? "true" : "false");
		return can_run ? 0 : 1;
	}
	printf("Kernel support:\n");
	for (int k = 0; k < KF_NR; k++)
		printf("  %-12s %-4s %s\n", kfeature_name((enum kfeature)k), kf.r[k].ok ? "yes" : "no",
		       kf.r[k].ok ? "" : kf.r[k].detail);
	printf("\nLoupe features:\n");
	for (size_t i = 0; i < ARRAY_SIZE(feats); i++)
		printf("  %-10s %-10s %s%s%s\n", feats[i].feature, !feats[i].ok ? "off" : feats[i].hook ? feats[i].hook : tp, feats[i].what,
		       feats[i].ok ? "" : ": ", feats[i].ok ? "" : feats[i].why);
	printf("\n%s\n", can_run ? "loupe can run on this kernel." : "loupe cannot run on this kernel.");
	return can_run ? 0 : 1;
}
