// SPDX-License-Identifier: BSD-2-Clause
/* Syscall latency collector: bpf/syscalls.bpf.c -> loupe_syscall_duration_seconds{service_name,syscall},
 * loupe_syscall_untimed_total{service_name,syscall} (the --untimed-syscalls set: counted, not timed),
 * loupe_syscall_calls_total{service_name,syscall} (the calls, timed or not) and
 * loupe_syscall_errors_total{service_name,syscall,errno}. Kernel maps are cumulative and never cleared.
 *
 * --syscalls on attaches sys_enter and sys_exit for good; sampled attaches both for SYSCALL_SAMPLE_ON_MS of every
 * SYSCALL_SAMPLE_PERIOD_MS (poll() does it), so that the host's syscalls pay nothing between windows, and only the
 * windows' calls are counted and timed; loupe_syscall_timing_duty_ratio and loupe_syscall_timing_seconds_total say
 * so. off: the feature does not load. */
#include "collectors/export.h"
#include "core/loupe.h"
#include "lib/bpf_util.h"
#include "lib/log.h"
#include "lib/names.h"
#include "syscalls.h"
#include "syscalls.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

struct syscalls {
	struct loupe *L;
	struct syscalls_bpf *skel;
	int nservices;
	uint64_t *sums; /* scratch: summed histograms of every [service][syscall] */
	uint64_t *calls; /* scratch: summed untimed calls of every [service][syscall] */
	uint64_t *unsampled; /* scratch: summed calls that ended in a sampling window but began before it */
	struct bpf_program *enter, *exit; /* the flavour's programs */
	struct bpf_link *enter_link, *exit_link; /* --syscalls sampled: both attached in windows only */
	uint64_t window_ns;	 /* when the window opened (0: closed) */
	uint64_t next_toggle_ns; /* when to open or close it next */
	uint64_t timed_ns;	 /* time the closed windows were open */
};

static const char *const drop_reasons[SYSCALL_DROP_NR] = {
	[SYSCALL_DROP_ERRMAP_FULL] = "errno_map_full",
	[SYSCALL_DROP_STORAGE] = "task_storage_unavailable",
};

static int syscalls_open(struct loupe *L, void **priv)
{
	const char *hook;
	int err;
	if (L->opt->syscalls == SYSCALLS_OFF) {
		snprintf(L->opening->detail, sizeof(L->opening->detail), "off (--syscalls off)");
		return LOUPE_FEATURE_DISABLED;
	}
	struct syscalls *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->L = L;
	s->nservices = L->opt->rules.nservices;
	s->sums = calloc((size_t)s->nservices * SYSCALL_MAX_NR, sizeof(struct loupe_hist));
	s->calls = calloc((size_t)s->nservices * SYSCALL_MAX_NR, sizeof(uint64_t));
	s->unsampled = calloc((size_t)s->nservices * SYSCALL_MAX_NR, sizeof(uint64_t));
	if (!s->sums || !s->calls || !s->unsampled) {
		err = -ENOMEM;
		goto fail;
	}
	s->skel = syscalls_bpf__open();
	if (!s->skel) {
		err = -errno;
		goto fail;
	}
	_Static_assert(sizeof(s->skel->rodata->untimed_nr) == sizeof(L->opt->untimed), "untimed bitmap size");
	memcpy(s->skel->rodata->untimed_nr, L->opt->untimed, sizeof(L->opt->untimed));
	if ((err = bpf_map__set_max_entries(s->skel->maps.syscall_hist, (__u32)s->nservices * SYSCALL_MAX_NR)) ||
	    (err = bpf_map__set_max_entries(s->skel->maps.syscall_untimed, (__u32)s->nservices * SYSCALL_MAX_NR)) ||
	    (err = bpf_map__set_max_entries(s->skel->maps.syscall_unsampled, (__u32)s->nservices * SYSCALL_MAX_NR)) ||
	    (err = bpf_map__set_max_entries(s->skel->maps.target_svc, L->pid_max)) ||
	    (err = bpf_map__reuse_fd(s->skel->maps.target_svc, L->target_svc_fd)) ||
	    (err = loupe__select_tp_flavour(L, s->skel->obj, &hook)))
		goto fail;
	if ((err = syscalls_bpf__load(s->skel)))
		goto fail;
	bool btf = !strcmp(hook, "tp_btf");
	s->enter = btf ? s->skel->progs.sys_enter_btf : s->skel->progs.sys_enter_raw;
	s->exit = btf ? s->skel->progs.sys_exit_btf : s->skel->progs.sys_exit_raw;
	loupe__add_object(L, s->skel->obj);
	*priv = s;
	return 0;
fail:
	syscalls_bpf__destroy(s->skel);
	free(s->sums);
	free(s->calls);
	free(s->unsampled);
	free(s);
	return err;
}

