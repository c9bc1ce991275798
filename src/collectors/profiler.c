// SPDX-License-Identifier: BSD-2-Clause
/* Profiler collector: bpf/profiler.bpf.c -> CPU samples of target threads from a cpu-clock perf event on every
 * CPU at --profile-hz, and their off-CPU time (sched_switch, --offcpu). Each record's stacks are symbolised at
 * once (src/profile/symbolize.c; src/profile/procmaps.c: the process's mappings are snapshot at its first record and kept after it exits) and
 * added to the profile of the current minute (src/profile/profile.c); PROF_SLOTS minutes are kept, and
 * profiler__profile() merges the last ones into pprof, folded stacks or an SVG flame graph for its readers
 * (src/collectors/profiles.h). Also counted per service: loupe_profile_samples_total, loupe_offcpu_seconds_total. */
#include "collectors/profiles.h"
#include "collectors/unwinder.h"
#include "lib/bpf_util.h"
#include "lib/perf_event.h"
#include "core/loupe.h"
#include "profile/flamegraph.h"
#include "lib/log.h"
#include "profile/pprof.h"
#include "profile/profile.h"
#include "profile/pyruntime.h"
#include "profiler.h"
#include "profiler.skel.h"
#include "profile/symbolize.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

extern const struct collector profiler_collector; /* this file's row, at its end */

#define PROF_SLOTS 10   /* minutes of continuous profile kept: ?window= up to 10m */
#define PROF_PIDS 1024  /* processes whose mappings are kept (open addressing; the oldest go first) */
#define PROF_SESSIONS 4 /* on-demand sessions at once */
/* New files' unwinding rules compiled per poll, at most (and one file past it): the poll holds the daemon's lock,
 * and loading the API's and PostgreSQL's 61 files at once held it 0.8 s (a session started then ended that late). */
#define UW_BUDGET_NS (20 * NSEC_PER_MSEC)
/* The ring buffer with --offcpu: every block of a target thread is a record (~2 KiB): 8 MiB hold ~2 s of 2,000
 * blocks/s without a read (the BPF object's default, 2 MiB, is for CPU samples alone). */
#define PROF_RING_OFFCPU (8u << 20)

/* An on-demand session (?seconds=N): its own perf events at its own frequency (cpu), or the off-CPU records of
 * its window, into its own profile; finished by the poll after its deadline, then taken by the HTTP server. */
struct prof_session {
	bool used, done;
	enum profile_kind kind;
	char service[SERVICE_NAME_MAX]; /* "" = all */
	enum profile_format format;
	unsigned hz;
	uint64_t deadline_ns, start_unix_ns;
	struct profile *p;
	struct cpu_perf perf;
	struct buf out;
	int err_code; /* 0, or the -errno that ended it (err says why) */
	char err[200];
	const char *ctype;
	void (*done_cb)(void *arg);
	void *arg;
	bool has_focus;
	regex_t focus;
};

struct profiler {
	struct loupe *L;
	struct profiler_bpf *skel;
	struct ring_buffer *rb;
	int ncpus;
	struct cpu_perf perf;	       /* continuous sampling at --profile-hz */
	struct bpf_link *offcpu_link;	   /* sched_switch, with --offcpu */
	struct bpf_link *offcpu_exit_link; /* sched_process_exit, with --offcpu */
	uint64_t samples[LOUPE_MAX_SERVICES + 1];
	uint64_t offcpu_ns[LOUPE_MAX_SERVICES + 1];
	uint64_t offcpu_late[LOUPE_MAX_SERVICES + 1]; /* blocks valued late (PROF_REC_LATE) */
	uint64_t stackless; /* samples whose user and kernel stacks both failed */
	struct sym_cache *syms;
	struct pid_maps {
		uint32_t pid;
		struct proc_maps *m;
		uint64_t uw_refresh_ns; /* when its unwinding rules were last refreshed for an unknown address */
		bool uw_pending;	/* some of its files' rules are still to be loaded */
	} maps[PROF_PIDS];
	struct unwinder *uw;   /* NULL: frame pointers only (the unwinder could not start) */
	struct py_codes *pyc; /* CPython code objects' names */
	uint64_t uw_records, uw_cut, py_records; /* records unwound with rules; cut short; with CPython frames */
	uint64_t last_target_scan_ns, last_full_scan_ns, scanned_gen;
	struct sym_frame sf[2 * PROF_STACK_MAX];
	struct profile_frame pf[2 * PROF_STACK_MAX];
	/* Profiles of the last PROF_SLOTS minutes, [kind][minute % PROF_SLOTS]; minute[] says which minute. */
	struct profile *slot[2][PROF_SLOTS];
	uint64_t minute[2][PROF_SLOTS];
	struct prof_session sess[PROF_SESSIONS];
};

