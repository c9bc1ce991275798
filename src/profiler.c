/* Profiler collector: bpf/profiler.bpf.c -> CPU samples of target threads from a cpu-clock perf event on every
 * CPU at --profile-hz, and their off-CPU time (sched_switch, --offcpu). Each record's stacks are symbolised at
 * once (src/symbolize.c: the process's mappings are snapshot at its first record and kept after it exits) and
 * added to the profile of the current minute (src/profile.c); PROF_SLOTS minutes are kept, and
 * loupe__profile() merges the last ones into pprof or an SVG flame graph for the HTTP endpoints. Also counted per
 * service: loupe_profile_samples_total, loupe_offcpu_seconds_total. */
#include "loupe.h"
#include "flamegraph.h"
#include "log.h"
#include "pprof.h"
#include "profile.h"
#include "profiler.h"
#include "profiler.skel.h"
#include "symbolize.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PROF_SLOTS 10   /* minutes of continuous profile kept: ?window= up to 10m */
#define PROF_PIDS 1024  /* processes whose mappings are kept (open addressing; the oldest go first) */

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
	struct sym_cache *syms;
	struct pid_maps {
		uint32_t pid;
		struct proc_maps *m;
	} maps[PROF_PIDS];
	struct sym_frame sf[2 * PROF_STACK_MAX];
	struct profile_frame pf[2 * PROF_STACK_MAX];
	/* Profiles of the last PROF_SLOTS minutes, [kind][minute % PROF_SLOTS]; minute[] says which minute. */
	struct profile *slot[2][PROF_SLOTS];
	uint64_t minute[2][PROF_SLOTS];
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
	if (!(pr->syms = sym_cache__new(NULL))) {
		free(pr);
		return -ENOMEM;
	}
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
	sym_cache__free(pr->syms);
	free(pr);
	return err;
}

/* The mappings snapshot of pid: taken at its first record, kept after it exits (a later process with the same
 * pid replaces it: proc_maps__refresh() tells them apart by start time). */
static struct proc_maps *maps_of(struct profiler *pr, uint32_t pid)
{
	struct pid_maps *e = &pr->maps[(pid * 2654435761u) % PROF_PIDS];
	if (e->m && e->pid == pid)
		return e->m;
	if (e->m) {
		sym_cache__drop_pid(pr->syms, (pid_t)e->pid);
		proc_maps__free(e->m);
	}
	int err;
	e->pid = pid;
	e->m = proc_maps__snapshot(pr->syms, (pid_t)pid, &err);
	return e->m;
}

/* The current minute's profile of a kind (a new one when the minute changed). */
static struct profile *current_profile(struct profiler *pr, enum profile_kind kind)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t minute = (uint64_t)ts.tv_sec / 60;
	unsigned i = (unsigned)(minute % PROF_SLOTS);
	if (pr->minute[kind][i] != minute || !pr->slot[kind][i]) {
		profile__free(pr->slot[kind][i]);
		pr->slot[kind][i] = profile__new(kind, kind == PROFILE_CPU ? pr->L->opt->profile_hz : 0);
		pr->minute[kind][i] = minute;
		profile__set_time(pr->slot[kind][i], minute * 60 * 1000000000ull, 60 * 1000000000ull);
	}
	return pr->slot[kind][i];
}

/* Kernel frames, then user frames, leaf first (return addresses: all but the innermost are looked up at addr - 1,
 * inside the call). */
static size_t symbolise(struct profiler *pr, const struct prof_rec *r, const __u64 *kstack, int kn,
			const __u64 *ustack, int un)
{
	size_t n = 0;
	for (int i = 0; i < kn && n < ARRAY_SIZE(pr->sf); i++, n++) {
		sym_resolve_kernel(pr->syms, kstack[i] - (n ? 1 : 0), &pr->sf[n]);
		/* The sched_switch stack starts inside loupe's own program and the tracing glue: not the thread's. */
		if (!n && (!strncmp(pr->sf[0].name, "bpf_", 4) || !strncmp(pr->sf[0].name, "__bpf_", 6)))
			n--;
	}
	struct proc_maps *m = un > 0 ? maps_of(pr, r->tgid) : NULL;
	for (int i = 0; m && i < un && n < ARRAY_SIZE(pr->sf); i++, n++)
		sym_resolve_user(pr->syms, m, ustack[i] - (n ? 1 : 0), &pr->sf[n]);
	for (size_t i = 0; i < n; i++)
		pr->pf[i] = (struct profile_frame){.name = pr->sf[i].name, .module = pr->sf[i].module};
	return n;
}