static int attach_link(struct bpf_program *prog, struct bpf_link **link)
{
	*link = bpf_program__attach(prog);
	return *link ? 0 : -errno;
}

/* A window opens: sys_exit first, so that a call which began before it is counted, not timed; window_seq first of
 * all, so that a start time left by an earlier window (its call ended while sys_exit was detached) is not taken for
 * this window's. */
static int window_open(struct syscalls *s)
{
	int err;
	s->skel->bss->window_seq++; /* the skeleton's mmap of .bss: the programs see it at once */
	if ((err = attach_link(s->exit, &s->exit_link)) || (err = attach_link(s->enter, &s->enter_link))) {
		bpf_link__destroy(s->exit_link);
		s->exit_link = NULL;
		return err;
	}
	s->window_ns = now_ns(CLOCK_MONOTONIC);
	return 0;
}

/* sys_enter first: a call that begins now would never see its sys_exit. */
static void window_close(struct syscalls *s, uint64_t now)
{
	bpf_link__destroy(s->enter_link);
	bpf_link__destroy(s->exit_link);
	s->enter_link = s->exit_link = NULL;
	s->timed_ns += now - s->window_ns;
	s->window_ns = 0;
}

static int syscalls_attach(void *priv)
{
	struct syscalls *s = priv;
	int err = window_open(s);
	if (err)
		return err;
	s->next_toggle_ns = s->window_ns + (uint64_t)SYSCALL_SAMPLE_ON_MS * 1000000;
	return 0;
}

/* --syscalls sampled: both programs attached for SYSCALL_SAMPLE_ON_MS, then detached until the period ends. The
 * first window opens at attach. A failed attach is logged and retried at the next period. */
static int syscalls_poll(void *priv)
{
	struct syscalls *s = priv;
	if (s->L->opt->syscalls != SYSCALLS_SAMPLED)
		return 0;
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	if (now < s->next_toggle_ns)
		return 0;
	const uint64_t on = (uint64_t)SYSCALL_SAMPLE_ON_MS * 1000000, period = (uint64_t)SYSCALL_SAMPLE_PERIOD_MS * 1000000;
	if (s->window_ns) {
		window_close(s, now);
		s->next_toggle_ns += period - on;
	} else {
		int err = window_open(s);
		if (err)
			log_warn("syscall_window_failed", "cannot attach sys_enter and sys_exit for a sampling window: %s",
				 strerror(-err));
		s->next_toggle_ns += err ? period : on;
	}
	if (s->next_toggle_ns < now) /* the loop stalled past a whole window: start again from now */
		s->next_toggle_ns = now + (s->window_ns ? on : period - on);
	return 0;
}

static uint64_t syscalls_poll_due(void *priv)
{
	struct syscalls *s = priv;
	return s->L->opt->syscalls == SYSCALLS_SAMPLED ? s->next_toggle_ns : UINT64_MAX;
}