static const char *const drop_reasons[PROF_DROP_NR] = {
	[PROF_DROP_RINGBUF] = "ringbuf_full",
	[PROF_DROP_STORAGE] = "task_storage_unavailable",
	[PROF_DROP_SCRATCH] = "scratch_unavailable",
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
		bpf_program__set_autoload(pr->skel->progs.offcpu_exit_btf, false);
		bpf_program__set_autoload(pr->skel->progs.offcpu_exit_raw, false);
	} else if ((err = bpf_map__set_max_entries(pr->skel->maps.prof_events, PROF_RING_OFFCPU))) {
		goto fail;
	}
	if ((err = profiler_bpf__load(pr->skel)))
		goto fail;
	loupe__add_object(L, pr->skel->obj);
	pr->pyc = pyruntime__codes_new();
	pr->uw = unwinder__new(bpf_map__fd(pr->skel->maps.unwind_rows), bpf_map__max_entries(pr->skel->maps.unwind_rows),
			       bpf_map__fd(pr->skel->maps.unwind_procs), bpf_map__fd(pr->skel->maps.unwind_slot),
			       bpf_map__fd(pr->skel->maps.py_layouts));
	if (!pr->uw || !pr->pyc)
		log_warn("profile_unwind_unavailable", "could not set up stack unwinding (%s): user stacks by frame pointers "
			 "only, no CPython frames", strerror(errno ? errno : ENOMEM));
	/* Kernel symbols now rather than at the first kernel frame: reading them takes ~100 ms (more on a busy host),
	 * a stall of the reader in which the ring buffer filled up under off-CPU load (records were lost). */
	sym_cache__ksyms(pr->syms);
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
		if (pr->uw)
			unwinder__forget(pr->uw, (pid_t)e->pid);
		if (pr->pyc)
			pyruntime__codes_drop_pid(pr->pyc, (pid_t)e->pid);
		proc_maps__free(e->m);
	}
	int err;
	e->pid = pid;
	e->uw_refresh_ns = 0;
	e->uw_pending = false;
	e->m = proc_maps__snapshot(pr->syms, (pid_t)pid, &err);
	if (e->m && pr->uw && (err = unwinder__add(pr->uw, e->m)) == -EAGAIN)
		e->uw_pending = true;
	else if (err && e->m && pr->uw)
		log_debug("profile_unwind_unavailable", "process %u keeps frame-pointer stacks: %s", pid, strerror(-err));
	return e->m;
}

/* The wall clock (CLOCK_REALTIME) in ns: pprof's time_nanos and a profile's span. */
static uint64_t unix_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* The current minute's profile of a kind (a new one when the minute changed). */
static struct profile *current_profile(struct profiler *pr, enum profile_kind kind)
{
	uint64_t minute = unix_ns() / NSEC_PER_SEC / 60;
	unsigned i = (unsigned)(minute % PROF_SLOTS);
	if (pr->minute[kind][i] != minute || !pr->slot[kind][i]) {
		profile__free(pr->slot[kind][i]);
		pr->slot[kind][i] = profile__new(kind, kind == PROFILE_CPU ? pr->L->opt->profile_hz : 0);
		pr->minute[kind][i] = minute;
		profile__set_time(pr->slot[kind][i], minute * 60 * NSEC_PER_SEC, 60 * NSEC_PER_SEC);
	}
	return pr->slot[kind][i];
}

/* The BPF side met an address outside the mappings it knows for r's process: read its maps again (new libraries,
 * JIT code) and reload its rules, at most once a second. */