/* A stack of the prof_stacks map (off-CPU records) into buf; its frame count. */
static int stack_of(struct profiler *pr, int32_t id, __u64 *buf)
{
	if (id < 0 || bpf_map_lookup_elem(bpf_map__fd(pr->skel->maps.prof_stacks), &id, buf))
		return 0;
	int n = 0;
	while (n < PROF_STACK_MAX && buf[n])
		n++;
	return n;
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct profiler *pr = ctx;
	const struct prof_rec *r = data;
	if (size < sizeof(*r) || r->service > LOUPE_MAX_SERVICES)
		return 0;
	const char *svc = target_rules__service(&pr->L->opt->rules, (int)r->service);
	char comm[sizeof(r->comm) + 1];
	memcpy(comm, r->comm, sizeof(r->comm));
	comm[sizeof(r->comm)] = 0;
	if (r->type == REC_PROF_SAMPLE) {
		pr->samples[r->service]++;
		pr->stackless += r->ustack_bytes <= 0 && r->kstack_bytes <= 0;
		int kn = r->kstack_bytes > 0 ? r->kstack_bytes / 8 : 0, un = r->ustack_bytes > 0 ? r->ustack_bytes / 8 : 0;
		size_t n = symbolise(pr, r, r->kstack, kn, r->ustack, un);
		struct profile *p = current_profile(pr, PROFILE_CPU);
		if (p)
			profile__add(p, svc, comm, pr->pf, n, 1, 1000000000ull / pr->L->opt->profile_hz);
	} else if (r->type == REC_PROF_OFFCPU) {
		pr->offcpu_ns[r->service] += r->value_ns;
		static __u64 kbuf[PROF_STACK_MAX], ubuf[PROF_STACK_MAX];
		int kn = stack_of(pr, r->kstack_id, kbuf), un = stack_of(pr, r->ustack_id, ubuf);
		size_t n = symbolise(pr, r, kbuf, kn, ubuf, un);
		struct profile *p = current_profile(pr, PROFILE_OFFCPU);
		if (p)
			profile__add(p, svc, comm, pr->pf, n, 1, r->value_ns);
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
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < PROF_SLOTS; i++)
			profile__free(pr->slot[k][i]);
	for (int i = 0; i < PROF_PIDS; i++)
		proc_maps__free(pr->maps[i].m);
	sym_cache__free(pr->syms);
	free(pr->links);
	free(pr->pfds);
	free(pr);
}

int loupe__profile(struct loupe *L, const struct profile_request *q, struct buf *out, const char **ctype, char *err,
		   size_t errlen)
{
	struct profiler *pr = NULL;
	for (int i = 0; i < L->nfeatures; i++)
		if (L->features[i].ops == &profiler_collector && L->features[i].state == FEATURE_RUNNING)
			pr = L->features[i].priv;
	if (!pr) {
		snprintf(err, errlen, "the profiler is not running (see /status)");
		return 503;
	}
	if (q->kind == PROFILE_OFFCPU && !L->opt->offcpu) {
		snprintf(err, errlen, "off-CPU profiling is off: start loupe with --offcpu");
		return 503;
	}
	int svc = 0;
	if (q->service) {
		for (int s = 1; s <= L->opt->rules.nservices; s++)
			if (!strcmp(target_rules__service(&L->opt->rules, s), q->service))
				svc = s;
		if (!svc) {
			snprintf(err, errlen, "no service named '%.64s' (see /status)", q->service);
			return 400;
		}
	}
	pthread_mutex_lock(&L->lock);
	profiler_poll(pr);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now_min = (uint64_t)ts.tv_sec / 60, minutes = (q->window_s + 59) / 60;
	struct profile *p = profile__new(q->kind, q->kind == PROFILE_CPU ? L->opt->profile_hz : 0);
	int rc = p ? 0 : -ENOMEM;
	for (uint64_t m = now_min + 1 - minutes; !rc && m <= now_min; m++) {
		unsigned i = (unsigned)(m % PROF_SLOTS);
		if (pr->slot[q->kind][i] && pr->minute[q->kind][i] == m)
			rc = profile__merge(p, pr->slot[q->kind][i], q->service);
	}
	pthread_mutex_unlock(&L->lock);
	if (!rc) {
		profile__set_time(p, (now_min + 1 - minutes) * 60 * 1000000000ull, (uint64_t)ts.tv_sec * 1000000000ull +
				  (uint64_t)ts.tv_nsec - (now_min + 1 - minutes) * 60 * 1000000000ull);
		if (q->format == PROFILE_FORMAT_SVG) {
			struct flamegraph_opts o = {.service = q->service, .flags = q->service ? 0 : PROFILE_FOLD_SERVICE};
			rc = flamegraph_svg(p, &o, out);
			*ctype = "image/svg+xml";
		} else if (q->format == PROFILE_FORMAT_FOLDED) {
			rc = profile__folded(p, PROFILE_VALUE_DEFAULT, q->service ? 0 : PROFILE_FOLD_SERVICE, out);
			*ctype = "text/plain; charset=utf-8";
		} else {
			rc = pprof_encode(p, out);
			*ctype = "application/octet-stream";
		}
	}
	profile__free(p);
	if (rc) {
		snprintf(err, errlen, "could not build the profile: %s", strerror(-rc));
		return 500;
	}
	return 200;
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
