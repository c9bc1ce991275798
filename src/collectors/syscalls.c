// SPDX-License-Identifier: BSD-2-Clause
/* Syscall latency collector: bpf/syscalls.bpf.c -> loupe_syscall_duration_seconds{service_name,syscall},
 * loupe_syscall_untimed_total{service_name,syscall} (the --untimed-syscalls set: counted, not timed) and
 * loupe_syscall_errors_total{service_name,syscall,errno} (both sets). Kernel maps are cumulative and never cleared. The same
 * object carries the payload capture (bpf/payload.bpf.h), whose records src/collectors/payload.c reads. */
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
};

static const char *const drop_reasons[SYSCALL_DROP_NR] = {
	[SYSCALL_DROP_ERRMAP_FULL] = "errno_map_full",
	[SYSCALL_DROP_STORAGE] = "task_storage_unavailable",
};

static int syscalls_open(struct loupe *L, void **priv)
{
	struct syscalls *s = calloc(1, sizeof(*s));
	const char *hook;
	int err;
	if (!s)
		return -ENOMEM;
	s->L = L;
	s->nservices = L->opt->rules.nservices;
	s->sums = calloc((size_t)s->nservices * SYSCALL_MAX_NR, sizeof(struct loupe_hist));
	s->calls = calloc((size_t)s->nservices * SYSCALL_MAX_NR, sizeof(uint64_t));
	if (!s->sums || !s->calls) {
		err = -ENOMEM;
		goto fail;
	}
	s->skel = syscalls_bpf__open();
	if (!s->skel) {
		err = -errno;
		goto fail;
	}
	s->skel->rodata->capture_bytes = L->opt->capture_bytes;
	_Static_assert(sizeof(s->skel->rodata->untimed_nr) == sizeof(L->opt->untimed), "untimed bitmap size");
	memcpy(s->skel->rodata->untimed_nr, L->opt->untimed, sizeof(L->opt->untimed));
	if ((err = bpf_map__set_max_entries(s->skel->maps.syscall_hist, (__u32)s->nservices * SYSCALL_MAX_NR)) ||
	    (err = bpf_map__set_max_entries(s->skel->maps.syscall_untimed, (__u32)s->nservices * SYSCALL_MAX_NR)) ||
	    (err = bpf_map__set_max_entries(s->skel->maps.target_svc, L->pid_max)) ||
	    (err = bpf_map__reuse_fd(s->skel->maps.target_svc, L->target_svc_fd)) ||
	    (err = loupe__select_tp_flavour(L, s->skel->obj, &hook)))
		goto fail;
	if (!L->opt->capture_bytes) { /* payload capture off: its close hook is not needed either */
		bpf_program__set_autoload(s->skel->progs.pl_state_btf, false);
		bpf_program__set_autoload(s->skel->progs.pl_state_raw, false);
	}
	if ((err = syscalls_bpf__load(s->skel)))
		goto fail;
	loupe__add_object(L, s->skel->obj);
	L->sys_obj = s->skel->obj;
	*priv = s;
	return 0;
fail:
	syscalls_bpf__destroy(s->skel);
	free(s->sums);
	free(s->calls);
	free(s);
	return err;
}

static int syscalls_attach(void *priv)
{
	struct syscalls *s = priv;
	return syscalls_bpf__attach(s->skel);
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
						      "System calls of target processes that returned an error, by errno.",
						      METRIC_COUNTER, err_labels, 0, FAMILY_SNAPSHOT);
	static const char *const untimed_labels[] = {"service_name", "syscall", NULL};
	struct metric_family *untimed = registry__family(
		reg, "loupe_syscall_untimed_total",
		"System calls of target processes in the --untimed-syscalls set: counted, not timed.", METRIC_COUNTER,
		untimed_labels, 0, FAMILY_SNAPSHOT);
	if (!hist || !errs || !untimed)
		return -ENOMEM;

	int err;
	if ((err = export_latency(s, hist)) || (err = export_untimed(s, untimed)))
		return err;
	export_errors(s, errs);
	return loupe_export_drops(reg, "syscalls", bpf_map__fd(s->skel->maps.syscall_drops), drop_reasons,
				  SYSCALL_DROP_NR);
}

static void syscalls_status(void *priv, struct buf *json)
{
	struct syscalls *s = priv;
	/* The option was checked against the syscall table: names only, nothing to escape. */
	buf__printf(json, "\"untimed_syscalls\":\"%s\"", s->L->opt->untimed_syscalls ? s->L->opt->untimed_syscalls : "");
}

static void syscalls_close(void *priv)
{
	struct syscalls *s = priv;
	if (!s)
		return;
	if (s->L->sys_obj == s->skel->obj)
		s->L->sys_obj = NULL;
	syscalls_bpf__destroy(s->skel);
	free(s->sums);
	free(s->calls);
	free(s);
}

const struct collector syscalls_collector = {
	.name = "syscalls",
	.open = syscalls_open,
	.attach = syscalls_attach,
	.collect = syscalls_collect,
	.status = syscalls_status,
	.close = syscalls_close,
};