static void unwind_refresh(struct profiler *pr, const struct prof_rec *r)
{
	struct pid_maps *e = &pr->maps[(r->tgid * 2654435761u) % PROF_PIDS];
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	if (!pr->uw || !e->m || e->pid != r->tgid || now - e->uw_refresh_ns < NSEC_PER_SEC)
		return;
	e->uw_refresh_ns = now;
	if (!proc_maps__refresh(e->m))
		e->uw_pending = unwinder__add(pr->uw, e->m) == -EAGAIN;
}

/* CPython frame i of r into pr->pf[n]. */
static void python_frame(struct profiler *pr, const struct prof_rec *r, const struct py_layout *L, uint32_t i,
			 size_t n)
{
	/* The cache's strings: valid until the next trim, which symbolise() does between stacks only. */
	const struct py_code_info *ci = pr->pyc ? pyruntime__code(pr->pyc, (pid_t)r->tgid, L, r->py[i].code) : NULL;
	pr->pf[n] = ci ? (struct profile_frame){.name = ci->name, .module = "python", .file = ci->file,
						.line = ci->first_line}
		       : (struct profile_frame){.name = "[py:unknown]", .module = "python", .file = ""};
}

/* _PyEval_EvalFrameDefault (and its cold part): the interpreter running CPython frames. */
static bool is_eval_frame(const char *name)
{
	return !strncmp(name, "_PyEval_EvalFrameDefault", 24);
}

/* Kernel frames, then user frames, leaf first (return addresses: all but the innermost are looked up at addr - 1,
 * inside the call), into pr->pf. CPython frames replace the interpreter's native frame that runs them: at each
 * _PyEval_EvalFrameDefault, the Python frames from the current one through the first frame of that call; any left
 * when the native stack ends (it was cut short) go after it, as its callers. */
static size_t symbolise(struct profiler *pr, const struct prof_rec *r)
{
	int kn = r->kstack_bytes > 0 ? r->kstack_bytes / 8 : 0, un = r->ustack_bytes > 0 ? r->ustack_bytes / 8 : 0;
	if (kn > PROF_STACK_MAX)
		kn = PROF_STACK_MAX;
	if (un > PROF_STACK_MAX)
		un = PROF_STACK_MAX;
	size_t n = 0;
	/* The mappings first: resolving the kernel frames may load kallsyms (~100 ms, once), and a short-lived
	 * process can be gone by then. */
	struct proc_maps *m = un > 0 || r->py_n ? maps_of(pr, r->tgid) : NULL;
	for (int i = 0; i < kn && n < ARRAY_SIZE(pr->sf); i++, n++) {
		sym_resolve_kernel(pr->syms, r->kstack[i] - (n ? 1 : 0), &pr->sf[n]);
		/* The sched_switch stack starts inside loupe's own program and the tracing glue: not the thread's. */
		if (!n && (!strncmp(pr->sf[0].name, "bpf_", 4) || !strncmp(pr->sf[0].name, "__bpf_", 6)))
			n--;
	}
	for (size_t i = 0; i < n; i++)
		pr->pf[i] = (struct profile_frame){.name = pr->sf[i].name, .module = pr->sf[i].module};
	const struct py_layout *L = r->py_n && pr->uw ? unwinder__py_layout(pr->uw, (pid_t)r->tgid) : NULL;
	if (L && pr->pyc)
		pyruntime__codes_trim(pr->pyc);
	uint32_t py = 0, py_n = L ? (r->py_n < PY_FRAMES_MAX ? r->py_n : PY_FRAMES_MAX) : 0;
	for (int i = 0; m && i < un && n < ARRAY_SIZE(pr->pf); i++) {
		struct sym_frame *f = &pr->sf[n];
		sym_resolve_user(pr->syms, m, r->ustack[i] - (i ? 1 : 0), f);
		if (py < py_n && is_eval_frame(f->name)) {
			bool entry = false;
			while (py < py_n && !entry && n < ARRAY_SIZE(pr->pf)) {
				entry = (r->py_entry >> py) & 1;
				python_frame(pr, r, L, py++, n++);
			}
			continue;
		}
		pr->pf[n++] = (struct profile_frame){.name = f->name, .module = f->module};
	}
	while (py < py_n && n < ARRAY_SIZE(pr->pf))
		python_frame(pr, r, L, py++, n++);
	return n;
}

