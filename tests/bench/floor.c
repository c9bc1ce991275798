// SPDX-License-Identifier: BSD-2-Clause
/* loupe-bench-floor: attach the empty sys_enter/sys_exit programs of floor.bpf.c and hold them until SIGINT or
 * SIGTERM. scripts/bench.sh runs it as the "floor" condition: the cost every syscall pays for having any program on
 * those hooks, against which loupe's untargeted path is judged.
 *
 *   loupe-bench-floor [--raw-tp] [--stats] [--variant empty|pidtgid|lookup|task|sock]
 *     --raw-tp   attach the raw_tp pair instead of tp_btf (loupe's --tracepoints raw_tp; empty variant only)
 *     --stats    also hold kernel BPF run-time statistics on while attached, as loupe does (bpf_enable_stats):
 *                shows what the statistics themselves cost, and gives the floor programs a run_time_ns
 *     --variant  empty (default: the floor) or one piece of loupe's untargeted path, to explain a gap:
 *                pidtgid (bpf_get_current_pid_tgid only), lookup (plus the tgid-indexed array lookup, sized to
 *                pid_max, as loupe's target_svc), task (a task-local-storage lookup instead); or sock: empty
 *                programs on sock:sock_send_length and sock:sock_recv_length instead (payload capture's hooks)
 *
 * Prints "attached" on stdout once both programs are attached; exits 0 after a clean detach. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "floor.skel.h"

static int print_libbpf(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_DEBUG ? 0 : vfprintf(stderr, fmt, ap);
}

int main(int argc, char **argv)
{
	static const char *const variants[] = {"floor", "pidtgid", "lookup", "task", "sock"};
	const char *variant = "floor";
	bool raw_tp = false, stats = false;
	struct floor_bpf *skel = NULL;
	int stats_fd = -1, err = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--raw-tp")) {
			raw_tp = true;
		} else if (!strcmp(argv[i], "--stats")) {
			stats = true;
		} else if (!strcmp(argv[i], "--variant") && i + 1 < argc) {
			variant = argv[++i];
			if (!strcmp(variant, "empty"))
				variant = "floor";
		} else {
			fprintf(stderr, "loupe-bench-floor: unknown argument '%s' (usage: loupe-bench-floor [--raw-tp] "
					"[--stats] [--variant empty|pidtgid|lookup|task|sock])\n", argv[i]);
			return 2;
		}
	}
	libbpf_set_print(print_libbpf);

	/* Block the stop signals first: sigwait() below takes them, so a signal never interrupts set-up halfway. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigprocmask(SIG_BLOCK, &stop, NULL);

	if (stats) {
		stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
		if (stats_fd < 0) {
			err = -errno;
			fprintf(stderr, "loupe-bench-floor: cannot enable BPF statistics: %s (needs root)\n",
				strerror(-err));
			goto out;
		}
	}

	skel = floor_bpf__open();
	if (!skel) {
		err = -errno;
		fprintf(stderr, "loupe-bench-floor: cannot open the BPF object: %s\n", strerror(-err));
		goto out;
	}
	bool known = false;
	for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++)
		known |= !strcmp(variant, variants[v]);
	if (!known || (raw_tp && strcmp(variant, "floor"))) {
		fprintf(stderr, "loupe-bench-floor: bad --variant '%s': expected empty, pidtgid, lookup, task or sock "
				"(--raw-tp: empty only)\n", variant);
		err = -EINVAL;
		goto out;
	}
	/* Load only the chosen pair: program names are VARIANT_{enter,exit}_{btf,raw} (sock: sock_{send,recv}_btf). */
	struct bpf_program *prog;
	bpf_object__for_each_program(prog, skel->obj) {
		const char *name = bpf_program__name(prog);
		size_t n = strlen(variant);
		bool mine = !strncmp(name, variant, n) && name[n] == '_';
		bool flavour = strstr(name, raw_tp ? "_raw" : "_btf") != NULL;
		bpf_program__set_autoload(prog, mine && flavour);
	}
	/* As loupe sizes target_svc: one slot per possible tgid. */
	long pid_max = 4194304;
	FILE *f = fopen("/proc/sys/kernel/pid_max", "r");
	if (f) {
		if (fscanf(f, "%ld", &pid_max) != 1)
			pid_max = 4194304;
		fclose(f);
	}
	bpf_map__set_max_entries(skel->maps.floor_svc, (__u32)pid_max);

	err = floor_bpf__load(skel);
	if (err) {
		fprintf(stderr, "loupe-bench-floor: cannot load the %s %s programs: %s (needs root and a kernel with "
				"BTF)\n", variant, raw_tp ? "raw_tp" : "tp_btf", strerror(-err));
		goto out;
	}
	err = floor_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "loupe-bench-floor: cannot attach the %s programs: %s\n", variant, strerror(-err));
		goto out;
	}
	printf("attached %s %s%s\n", variant, raw_tp ? "raw_tp" : "tp_btf", stats ? " with BPF statistics" : "");
	fflush(stdout);

	int sig;
	sigwait(&stop, &sig);

out:
	floor_bpf__destroy(skel);
	if (stats_fd >= 0)
		close(stats_fd);
	return err ? 1 : 0;
}
