// SPDX-License-Identifier: BSD-2-Clause
/* Loupe's own metrics: build info, per-program BPF run time and count, feature state, process_* for itself. */
#include "version.h"
#include "core/bpf_stats.h"
#include "core/loupe.h"
#include "core/selfstats.h"
#include "lib/log.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void process_metrics(struct registry *reg)
{
	char *stat = NULL;
	if (read_file("/proc/self/stat", &stat) < 0)
		return;
	/* Fields after the comm: 14 utime, 15 stime, 22 starttime, 23 vsize, 24 rss (pages). */
	unsigned long long f[64] = {0};
	char *p = strrchr(stat, ')');
	int field = 3;
	for (p = p ? p + 2 : NULL; p && *p && field < 64; field++) {
		f[field] = strtoull(p, &p, 10);
		while (*p == ' ')
			p++;
		if (field == 3) /* state is a letter */
			while (*p && *p != ' ')
				p++;
	}
	free(stat);
	long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	char *uptime = NULL;
	double boot = 0;
	if (read_file("/proc/uptime", &uptime) >= 0) {
		boot = (double)time(NULL) - strtod(uptime, NULL);
		free(uptime);
	}
	unsigned fds = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		for (struct dirent *de; (de = readdir(d));)
			fds += de->d_name[0] != '.';
		closedir(d);
		fds--; /* the directory's own fd */
	}
	struct {
		const char *name, *help;
		enum metric_type type;
		double v;
	} m[] = {
		{"process_cpu_seconds_total", "Total user and system CPU time spent by loupe in seconds.", METRIC_COUNTER,
		 (double)(f[14] + f[15]) / (double)tck},
		{"process_resident_memory_bytes", "Resident memory size of loupe in bytes.", METRIC_GAUGE,
		 (double)f[24] * (double)page},
		{"process_virtual_memory_bytes", "Virtual memory size of loupe in bytes.", METRIC_GAUGE, (double)f[23]},
		{"process_start_time_seconds", "Start time of loupe since unix epoch in seconds.", METRIC_GAUGE,
		 boot + (double)f[22] / (double)tck},
		{"process_open_fds", "Number of open file descriptors of loupe.", METRIC_GAUGE, fds},
	};
	for (size_t i = 0; i < ARRAY_SIZE(m); i++) {
		struct metric_family *fam = registry__family(reg, m[i].name, m[i].help, m[i].type, NULL, 1, FAMILY_SNAPSHOT);
		if (fam)
			family__set(fam, NULL, m[i].v);
	}
}

static void bpf_program_metrics(struct loupe *L, struct registry *reg)
{
	static const char *const labels[] = {"program", NULL};
	struct metric_family *rt = registry__family(
		reg, "loupe_bpf_program_run_seconds_total",
		"Time spent running each BPF program while kernel BPF statistics were on "
		"(loupe_bpf_stats_enabled_seconds_total; by default 2 s in every 20 s).", METRIC_COUNTER,
		labels, 256, FAMILY_SNAPSHOT);
	struct metric_family *rc = registry__family(reg, "loupe_bpf_program_runs_total",
						    "Times each BPF program ran while kernel BPF statistics were on.",
						    METRIC_COUNTER,
						    labels, 256, FAMILY_SNAPSHOT);
	if (!rt || !rc)
		return;
	for (int i = 0; i < L->nobjects; i++) {
		struct bpf_program *prog;
		bpf_object__for_each_program(prog, L->objects[i]) {
			int fd = bpf_program__fd(prog);
			if (fd < 0)
				continue;
			struct bpf_prog_info info = {0};
			__u32 len = sizeof(info);
			if (bpf_obj_get_info_by_fd(fd, &info, &len))
				continue;
			const char *v[] = {bpf_program__name(prog)};
			family__add(rt, v, ns_to_seconds(info.run_time_ns));
			family__add(rc, v, (double)info.run_cnt);
		}
	}
}