/* A symbolised record (frames in pr->pf) into the running sessions of its kind and service. */
static void session_add(struct profiler *pr, enum profile_kind kind, const char *svc, const char *comm, size_t n, uint64_t ns)
{
	for (int i = 0; i < PROF_SESSIONS; i++) {
		struct prof_session *ps = &pr->sess[i];
		if (!ps->used || ps->done || ps->kind != kind || (ps->service[0] && strcmp(ps->service, svc)))
			continue;
		profile__add(ps->p, svc, comm, pr->pf, n, 1, kind == PROFILE_CPU ? NSEC_PER_SEC / ps->hz : ns);
	}
}

/* Forget a session: detach its perf events and free what it holds. */
static void session_free(struct prof_session *ps)
{
	cpu_perf__detach(&ps->perf);
	if (ps->has_focus)
		regfree(&ps->focus);
	profile__free(ps->p);
	buf__free(&ps->out);
	*ps = (struct prof_session){0};
}

static int render(struct profile *p, enum profile_format format, const char *service, struct buf *out,
		  const char **ctype);

/* Sessions past their deadline: stop sampling, render, tell the HTTP server. */
static void sessions_tick(struct profiler *pr)
{
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	for (int i = 0; i < PROF_SESSIONS; i++) {
		struct prof_session *ps = &pr->sess[i];
		if (!ps->used || ps->done || now < ps->deadline_ns)
			continue;
		cpu_perf__detach(&ps->perf);
		ring_buffer__consume(pr->rb); /* its last samples (the BPF side wakes no reader for each record) */
		profile__set_time(ps->p, ps->start_unix_ns, unix_ns() - ps->start_unix_ns);
		int rc = 0;
		if (ps->has_focus) { /* the stacks through the focused functions */
			struct profile *f = profile__new(ps->kind, ps->kind == PROFILE_CPU ? ps->hz : 0);
			rc = f ? profile__merge_focus(f, ps->p, NULL, &ps->focus) : -ENOMEM;
			if (f)
				profile__set_time(f, ps->start_unix_ns, unix_ns() - ps->start_unix_ns);
			profile__free(ps->p);
			ps->p = f;
		}
		if (!rc)
			rc = render(ps->p, ps->format, ps->service[0] ? ps->service : NULL, &ps->out, &ps->ctype);
		if (!rc && ps->out.oom)
			rc = -ENOMEM;
		ps->err_code = rc;
		if (rc)
			snprintf(ps->err, sizeof(ps->err), "could not build the profile: %s", strerror(-rc));
		ps->done = true;
		if (ps->done_cb)
			ps->done_cb(ps->arg);
	}
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct profiler *pr = ctx;
	const struct prof_rec *r = data;
	if (size < prof_rec_size(0) || r->service > LOUPE_MAX_SERVICES || r->py_n > PY_FRAMES_MAX ||
	    size < prof_rec_size(r->py_n))
		return 0;
	/* With --profile-all, threads of no target service are profiled too, under "_untargeted". */
	const char *svc = r->service ? target_rules__service(&pr->L->opt->rules, (int)r->service) : "_untargeted";
	char comm[sizeof(r->comm) + 1];
	memcpy(comm, r->comm, sizeof(r->comm));
	comm[sizeof(r->comm)] = 0;
	if (r->flags & PROF_REC_UW_MISS)
		unwind_refresh(pr, r);
	pr->uw_records += !!(r->flags & PROF_REC_UW_TABLES);
	pr->uw_cut += !!(r->flags & PROF_REC_UW_CUT);
	pr->py_records += r->py_n > 0;
	size_t n = symbolise(pr, r);
	if (r->type == REC_PROF_SAMPLE) {
		pr->samples[r->service]++;
		pr->stackless += r->ustack_bytes <= 0 && r->kstack_bytes <= 0;
		struct profile *p = current_profile(pr, PROFILE_CPU);
		if (p)
			profile__add(p, svc, comm, pr->pf, n, 1, NSEC_PER_SEC / pr->L->opt->profile_hz);
	} else if (r->type == REC_PROF_OFFCPU) {
		pr->offcpu_ns[r->service] += r->value_ns;
		pr->offcpu_late[r->service] += !!(r->flags & PROF_REC_LATE);
		struct profile *p = current_profile(pr, PROFILE_OFFCPU);
		if (p)
			profile__add(p, svc, comm, pr->pf, n, 1, r->value_ns);
		session_add(pr, PROFILE_OFFCPU, svc, comm, n, r->value_ns);
	} else if (r->type == REC_PROF_SESSION) {
		session_add(pr, PROFILE_CPU, svc, comm, n, 0);
	}
	return 0;
}

