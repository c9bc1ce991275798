// SPDX-License-Identifier: BSD-2-Clause
/* Targets collector: loads bpf/targets.bpf.c, scans /proc at start, classifies every exec, and exports
 * loupe_targets{service_name}. The BPF side handles fork (inherit) and exit (forget) by itself. */
#include "core/loupe.h"
#include "lib/bpf_util.h"
#include "lib/log.h"
#include "targets.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct targets {
	struct loupe *L;
	struct targets_bpf *skel;
	struct ring_buffer *rb;
	struct proc_ident_buf idbuf;
	unsigned long long ns_per_tick; /* /proc/PID/stat counts start times in clock ticks, BPF in ns */
	unsigned long execs_seen, classified, stale_removed;
	unsigned count[LOUPE_MAX_SERVICES + 1];
	unsigned char *seen; /* pid_max bits, scratch for targets_collect */
	size_t seen_bytes;
};

static const char *const drop_reasons[TARGET_DROP_NR] = {
	[TARGET_DROP_RINGBUF] = "ringbuf_full",
	[TARGET_DROP_MAP_FULL] = "target_map_full",
};

/* Track tgid as a target of service svc. start_ticks guards against pid reuse: after inserting we check that
 * /proc/PID is still the process we classified and that it has not exited (a zombie still shows its start
 * time; recent_exits knows), and undo the insert if not: the BPF exit hook cannot have removed an entry that
 * did not exist yet. */
static int track(struct targets *t, pid_t tgid, int svc, unsigned long long start_ticks)
{
	__u32 key = (__u32)tgid, val = (__u32)svc;
	struct target_info info = {.service = (__u32)svc,
				   .start_ns = start_ticks * t->ns_per_tick};
	t->L->target_gen++;
	if (bpf_map_update_elem(bpf_map__fd(t->skel->maps.target_procs), &key, &info, BPF_ANY))
		return -errno;
	if (bpf_map_update_elem(t->L->target_svc_fd, &key, &val, BPF_ANY))
		return -errno;
	unsigned long long now_ticks;
	__u64 exited_start;
	if (proc_start_ticks(tgid, &now_ticks) || now_ticks != start_ticks ||
	    (!bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.recent_exits), &key, &exited_start) &&
	     exited_start / t->ns_per_tick == start_ticks)) {
		__u32 none = 0;
		bpf_map_update_elem(t->L->target_svc_fd, &key, &none, BPF_ANY);
		bpf_map_delete_elem(bpf_map__fd(t->skel->maps.target_procs), &key);
		return -ESRCH;
	}
	return 0;
}

/* Classify one process whose start time is known; returns its service or 0. */
static int classify(struct targets *t, pid_t pid, unsigned long long start_ticks)
{
	struct proc_ident id;
	if (proc_ident__read(pid, &t->L->opt->rules, &id, &t->idbuf))
		return 0;
	id.start_ticks = start_ticks;
	return target_rules__match(&t->L->opt->rules, &id);
}

struct proc_entry {
	pid_t pid, ppid;
	unsigned long long start;
	__u32 svc;
};

static int cmp_pid(const void *a, const void *b)
{
	const struct proc_entry *x = a, *y = b;
	return (x->pid > y->pid) - (x->pid < y->pid);
}

/* Every process on the host with its parent, start time and current service, sorted by pid. */
static struct proc_entry *list_procs(struct targets *t, size_t *n)
{
	DIR *d = opendir("/proc");
	if (!d) {
		log_error("proc_scan_failed", "cannot list /proc (%s): targets are found only at their next exec",
			  strerror(errno));
		return NULL;
	}
	struct proc_entry *v = NULL;
	size_t cap = 0;
	pid_t self = getpid();
	*n = 0;
	for (struct dirent *de; (de = readdir(d));) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		struct proc_entry e = {.pid = (pid_t)atoi(de->d_name)};
		if (e.pid == self || proc_stat_read(e.pid, NULL, &e.ppid, &e.start))
			continue;
		__u32 key = (__u32)e.pid;
		if (bpf_map_lookup_elem(t->L->target_svc_fd, &key, &e.svc))
			e.svc = 0;
		if (*n == cap) {
			cap = cap ? cap * 2 : 512;
			struct proc_entry *nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[(*n)++] = e;
	}
	closedir(d);
	if (v)
		qsort(v, *n, sizeof(*v), cmp_pid);
	return v;
}

/* Children inherit their parent's service, but BPF only sees forks that happen after the parent became a
 * target. Processes forked earlier (before loupe started, or between an exec and its classification here) are
 * adopted from the process tree. Returns how many were adopted. */
static unsigned adopt_descendants(struct targets *t, struct proc_entry *v, size_t n)
{
	unsigned adopted = 0;
	for (int pass = 0; pass < 64; pass++) {
		unsigned changed = 0;
		for (size_t i = 0; i < n; i++) {
			if (v[i].svc || v[i].ppid <= 0)
				continue;
			struct proc_entry key = {.pid = v[i].ppid};
			struct proc_entry *parent = bsearch(&key, v, n, sizeof(*v), cmp_pid);
			if (!parent || !parent->svc || track(t, v[i].pid, (int)parent->svc, v[i].start))
				continue;
			v[i].svc = parent->svc;
			changed++;
		}
		adopted += changed;
		if (!changed)
			break;
	}
	return adopted;
}

