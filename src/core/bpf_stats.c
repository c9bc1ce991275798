// SPDX-License-Identifier: BSD-2-Clause
/* Kernel BPF statistics windows (src/core/bpf_stats.h). The fd from bpf_enable_stats() is a reference: closing
 * it (or exiting) restores whatever setting the host had. While it is held every BPF program run on the host pays
 * two clock reads (measured: docs/performance.md), so by default statistics are on in windows: per-run cost
 * (run_seconds / runs) stays exact, totals cover the windows (loupe_bpf_stats_enabled_seconds_total). */
#include "core/bpf_stats.h"
#include "core/loupe.h"
#include "lib/log.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* 1 when the host turned statistics on for everyone (sysctl kernel.bpf_stats_enabled=1), else 0. */
static int host_stats_enabled(void)
{
	char c = 0;
	FILE *f = fopen("/proc/sys/kernel/bpf_stats_enabled", "re");
	if (f) {
		if (fread(&c, 1, 1, f) != 1)
			c = 0;
		fclose(f);
	}
	return c == '1';
}

static void open_window(struct loupe *L, uint64_t now)
{
	L->bpf_stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (L->bpf_stats_fd >= 0) {
		L->bpf_stats_since_ns = now;
		return;
	}
	int err = errno;
	/* bpf_enable_stats() needs CAP_SYS_ADMIN. Without it, statistics the host keeps on are still read (the run
	 * times are per program, whoever turned them on); loupe then cannot window them. */
	if (L->bpf_stats_seconds == 0 && host_stats_enabled()) {
		log_info("bpf_stats_host", "kernel BPF statistics: cannot turn them on (%s), but the host keeps them on "
					   "(kernel.bpf_stats_enabled=1): reading them", strerror(err));
		L->bpf_stats_host = true;
		L->bpf_stats_since_ns = now;
		return;
	}
	log_warn("bpf_stats_unavailable", "kernel BPF statistics unavailable (%s): per-program figures are not "
					  "exported (they need CAP_SYS_ADMIN, or the host's sysctl "
					  "kernel.bpf_stats_enabled=1)", strerror(err));
	L->bpf_stats_on = false;
}

void bpf_stats__stop(struct loupe *L, uint64_t now)
{
	if (L->bpf_stats_host) {
		L->bpf_stats_host = false;
		L->bpf_stats_seconds += ns_to_seconds(now - L->bpf_stats_since_ns);
		return;
	}
	if (L->bpf_stats_fd < 0)
		return;
	close(L->bpf_stats_fd);
	L->bpf_stats_fd = -1;
	L->bpf_stats_seconds += ns_to_seconds(now - L->bpf_stats_since_ns);
}

void bpf_stats__start(struct loupe *L, uint64_t now)
{
	L->bpf_stats_on = L->opt->bpf_stats != BPF_STATS_OFF;
	if (!L->bpf_stats_on)
		return;
	L->bpf_stats_next_ns = now + BPF_STATS_PERIOD_S * NSEC_PER_SEC;
	open_window(L, now);
}

double bpf_stats__seconds(const struct loupe *L)
{
	double s = L->bpf_stats_seconds;
	if (L->bpf_stats_fd >= 0 || L->bpf_stats_host)
		s += ns_to_seconds(now_ns(CLOCK_MONOTONIC) - L->bpf_stats_since_ns);
	return s;
}

void bpf_stats__tick(struct loupe *L, uint64_t now)
{
	if (!L->bpf_stats_on || L->bpf_stats_host || L->opt->bpf_stats != BPF_STATS_SAMPLED)
		return;
	uint64_t window = (L->bpf_stats_seconds == 0 ? BPF_STATS_FIRST_WINDOW_S : BPF_STATS_WINDOW_S) * NSEC_PER_SEC;
	if (L->bpf_stats_fd >= 0 && now - L->bpf_stats_since_ns >= window) {
		pthread_mutex_lock(&L->lock);
		bpf_stats__stop(L, now);
		pthread_mutex_unlock(&L->lock);
	} else if (L->bpf_stats_fd < 0 && now >= L->bpf_stats_next_ns) {
		L->bpf_stats_next_ns = now + BPF_STATS_PERIOD_S * NSEC_PER_SEC;
		pthread_mutex_lock(&L->lock);
		open_window(L, now);
		pthread_mutex_unlock(&L->lock);
	}
}