/* Every target process gets its mappings read and its unwinding rules loaded as soon as it is one (at most half
 * a second later), not at its first record: loading takes 100-200 ms for an interpreter and its libraries, and the
 * records of that time had frame-pointer stacks (the first blocks of an off-CPU profile lost their callers). */
static void targets_scan(struct profiler *pr)
{
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	if (pr->L->target_procs_fd < 0 || now - pr->last_target_scan_ns < NSEC_PER_SEC / 2)
		return;
	pr->last_target_scan_ns = now;
	/* Walking the map is a syscall per target and a visit of every bucket (2% of loupe's CPU under the API load,
	 * perf): only when the targets collector saw the set change, and every 10 s in case a record was lost. */
	if (pr->scanned_gen == pr->L->target_gen && now - pr->last_full_scan_ns < 10 * NSEC_PER_SEC)
		return;
	pr->scanned_gen = pr->L->target_gen;
	pr->last_full_scan_ns = now;
	__u32 key, next, *prev = NULL;
	for (int i = 0; i < PROF_PIDS && !bpf_map_get_next_key(pr->L->target_procs_fd, prev, &next); i++) {
		key = next;
		prev = &key;
		maps_of(pr, key);
	}
}

static int profiler_attach(void *priv)
{
	struct profiler *pr = priv;
	int attached = cpu_perf__attach(&pr->perf, pr->skel->progs.prof_sample, pr->ncpus, pr->L->opt->profile_hz);
	if (attached < 0)
		return attached;
	if (!attached)
		return -ENODEV;
	if (pr->L->opt->offcpu) {
		bool btf = bpf_program__autoload(pr->skel->progs.offcpu_switch_btf);
		struct bpf_program *sw = btf ? pr->skel->progs.offcpu_switch_btf : pr->skel->progs.offcpu_switch_raw;
		struct bpf_program *ex = btf ? pr->skel->progs.offcpu_exit_btf : pr->skel->progs.offcpu_exit_raw;
		/* The exit hook first: a block the switch hook leaves open is then always closed. */
		if (!(pr->offcpu_exit_link = bpf_program__attach(ex)) || !(pr->offcpu_link = bpf_program__attach(sw)))
			return -errno;
	}
	pr->rb = ring_buffer__new(bpf_map__fd(pr->skel->maps.prof_events), on_record, pr, NULL);
	return pr->rb ? 0 : -errno;
}

static int profiler_poll(void *priv)
{
	struct profiler *pr = priv;
	int n = ring_buffer__consume(pr->rb);
	sessions_tick(pr);
	if (pr->uw) {
		unwinder__budget(pr->uw, UW_BUDGET_NS);
		targets_scan(pr);
		for (int i = 0; i < PROF_PIDS; i++) /* files left for later by earlier polls */
			if (pr->maps[i].uw_pending && pr->maps[i].m)
				pr->maps[i].uw_pending = unwinder__add(pr->uw, pr->maps[i].m) == -EAGAIN;
		unwinder__sweep(pr->uw);
	}
	return n < 0 ? n : 0;
}

