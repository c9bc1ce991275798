/* Profiler collector (groundwork of the profiling issue): bpf/profiler.bpf.c -> CPU samples of target threads
 * from a cpu-clock perf event on every CPU at --profile-hz, and their off-CPU time (sched_switch, --offcpu).
 * Today it counts what arrives (loupe_profile_samples_total, loupe_offcpu_seconds_total per service); stacks
 * reach userspace with every record and are dropped here until symbolisation and the profile store are wired in
 * (src/symbolize.c, src/profile.c, src/pprof.c, src/flamegraph.c). */
#include "loupe.h"
#include "log.h"
#include "profiler.h"
#include "profiler.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct profiler {
	struct loupe *L;
	struct profiler_bpf *skel;
	struct ring_buffer *rb;
	int ncpus;
	int *pfds;
	struct bpf_link **links;
	uint64_t samples[LOUPE_MAX_SERVICES + 1];
	uint64_t offcpu_ns[LOUPE_MAX_SERVICES + 1];
	uint64_t stackless; /* samples whose user and kernel stacks both failed */
};

static const char *const drop_reasons[PROF_DROP_NR] = {
	[PROF_DROP_RINGBUF] = "ringbuf_full",
	[PROF_DROP_STORAGE] = "task_storage_unavailable",
};

static int profiler_open(struct loupe *L, void **priv)
{
	if (!L->opt->profile_hz) {
		snprintf(L->opening->detail, sizeof(L->opening->detail), "off (--profile-hz 0)");
		return LOUPE_FEATURE_DISABLED;
	}
	struct profiler *pr = calloc(1, sizeof(*pr));
	const char *hook;
	int err;
	if (!pr)
		return -ENOMEM;
	pr->L = L;
	pr->ncpus = libbpf_num_possible_cpus();
	pr->skel = profiler_bpf__open();
	if (!pr->skel) {
		err = -errno;
		goto fail;
	}
	pr->skel->rodata->profile_all = L->opt->scope == SCOPE_ALL;
	if ((err = bpf_map__set_max_entries(pr->skel->maps.target_svc, L->pid_max)) ||
	    (err = bpf_map__reuse_fd(pr->skel->maps.target_svc, L->target_svc_fd)) ||
	    (err = loupe__select_tp_flavour(L, pr->skel->obj, &hook)))
		goto fail;
	if (!L->opt->offcpu) {
		bpf_program__set_autoload(pr->skel->progs.offcpu_switch_btf, false);
		bpf_program__set_autoload(pr->skel->progs.offcpu_switch_raw, false);
	}
	if ((err = profiler_bpf__load(pr->skel)))
		goto fail;
	loupe__add_object(L, pr->skel->obj);
	L->opening->hook = "perf_event";
	*priv = pr;
	return 0;
fail:
	profiler_bpf__destroy(pr->skel);
	free(pr);
	return err;
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct profiler *pr = ctx;
	const struct prof_rec *r = data;
	if (size < sizeof(*r) || r->service > LOUPE_MAX_SERVICES)
		return 0;
	if (r->type == REC_PROF_SAMPLE) {
		pr->samples[r->service]++;
		pr->stackless += r->ustack_bytes <= 0 && r->kstack_bytes <= 0;
	} else if (r->type == REC_PROF_OFFCPU) {
		pr->offcpu_ns[r->service] += r->value_ns;
	}
	return 0;
}