static void scan_proc(struct targets *t)
{
	size_t n;
	struct proc_entry *v = list_procs(t, &n);
	if (!v)
		return;
	unsigned found = 0;
	for (size_t i = 0; i < n; i++) {
		int svc = classify(t, v[i].pid, v[i].start);
		if (svc && !track(t, v[i].pid, svc, v[i].start)) {
			v[i].svc = (__u32)svc;
			found++;
		}
	}
	unsigned adopted = adopt_descendants(t, v, n);
	free(v);
	log_info("proc_scan", "scanned /proc: %u target processes, %u more inherited from them", found, adopted);
}

/* A process was just classified at exec: adopt the children it forked before we tracked it. */
static void adopt_after_exec(struct targets *t)
{
	size_t n;
	struct proc_entry *v = list_procs(t, &n);
	if (v)
		adopt_descendants(t, v, n);
	free(v);
}

static int on_record(void *ctx, void *data, size_t len)
{
	struct targets *t = ctx;
	const struct target_rec *r = data;
	if (len < sizeof(*r))
		return 0;
	const struct target_rules *rules = &t->L->opt->rules;
	if (r->service)
		t->L->target_gen++; /* a target forked, exited, or exec'd (the BPF side may have classified it) */
	switch (r->type) {
	case REC_TARGET_EXEC: {
		t->execs_seen++;
		unsigned long long start;
		/* The process may have exited, and its pid been reused, before we read /proc: the start time
		 * that BPF saw must match the one /proc shows now. */
		if (proc_start_ticks((pid_t)r->tgid, &start) ||
		    start != r->start_ns / t->ns_per_tick)
			break;
		int svc = classify(t, (pid_t)r->tgid, start);
		if (!svc || (int)r->service == svc)
			break; /* no rule matches: an inherited service (r->service) stays as it is */
		if (!track(t, (pid_t)r->tgid, svc, start)) {
			t->classified++;
			log_debug("target_exec", "a process of service %s started", target_rules__service(rules, svc));
			adopt_after_exec(t);
		}
		break;
	}
	case REC_TARGET_FORK:
		log_debug("target_fork", "service %s forked a process", target_rules__service(rules, (int)r->service));
		break;
	case REC_TARGET_EXIT:
		log_debug("target_exit", "a process of service %s exited", target_rules__service(rules, (int)r->service));
		break;
	}
	return 0;
}

/* The rules' literal exec names (comm) with their services, for the BPF side to classify those execs itself. */
static void set_exec_comms(struct targets_bpf *skel, const struct target_rules *rules)
{
	char comm[LOUPE_EXEC_COMMS][16];
	unsigned svc[LOUPE_EXEC_COMMS];
	int n = target_rules__exec_literals(rules, comm, svc, LOUPE_EXEC_COMMS);
	for (int i = 0; i < n; i++) {
		memcpy((char *)skel->rodata->exec_comm[i], comm[i], LOUPE_COMM_LEN);
		skel->rodata->exec_comm_svc[i] = svc[i];
	}
	skel->rodata->n_exec_comms = (__u32)n;
}

static int targets_open(struct loupe *L, void **priv)
{
	struct targets *t = calloc(1, sizeof(*t));
	const char *hook;
	int err;
	if (!t)
		return -ENOMEM;
	t->L = L;
	long ticks_per_sec = sysconf(_SC_CLK_TCK);
	t->ns_per_tick = NSEC_PER_SEC / (unsigned long long)(ticks_per_sec > 0 ? ticks_per_sec : 100);
	t->seen_bytes = L->pid_max / 8 + 1;
	t->seen = malloc(t->seen_bytes);
	if (!t->seen) {
		err = -ENOMEM;
		goto fail;
	}
	t->skel = targets_bpf__open();
	if (!t->skel) {
		err = -errno;
		goto fail;
	}
	t->skel->rodata->self_tgid = (__u32)getpid();
	set_exec_comms(t->skel, &L->opt->rules);
	err = bpf_map__set_max_entries(t->skel->maps.target_svc, L->pid_max);
	if (err)
		goto fail;
	err = loupe__select_tp_flavour(L, t->skel->obj, &hook);
	if (err)
		goto fail;
	err = targets_bpf__load(t->skel);
	if (err)
		goto fail;
	L->target_svc_fd = bpf_map__fd(t->skel->maps.target_svc);
	L->target_procs_fd = bpf_map__fd(t->skel->maps.target_procs);
	loupe__add_object(L, t->skel->obj);
	*priv = t;
	return 0;
fail:
	targets_bpf__destroy(t->skel);
	free(t->seen);
	free(t);
	return err;
}