/* The earliest end of a running session: the main loop polls then, not up to a period later. */
static uint64_t profiler_poll_due_ns(void *priv)
{
	struct profiler *pr = priv;
	uint64_t due = UINT64_MAX;
	for (int i = 0; i < PROF_SESSIONS; i++)
		if (pr->sess[i].used && !pr->sess[i].done && pr->sess[i].deadline_ns < due)
			due = pr->sess[i].deadline_ns;
	return due;
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
	struct metric_family *late = registry__family(
		reg, "loupe_offcpu_late_blocks_total",
		"Blocks of target threads whose switch-in the sched_switch hook did not see (the kernel switched the "
		"thread in without calling it), valued at the thread's next switch-out or exit: time since it blocked "
		"less the CPU time it ran since.",
		METRIC_COUNTER, l_svc, 0, FAMILY_SNAPSHOT);
	if (!samples || !offcpu || !late)
		return -ENOMEM;
	for (int s = 1; s <= pr->L->opt->rules.nservices; s++) {
		const char *v[] = {target_rules__service(&pr->L->opt->rules, s)};
		family__add(samples, v, (double)pr->samples[s]);
		if (pr->L->opt->offcpu) {
			family__add(offcpu, v, ns_to_seconds(pr->offcpu_ns[s]));
			family__add(late, v, (double)pr->offcpu_late[s]);
		}
	}
	return loupe_export_drops(reg, "profiler", bpf_map__fd(pr->skel->maps.prof_drops), drop_reasons,
				  PROF_DROP_NR);
}

static void profiler_status(void *priv, struct buf *json)
{
	struct profiler *pr = priv;
	buf__printf(json, "\"hz\":%u,\"offcpu\":%s", pr->L->opt->profile_hz, pr->L->opt->offcpu ? "true" : "false");
	if (!pr->uw) {
		buf__puts(json, ",\"unwind\":null");
		return;
	}
	struct unwinder_stats st;
	unwinder__stats(pr->uw, &st);
	buf__printf(json,
		    ",\"unwind\":{\"rows\":%llu,\"rows_max\":%llu,\"files\":%llu,\"files_without_rules\":%llu,"
		    "\"files_pool_full\":%llu,\"fdes_refused\":%llu,\"processes\":%llu,\"mapping_sets\":%llu,\"records\":%llu,"
		    "\"records_cut\":%llu,\"load_ms\":%.1f},\"python\":{\"processes\":%llu,\"records\":%llu,"
		    "\"unreadable\":%llu,\"unreadable_reason\":\"",
		    (unsigned long long)st.rows_used, (unsigned long long)st.rows_max, (unsigned long long)st.files,
		    (unsigned long long)st.files_failed, (unsigned long long)st.files_pool_full,
		    (unsigned long long)st.fdes_refused,
		    (unsigned long long)st.procs, (unsigned long long)st.slots, (unsigned long long)pr->uw_records,
		    (unsigned long long)pr->uw_cut, (double)st.load_ns / 1e6, (unsigned long long)st.py_procs,
		    (unsigned long long)pr->py_records, (unsigned long long)st.py_unreadable);
	buf__json_str(json, st.py_unreadable_why);
	buf__puts(json, "\"}");
}

static void profiler_close(void *priv)
{
	struct profiler *pr = priv;
	if (!pr)
		return;
	ring_buffer__free(pr->rb);
	for (int i = 0; i < PROF_SESSIONS; i++)
		session_free(&pr->sess[i]);
	cpu_perf__detach(&pr->perf);
	bpf_link__destroy(pr->offcpu_link);
	bpf_link__destroy(pr->offcpu_exit_link);
	unwinder__free(pr->uw);
	pyruntime__codes_free(pr->pyc);
	profiler_bpf__destroy(pr->skel);
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < PROF_SLOTS; i++)
			profile__free(pr->slot[k][i]);
	for (int i = 0; i < PROF_PIDS; i++)
		proc_maps__free(pr->maps[i].m);
	sym_cache__free(pr->syms);
	free(pr);
}