/* The timed syscalls' histograms ([service][syscall] in syscall_hist), the syscalls a service never made left out. */
static int export_latency(struct syscalls *s, struct metric_family *hist)
{
	const struct target_rules *rules = &s->L->opt->rules;
	const size_t nwords = sizeof(struct loupe_hist) / sizeof(uint64_t);
	char tmp[32];
	int err = percpu_array_sum_all(bpf_map__fd(s->skel->maps.syscall_hist), (uint32_t)s->nservices * SYSCALL_MAX_NR,
				       nwords, s->sums);
	if (err)
		return err;
	for (int svc = 1; svc <= s->nservices; svc++) {
		for (__u32 nr = 0; nr < SYSCALL_MAX_NR; nr++) {
			const uint64_t *words = s->sums + ((size_t)(svc - 1) * SYSCALL_MAX_NR + nr) * nwords;
			uint64_t total = 0;
			for (int k = 0; k < HIST_SLOTS; k++)
				total += words[k];
			if (!total)
				continue;
			const char *v[] = {rules->service[svc], syscall_name(nr, tmp, sizeof(tmp))};
			log2_hist_observe(hist, v, words);
		}
	}
	return 0;
}

/* The --untimed-syscalls set's call counts ([service][syscall] in syscall_untimed). */
static int export_untimed(struct syscalls *s, struct metric_family *untimed)
{
	const struct target_rules *rules = &s->L->opt->rules;
	char tmp[32];
	int err = percpu_array_sum_all(bpf_map__fd(s->skel->maps.syscall_untimed),
				       (uint32_t)s->nservices * SYSCALL_MAX_NR, 1, s->calls);
	if (err)
		return err;
	for (int svc = 1; svc <= s->nservices; svc++) {
		for (__u32 nr = 0; nr < SYSCALL_MAX_NR; nr++) {
			uint64_t n = s->calls[(size_t)(svc - 1) * SYSCALL_MAX_NR + nr];
			if (n) {
				const char *v[] = {rules->service[svc], syscall_name(nr, tmp, sizeof(tmp))};
				family__add(untimed, v, (double)n);
			}
		}
	}
	return 0;
}

/* The calls of each [service][syscall]: the timed ones (the histograms' counts, in s->sums), the untimed set's
 * and those that began before their sampling window (read here). Called after export_latency() and export_untimed(). */
static int export_calls(struct syscalls *s, struct metric_family *calls)
{
	const struct target_rules *rules = &s->L->opt->rules;
	const size_t nwords = sizeof(struct loupe_hist) / sizeof(uint64_t);
	char tmp[32];
	int err = percpu_array_sum_all(bpf_map__fd(s->skel->maps.syscall_unsampled),
				       (uint32_t)s->nservices * SYSCALL_MAX_NR, 1, s->unsampled);
	if (err)
		return err;
	for (int svc = 1; svc <= s->nservices; svc++) {
		for (__u32 nr = 0; nr < SYSCALL_MAX_NR; nr++) {
			size_t i = (size_t)(svc - 1) * SYSCALL_MAX_NR + nr;
			uint64_t n = s->calls[i] + s->unsampled[i];
			for (int k = 0; k < HIST_SLOTS; k++)
				n += s->sums[i * nwords + k];
			if (n) {
				const char *v[] = {rules->service[svc], syscall_name(nr, tmp, sizeof(tmp))};
				family__add(calls, v, (double)n);
			}
		}
	}
	return 0;
}

/* The syscall_errors hash, keyed by service, syscall and errno. */
static void export_errors(struct syscalls *s, struct metric_family *errs)
{
	const struct target_rules *rules = &s->L->opt->rules;
	char tmp[32], tmp2[32];
	int fd = bpf_map__fd(s->skel->maps.syscall_errors);
	struct syscall_err_key key, next, *prev = NULL;
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		uint64_t count;
		/* rt_sigreturn "returns" the interrupted syscall's restored result: not an error of its own. */
		if (next.nr != SYS_rt_sigreturn && !percpu_sum_u64(fd, &next, &count, 1) && next.service >= 1 &&
		    next.service <= s->nservices) {
			const char *v[] = {rules->service[next.service], syscall_name(next.nr, tmp, sizeof(tmp)),
					   errno_name(next.err, tmp2, sizeof(tmp2))};
			family__add(errs, v, (double)count);
		}
		key = next;
		prev = &key;
	}
}