static int targets_attach(void *priv)
{
	struct targets *t = priv;
	int err = targets_bpf__attach(t->skel);
	if (err)
		return err;
	t->rb = ring_buffer__new(bpf_map__fd(t->skel->maps.target_events), on_record, t, NULL);
	if (!t->rb)
		return -errno;
	/* Hooks first, then the scan: a process that starts during the scan is seen by one or the other. */
	scan_proc(t);
	return 0;
}

static int targets_poll(void *priv)
{
	struct targets *t = priv;
	int n = ring_buffer__consume(t->rb);
	return n < 0 ? n : 0;
}

static int targets_poll_fd(void *priv)
{
	struct targets *t = priv;
	return t->rb ? ring_buffer__epoll_fd(t->rb) : -1;
}

/* Safety net, checked on every collection: an entry whose process is gone, a zombie, or another process with
 * the same pid (start time differs) is stale. The BPF exit hook and track()'s checks should leave none; if one
 * slips through a race anyway, it is dropped here instead of counting (and labelling a reused pid) for good. */
static bool is_stale(struct targets *t, __u32 tgid, const struct target_info *info)
{
	char state;
	unsigned long long ticks;
	if (proc_stat_read((pid_t)tgid, &state, NULL, &ticks) || state == 'Z' || state == 'X')
		return true;
	return info->start_ns / t->ns_per_tick != ticks;
}

static void untrack(struct targets *t, __u32 tgid, const struct target_info *info)
{
	__u32 svc = 0, none = 0;
	/* only if the hot-path entry is still this one's (a fork may have reused the pid meanwhile) */
	struct target_info now;
	if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.target_procs), &tgid, &now) || now.start_ns != info->start_ns)
		return;
	bpf_map_delete_elem(bpf_map__fd(t->skel->maps.target_procs), &tgid);
	t->L->target_gen++;
	if (!bpf_map_lookup_elem(t->L->target_svc_fd, &tgid, &svc) && svc == info->service)
		bpf_map_update_elem(t->L->target_svc_fd, &tgid, &none, BPF_ANY);
	t->stale_removed++;
}

/* Live target processes per service, from target_procs; stale entries are untracked on the way. */
static void count_targets(struct targets *t, unsigned *count)
{
	int fd = bpf_map__fd(t->skel->maps.target_procs);
	__u32 key, next, *prev = NULL;
	struct target_info info;
	/* When BPF deletes the key we stand on, get_next_key restarts from the first key: the bitmap makes sure
	 * each tgid is counted once anyway. */
	memset(t->seen, 0, t->seen_bytes);
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		prev = &key;
		if (next >= t->L->pid_max || (t->seen[next / 8] & (1u << (next % 8))))
			continue;
		t->seen[next / 8] |= (unsigned char)(1u << (next % 8));
		if (bpf_map_lookup_elem(fd, &next, &info) || info.service > LOUPE_MAX_SERVICES)
			continue;
		if (is_stale(t, next, &info)) {
			untrack(t, next, &info);
			continue;
		}
		count[info.service]++;
	}
}

static int targets_collect(void *priv, struct registry *reg)
{
	struct targets *t = priv;
	static const char *const labels[] = {"service_name", NULL};
	struct metric_family *f = registry__family(reg, "loupe_targets", "Live processes tracked per service.",
						   METRIC_GAUGE, labels, LOUPE_MAX_SERVICES + 1, FAMILY_SNAPSHOT);
	if (!f)
		return -ENOMEM;
	unsigned count[LOUPE_MAX_SERVICES + 1] = {0};
	count_targets(t, count);
	const struct target_rules *rules = &t->L->opt->rules;
	for (int s = 1; s <= rules->nservices; s++) {
		const char *v[] = {rules->service[s]};
		family__set(f, v, count[s]);
		if (!t->count[s] && count[s])
			log_info("service_found", "service %s: %u process(es) tracked", rules->service[s], count[s]);
		else if (t->count[s] && !count[s])
			log_info("service_gone", "service %s: no process left, waiting for it to start",
				 rules->service[s]);
	}
	memcpy(t->count, count, sizeof(count));
	memcpy(t->L->targets_per_service, count, sizeof(count));

	return loupe_export_drops(reg, "targets", bpf_map__fd(t->skel->maps.target_drops), drop_reasons,
				  TARGET_DROP_NR);
}

static void targets_status(void *priv, struct buf *json)
{
	struct targets *t = priv;
	buf__printf(json, "\"execs_seen\":%lu,\"execs_classified\":%lu,\"stale_removed\":%lu", t->execs_seen,
		    t->classified, t->stale_removed);
}

static void targets_close(void *priv)
{
	struct targets *t = priv;
	if (!t)
		return;
	ring_buffer__free(t->rb);
	targets_bpf__destroy(t->skel);
	proc_ident_buf__free(&t->idbuf);
	free(t->seen);
	free(t);
}

const struct collector targets_collector = {
	.name = "targets",
	.open = targets_open,
	.attach = targets_attach,
	.poll = targets_poll,
	.poll_fd = targets_poll_fd,
	.collect = targets_collect,
	.status = targets_status,
	.close = targets_close,
};