static int render(struct profile *p, enum profile_format format, const char *service, struct buf *out,
		  const char **ctype)
{
	if (format == PROFILE_FORMAT_SVG) {
		struct flamegraph_opts o = {.service = service, .flags = service ? 0 : PROFILE_FOLD_SERVICE};
		*ctype = "image/svg+xml";
		return flamegraph_svg(p, &o, out);
	}
	if (format == PROFILE_FORMAT_FOLDED) {
		*ctype = "text/plain; charset=utf-8";
		return profile__folded(p, PROFILE_VALUE_DEFAULT, service ? 0 : PROFILE_FOLD_SERVICE, out);
	}
	*ctype = "application/octet-stream";
	return pprof_encode(p, out);
}

/* q's focus compiled into re: 0 (*has false when there is none), or -EINVAL with err set. */
static int focus_compile(const struct profile_request *q, regex_t *re, bool *has, char *err, size_t errlen)
{
	*has = false;
	if (!q->focus)
		return 0;
	int rc = regcomp(re, q->focus, REG_EXTENDED | REG_NOSUB);
	if (rc) {
		char why[120];
		regerror(rc, re, why, sizeof(why));
		snprintf(err, errlen, "bad focus: %s", why);
		return -EINVAL;
	}
	*has = true;
	return 0;
}

/* The profiler feature's state when it runs, else NULL. */
static struct profiler *find_profiler(struct loupe *L)
{
	for (int i = 0; i < L->nfeatures; i++)
		if (L->features[i].ops == &profiler_collector && L->features[i].state == FEATURE_RUNNING)
			return L->features[i].priv;
	return NULL;
}

/* The running profiler able to answer q: 0, or -ENODEV (not running, or off-CPU asked without --offcpu) or
 * -EINVAL (no such service) with err set. */
static int running_profiler(struct loupe *L, const struct profile_request *q, struct profiler **pr, char *err,
			    size_t errlen)
{
	if (!(*pr = find_profiler(L))) {
		snprintf(err, errlen, "the profiler is not running (see /status)");
		return -ENODEV;
	}
	if (q->kind == PROFILE_OFFCPU && !L->opt->offcpu) {
		snprintf(err, errlen, "off-CPU profiling is off: start loupe with --offcpu");
		return -ENODEV;
	}
	if (q->service && !(L->opt->scope == SCOPE_ALL && !strcmp(q->service, "_untargeted")) &&
	    target_rules__service_id(&L->opt->rules, q->service) < 0) {
		snprintf(err, errlen, "no service named '%.64s' (see /status)", q->service);
		return -EINVAL;
	}
	return 0;
}

int profiler__session_start(struct loupe *L, const struct profile_request *q, unsigned seconds, unsigned hz,
			    void (*done)(void *arg), void *arg, char *err, size_t errlen)
{
	struct profiler *pr;
	int rc, id = running_profiler(L, q, &pr, err, errlen);
	if (id)
		return id;
	pthread_mutex_lock(&L->lock);
	id = -EBUSY;
	for (int i = 0; i < PROF_SESSIONS && id < 0; i++)
		if (!pr->sess[i].used)
			id = i;
	if (id < 0) {
		snprintf(err, errlen, "%d profiling sessions are running already: try again later", PROF_SESSIONS);
		goto out;
	}
	struct prof_session *ps = &pr->sess[id];
	*ps = (struct prof_session){.used = true, .kind = q->kind, .format = q->format, .hz = hz, .done_cb = done,
				    .arg = arg};
	if ((rc = focus_compile(q, &ps->focus, &ps->has_focus, err, errlen))) {
		session_free(ps);
		id = rc;
		goto out;
	}
	snprintf(ps->service, sizeof(ps->service), "%s", q->service ? q->service : "");
	ps->start_unix_ns = unix_ns();
	ps->deadline_ns = now_ns(CLOCK_MONOTONIC) + seconds * NSEC_PER_SEC;
	if (!(ps->p = profile__new(q->kind, q->kind == PROFILE_CPU ? hz : 0))) {
		snprintf(err, errlen, "could not start the session: out of memory");
		id = -ENOMEM;
	} else if (q->kind == PROFILE_CPU) { /* off-CPU sessions take the sched_switch records */
		int attached = cpu_perf__attach(&ps->perf, pr->skel->progs.prof_session, pr->ncpus, hz);
		if (attached <= 0) {
			snprintf(err, errlen, "could not start the session (perf events: %s)",
				 strerror(attached < 0 ? -attached : errno));
			id = -EIO;
		}
	}
	if (id < 0)
		session_free(ps);
out:
	pthread_mutex_unlock(&L->lock);
	return id;
}