static int profiler_attach(void *priv)
{
	struct profiler *pr = priv;
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.size = sizeof(attr),
		.config = PERF_COUNT_SW_CPU_CLOCK,
		.freq = 1,
		.sample_freq = pr->L->opt->profile_hz,
	};
	pr->pfds = calloc((size_t)pr->ncpus, sizeof(*pr->pfds));
	pr->links = calloc((size_t)pr->ncpus, sizeof(*pr->links));
	if (!pr->pfds || !pr->links)
		return -ENOMEM;
	int attached = 0;
	for (int cpu = 0; cpu < pr->ncpus; cpu++) {
		pr->pfds[cpu] = (int)syscall(__NR_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
		if (pr->pfds[cpu] < 0) {
			if (errno != ENODEV) /* possible but not online */
				log_warn("perf_event_open", "cpu %d: %s", cpu, strerror(errno));
			continue;
		}
		pr->links[cpu] = bpf_program__attach_perf_event(pr->skel->progs.prof_sample, pr->pfds[cpu]);
		if (!pr->links[cpu]) {
			int err = -errno;
			log_warn("profile_attach", "cpu %d: %s", cpu, strerror(-err));
			continue;
		}
		attached++;
	}
	if (!attached)
		return -ENODEV;
	if (pr->L->opt->offcpu) {
		struct bpf_program *prog = pr->skel->progs.offcpu_switch_btf;
		if (!bpf_program__autoload(prog))
			prog = pr->skel->progs.offcpu_switch_raw;
		if (!bpf_program__attach(prog))
			return -errno;
	}
	pr->rb = ring_buffer__new(bpf_map__fd(pr->skel->maps.prof_events), on_record, pr, NULL);
	return pr->rb ? 0 : -errno;
}

static int profiler_poll(void *priv)
{
	struct profiler *pr = priv;
	int n = ring_buffer__consume(pr->rb);
	return n < 0 ? n : 0;
}

static int profiler_poll_fd(void *priv)
{
	struct profiler *pr = priv;
	return pr->rb ? ring_buffer__epoll_fd(pr->rb) : -1;
}

static int profiler_collect(void *priv, struct registry *reg)
{
	struct profiler *pr = priv;
	profiler_poll(pr);
	static const char *const l_svc[] = {"service_name", NULL};
	struct metric_family *samples = registry__family(
		reg, "loupe_profile_samples_total",
		"CPU profile samples (cpu-clock at --profile-hz on every CPU) taken while a target thread ran.",
		METRIC_COUNTER, l_svc, 0, FAMILY_SNAPSHOT);
	struct metric_family *offcpu = registry__family(
		reg, "loupe_offcpu_seconds_total",
		"Time target threads spent blocked (off CPU and not runnable), in blocks of at least 1 ms (--offcpu).",
		METRIC_COUNTER, l_svc, 0, FAMILY_SNAPSHOT);
	if (!samples || !offcpu)
		return -ENOMEM;
	for (int s = 1; s <= pr->L->opt->rules.nservices; s++) {
		const char *v[] = {target_rules__service(&pr->L->opt->rules, s)};
		family__add(samples, v, (double)pr->samples[s]);
		if (pr->L->opt->offcpu)
			family__add(offcpu, v, (double)pr->offcpu_ns[s] / 1e9);
	}
	return loupe_export_drops(reg, "profiler", bpf_map__fd(pr->skel->maps.prof_drops), drop_reasons,
				  PROF_DROP_NR);
}

static void profiler_status(void *priv, struct buf *json)
{
	struct profiler *pr = priv;
	buf__printf(json, "\"hz\":%u,\"offcpu\":%s", pr->L->opt->profile_hz, pr->L->opt->offcpu ? "true" : "false");
}

static void profiler_close(void *priv)
{
	struct profiler *pr = priv;
	if (!pr)
		return;
	ring_buffer__free(pr->rb);
	for (int cpu = 0; pr->links && cpu < pr->ncpus; cpu++)
		bpf_link__destroy(pr->links[cpu]);
	for (int cpu = 0; pr->pfds && cpu < pr->ncpus; cpu++)
		if (pr->pfds[cpu] > 0)
			close(pr->pfds[cpu]);
	profiler_bpf__destroy(pr->skel);
	free(pr->links);
	free(pr->pfds);
	free(pr);
}

const struct collector profiler_collector = {
	.name = "profiler",
	.open = profiler_open,
	.attach = profiler_attach,
	.poll = profiler_poll,
	.poll_fd = profiler_poll_fd,
	.collect = profiler_collect,
	.status = profiler_status,
	.close = profiler_close,
};