static int syscalls_collect(void *priv, struct registry *reg)
{
	struct syscalls *s = priv;
	/* Declared together, before any map is read: the exposition lists families in declaration order. */
	static const char *const hist_labels[] = {"service_name", "syscall", NULL};
	struct metric_family *hist =
		log2_hist_family(reg, "loupe_syscall_duration_seconds",
				 "Time target processes spent in system calls, from sys_enter to sys_exit.", hist_labels);
	static const char *const err_labels[] = {"service_name", "syscall", "errno", NULL};
	struct metric_family *errs = registry__family(reg, "loupe_syscall_errors_total",
						      "System calls of target processes that returned an error, by errno (--syscalls sampled: those that "
						      "ended in a sampling window).",
						      METRIC_COUNTER, err_labels, 0, FAMILY_SNAPSHOT);
	static const char *const untimed_labels[] = {"service_name", "syscall", NULL};
	struct metric_family *untimed = registry__family(
		reg, "loupe_syscall_untimed_total",
		"System calls of target processes in the --untimed-syscalls set: counted, not timed (--syscalls "
		"sampled: those that ended in a sampling window).", METRIC_COUNTER,
		untimed_labels, 0, FAMILY_SNAPSHOT);
	struct metric_family *calls = registry__family(
		reg, "loupe_syscall_calls_total",
		"System calls of target processes, timed or not (--syscalls on: every one; sampled: those that ended in "
		"a sampling window).",
		METRIC_COUNTER, untimed_labels, 0, FAMILY_SNAPSHOT);
	struct metric_family *duty = registry__family(
		reg, "loupe_syscall_timing_duty_ratio",
		"Fraction of the time syscalls are counted and timed (1: --syscalls on; --syscalls sampled: the windows' "
		"share, so the loupe_syscall_* families hold a sample of the calls).",
		METRIC_GAUGE, NULL, 0, FAMILY_SNAPSHOT);
	struct metric_family *timed = registry__family(
		reg, "loupe_syscall_timing_seconds_total",
		"Seconds during which syscalls were counted and timed (--syscalls sampled: the windows).", METRIC_COUNTER, NULL, 0,
		FAMILY_SNAPSHOT);
	if (!hist || !errs || !untimed || !calls || !duty || !timed)
		return -ENOMEM;

	int err;
	if ((err = export_latency(s, hist)) || (err = export_untimed(s, untimed)) || (err = export_calls(s, calls)))
		return err;
	uint64_t now = now_ns(CLOCK_MONOTONIC), on_ns = s->timed_ns + (s->window_ns ? now - s->window_ns : 0);
	family__add(duty, NULL,
		    s->L->opt->syscalls == SYSCALLS_SAMPLED ? (double)SYSCALL_SAMPLE_ON_MS / SYSCALL_SAMPLE_PERIOD_MS : 1.0);
	family__add(timed, NULL, (double)on_ns / 1e9);
	export_errors(s, errs);
	return loupe_export_drops(reg, "syscalls", bpf_map__fd(s->skel->maps.syscall_drops), drop_reasons,
				  SYSCALL_DROP_NR);
}

static void syscalls_status(void *priv, struct buf *json)
{
	struct syscalls *s = priv;
	/* The option was checked against the syscall table: names only, nothing to escape. */
	buf__printf(json, "\"untimed_syscalls\":\"%s\",\"mode\":\"%s\",\"timing_now\":%s",
		    s->L->opt->untimed_syscalls ? s->L->opt->untimed_syscalls : "",
		    s->L->opt->syscalls == SYSCALLS_SAMPLED ? "sampled" : "on", s->enter_link ? "true" : "false");
}

static void syscalls_close(void *priv)
{
	struct syscalls *s = priv;
	if (!s)
		return;
	bpf_link__destroy(s->enter_link);
	bpf_link__destroy(s->exit_link);
	syscalls_bpf__destroy(s->skel);
	free(s->sums);
	free(s->calls);
	free(s->unsampled);
	free(s);
}

const struct collector syscalls_collector = {
	.name = "syscalls",
	.open = syscalls_open,
	.attach = syscalls_attach,
	.poll = syscalls_poll,
	.poll_period_ms = SYSCALL_SAMPLE_PERIOD_MS,
	.poll_due_ns = syscalls_poll_due,
	.collect = syscalls_collect,
	.status = syscalls_status,
	.close = syscalls_close,
};