int profiler__session_take(struct loupe *L, int id, struct buf *out, const char **ctype, char *err, size_t errlen)
{
	int rc;
	pthread_mutex_lock(&L->lock);
	struct profiler *pr = find_profiler(L);
	struct prof_session *ps = pr && id >= 0 && id < PROF_SESSIONS ? &pr->sess[id] : NULL;
	if (!ps || !ps->used) {
		snprintf(err, errlen, "no such session");
		rc = -ENOENT;
		goto out;
	}
	if (!ps->done) {
		snprintf(err, errlen, "loupe is stopping: the session did not finish");
		rc = -ESHUTDOWN;
	} else {
		rc = ps->err_code;
		snprintf(err, errlen, "%s", ps->err);
		if (out) {
			*out = ps->out;
			*ctype = ps->ctype;
			ps->out = (struct buf){0};
		}
	}
	if (ps->done || !out)
		session_free(ps);
out:
	pthread_mutex_unlock(&L->lock);
	return rc;
}

uint64_t profiler__lost_records(struct loupe *L)
{
	struct profiler *pr = find_profiler(L);
	uint64_t n[PROF_DROP_NR] = {0}, sum = 0;
	if (!pr)
		return 0;
	for (__u32 k = 0; k < PROF_DROP_NR; k++) {
		if (!percpu_sum_u64(bpf_map__fd(pr->skel->maps.prof_drops), &k, &n[k], 1))
			sum += n[k];
	}
	return sum;
}

int profiler__profile(struct loupe *L, const struct profile_request *q, struct buf *out, const char **ctype,
		      char *err, size_t errlen)
{
	struct profiler *pr;
	regex_t focus;
	bool has_focus;
	int rc = running_profiler(L, q, &pr, err, errlen);
	if (!rc)
		rc = focus_compile(q, &focus, &has_focus, err, errlen);
	if (rc)
		return rc;
	pthread_mutex_lock(&L->lock);
	profiler_poll(pr);
	uint64_t now = unix_ns(), now_s = now / NSEC_PER_SEC;
	/* Whole minutes, from the one holding (now - window) to the current one: the profile covers at least the
	 * window, up to a minute more (a window counted in minutes from the current minute's start left out what
	 * came before a minute boundary: a 5 s `loupe profile` across one lost its first part). */
	uint64_t now_min = now_s / 60;
	uint64_t first_min = profile__first_minute(now_s, q->window_s, PROF_SLOTS);
	struct profile *p = profile__new(q->kind, q->kind == PROFILE_CPU ? L->opt->profile_hz : 0);
	rc = p ? 0 : -ENOMEM;
	for (uint64_t m = first_min; !rc && m <= now_min; m++) {
		unsigned i = (unsigned)(m % PROF_SLOTS);
		if (pr->slot[q->kind][i] && pr->minute[q->kind][i] == m)
			rc = profile__merge_focus(p, pr->slot[q->kind][i], q->service, has_focus ? &focus : NULL);
	}
	pthread_mutex_unlock(&L->lock);
	if (!rc) {
		profile__set_time(p, first_min * 60 * NSEC_PER_SEC, now - first_min * 60 * NSEC_PER_SEC);
		rc = render(p, q->format, q->service, out, ctype);
	}
	if (!rc && out->oom)
		rc = -ENOMEM;
	profile__free(p);
	if (has_focus)
		regfree(&focus);
	if (rc)
		snprintf(err, errlen, "could not build the profile: %s", strerror(-rc));
	return rc;
}

const struct collector profiler_collector = {
	.name = "profiler",
	.open = profiler_open,
	.attach = profiler_attach,
	.poll = profiler_poll,
	.poll_fd = profiler_poll_fd,
	.poll_period_ms = 100, /* records are read without wakeups */
	.poll_due_ns = profiler_poll_due_ns, /* sessions end on time */
	.collect = profiler_collect,
	.status = profiler_status,
	.close = profiler_close,
};