void selfstats_collect(struct loupe *L, struct registry *reg)
{
	static const char *const build_labels[] = {"version", "revision", "libbpf_version", NULL};
	struct metric_family *bi = registry__family(reg, "loupe_build_info", "Loupe build information; always 1.",
						    METRIC_GAUGE, build_labels, 1, 0);
	if (bi) {
		const char *v[] = {LOUPE_VERSION, LOUPE_COMMIT, libbpf_version_string()};
		family__set(bi, v, 1);
	}
	static const char *const feat_labels[] = {"feature", "hook", NULL};
	struct metric_family *fe = registry__family(reg, "loupe_feature_enabled",
						    "1 when the feature's BPF programs are attached and running, else 0.",
						    METRIC_GAUGE, feat_labels, 64, FAMILY_SNAPSHOT);
	for (int i = 0; fe && i < L->nfeatures; i++) {
		const struct feature *ft = &L->features[i];
		const char *v[] = {ft->ops->name, ft->hook ? ft->hook : "none"};
		family__set(fe, v, ft->state == FEATURE_RUNNING);
	}
	struct metric_family *ls = registry__family(reg, "loupe_log_messages_suppressed_total",
						    "Log messages dropped by the log rate limiter.", METRIC_COUNTER, NULL,
						    1, FAMILY_SNAPSHOT);
	if (ls)
		family__set(ls, NULL, (double)log_suppressed_total());
	static const char *const http_labels[] = {"reason", NULL};
	struct metric_family *hc = registry__family(
		reg, "loupe_http_connections_refused_total",
		"Connections the HTTP server shut or requests it refused to protect itself: head_deadline (no whole "
		"request head 10 s after connecting or the last answer), uri_too_long (over 2048 bytes or 16 "
		"parameters: 414), client_cert (a TLS handshake whose client certificate the web config's "
		"client_auth_type refuses).", METRIC_COUNTER, http_labels, 3, FAMILY_SNAPSHOT);
	if (hc) {
		family__set(hc, (const char *[]){"head_deadline"},
			    (double)__atomic_load_n(&L->http_head_timeouts, __ATOMIC_RELAXED));
		family__set(hc, (const char *[]){"uri_too_long"},
			    (double)__atomic_load_n(&L->http_uri_too_long, __ATOMIC_RELAXED));
		family__set(hc, (const char *[]){"client_cert"},
			    (double)__atomic_load_n(&L->http_client_cert_refused, __ATOMIC_RELAXED));
	}
	/* Declared with every reason at 0 even without --web-config, so that an alert on it needs no absent(). */
	struct metric_family *rr = registry__family(
		reg, "loupe_http_requests_refused_total",
		"Requests the HTTP server refused for access control: auth_missing (401, no basic-auth credentials), "
		"auth_failed (401, unknown user or wrong password), auth_throttled (429, uncached password checks "
		"used their time budget), session_rate (429, more profiling sessions than --sessions-per-minute).",
		METRIC_COUNTER, http_labels, 4, FAMILY_SNAPSHOT);
	if (rr) {
		const struct { const char *reason; const uint64_t *n; } refused[] = {
			{"auth_missing", &L->http_auth_missing},
			{"auth_failed", &L->http_auth_failed},
			{"auth_throttled", &L->http_auth_throttled},
			{"session_rate", &L->http_session_rate},
		};
		for (size_t i = 0; i < ARRAY_SIZE(refused); i++)
			family__set(rr, (const char *[]){refused[i].reason},
				    (double)__atomic_load_n(refused[i].n, __ATOMIC_RELAXED));
	}
	if (L->bpf_stats_on) {
		bpf_program_metrics(L, reg);
		struct metric_family *w = registry__family(
			reg, "loupe_bpf_stats_enabled_seconds_total",
			"Seconds kernel BPF statistics were on: divide loupe_bpf_program_run_seconds_total by it for "
			"the CPU share of the programs.", METRIC_COUNTER, NULL, 1, FAMILY_SNAPSHOT);
		if (w)
			family__set(w, NULL, bpf_stats__seconds(L));
	}
	process_metrics(reg);
}
