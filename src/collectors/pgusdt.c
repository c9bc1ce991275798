// SPDX-License-Identifier: BSD-2-Clause
/* PostgreSQL internals from the USDT probes of the postgres binary (bpf/pgusdt.bpf.c): lock waits and
 * checkpoints (durations), deadlocks and transaction aborts (counts) per service; query durations and commits
 * only with --pg-usdt-query, because every probe hit is a trap into the kernel (docs/postgres-usdt.md).
 *
 * The probes are read from the binary's .note.stapsdt here rather than by libbpf's bpf_program__attach_usdt():
 * libbpf 1.1 rejects a probe whose arguments it cannot parse, and checkpoint__done has RIP-relative symbol
 * arguments ("-4@40+CheckpointStats(%rip)"). No program reads an argument, so a uprobe on the probe's address,
 * with its semaphore as the uprobe reference counter, is all a probe needs. */
#include "collectors/export.h"
#include "core/loupe.h"
#include "lib/bpf_util.h"
#include "lib/log.h"
#include "hist.h"
#include "pgusdt.h"
#include "pgusdt.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <glob.h>
#include <libelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PG_MAX_BINARIES 4
#define PG_MAX_SITES 8 /* sites per probe and binary (a probe used in several places, or inlined) */
#define NT_STAPSDT 3

enum pg_probe_group { PG_RARE, PG_PER_QUERY };

/* The probes loupe uses (PostgreSQL docs, "Dynamic Tracing": Built-in Probes). */
static const struct pg_probe_def {
	const char *name; /* as in .note.stapsdt: "__" for "-" */
	const char *prog;
	enum pg_probe_group group;
} probe_defs[] = {
	{"lock__wait__start", "pg_lock_start", PG_RARE},
	{"lock__wait__done", "pg_lock_done", PG_RARE},
	{"deadlock__found", "pg_deadlock", PG_RARE},
	{"checkpoint__start", "pg_ckpt_start", PG_RARE},
	{"checkpoint__done", "pg_ckpt_done", PG_RARE},
	{"transaction__abort", "pg_xact_abort", PG_RARE},
	{"query__start", "pg_query_start", PG_PER_QUERY},
	{"query__done", "pg_query_done", PG_PER_QUERY},
	{"transaction__commit", "pg_xact_commit", PG_PER_QUERY},
};
#define PG_NPROBES ARRAY_SIZE(probe_defs)

struct pg_site {
	size_t offset;	       /* file offset of the probe's instruction */
	size_t ref_ctr_offset; /* file offset of its semaphore, 0 when it has none */
};

struct pg_binary {
	char path[PATH_MAX];
	dev_t dev;
	ino_t ino;
	struct pg_site sites[PG_NPROBES][PG_MAX_SITES];
	unsigned nsites[PG_NPROBES];
};

struct pgusdt {
	struct loupe *L;
	struct pgusdt_bpf *skel;
	struct pg_binary bins[PG_MAX_BINARIES];
	int nbins;
	struct bpf_link *links[PG_MAX_BINARIES * PG_NPROBES * PG_MAX_SITES]; /* perf-event uprobes, one per site */
	int nlinks;
	bool multi;				      /* programs loaded for uprobe_multi links instead */
	int link_fds[PG_MAX_BINARIES * PG_NPROBES]; /* those links: one per probe and binary */
	int nlink_fds;
	/* per probe: sites attached, and the first error met (0 when none) */
	unsigned attached[PG_NPROBES];
	int attach_err[PG_NPROBES];
	uint64_t sums[(LOUPE_MAX_SERVICES + 1) * PG_HIST_NR * (sizeof(struct loupe_hist) / sizeof(uint64_t))];
};

static const char *const drop_reasons[PG_DROP_NR] = {
	[PG_DROP_START_MAP_FULL] = "start_map_full",
	[PG_DROP_NO_START] = "done_without_start",
};

static bool probe_enabled(const struct loupe *L, const struct pg_probe_def *d)
{
	return d->group == PG_RARE || L->opt->pg_usdt_query;
}

/* File offset of a virtual address, from the PT_LOAD segment that maps it (0 when none does). */
static size_t vaddr_to_offset(Elf *elf, uint64_t addr, bool exec)
{
	size_t n;
	if (elf_getphdrnum(elf, &n))
		return 0;
	for (size_t i = 0; i < n; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD || (exec && !(ph.p_flags & PF_X)))
			continue;
		if (addr >= ph.p_vaddr && addr < ph.p_vaddr + ph.p_filesz)
			return (size_t)(addr - ph.p_vaddr + ph.p_offset);
	}
	return 0;
}

/* The .note.stapsdt section, and the address of .stapsdt.base in this file (0 when it has none): a prelinked
 * binary moved its sections, and .stapsdt.base says by how much (the note holds the base it was linked with). */
static Elf_Scn *find_stapsdt(Elf *elf, size_t shstrndx, uint64_t *base_addr)
{
	Elf_Scn *note = NULL;
	*base_addr = 0;
	for (Elf_Scn *scn = NULL; (scn = elf_nextscn(elf, scn));) {
		GElf_Shdr sh;
		const char *name;
		if (!gelf_getshdr(scn, &sh) || !(name = elf_strptr(elf, shstrndx, sh.sh_name)))
			continue;
		if (!strcmp(name, ".stapsdt.base"))
			*base_addr = sh.sh_addr;
		else if (sh.sh_type == SHT_NOTE && !strcmp(name, ".note.stapsdt"))
			note = scn;
	}
	return note;
}

/* One probe of a stapsdt note: its name, and the addresses of its instruction and semaphore (0: none). */
struct stapsdt_probe {
	const char *name;
	uint64_t pc, sema;
};

/* Decode a note's descriptor (pc, base, semaphore, then provider and name strings) when it is a probe of provider
 * "postgresql", relocated by base_addr; false for any other note. */
static bool parse_stapsdt(const char *desc, size_t descsz, uint64_t base_addr, struct stapsdt_probe *p)
{
	uint64_t base;
	if (descsz < 3 * 8 + 2)
		return false;
	memcpy(&p->pc, desc, 8);
	memcpy(&base, desc + 8, 8);
	memcpy(&p->sema, desc + 16, 8);
	const char *provider = desc + 24, *end = desc + descsz;
	const char *name = memchr(provider, '\0', (size_t)(end - provider));
	if (!name++ || name >= end || !memchr(name, '\0', (size_t)(end - name)) || strcmp(provider, "postgresql"))
		return false;
	if (base_addr && base) {
		p->pc += base_addr - base;
		if (p->sema)
			p->sema += base_addr - base;
	}
	p->name = name;
	return true;
}

/* Record a site of the probe_defs entry that probe names, as file offsets. True when it is the first site of that
 * probe; false when it is not (or not one loupe uses, no room is left, or no segment maps its addresses). */
static bool add_site(struct pg_binary *b, Elf *elf, const struct stapsdt_probe *probe)
{
	for (size_t p = 0; p < PG_NPROBES; p++) {
		if (strcmp(probe->name, probe_defs[p].name) || b->nsites[p] >= PG_MAX_SITES)
			continue;
		struct pg_site s = {.offset = vaddr_to_offset(elf, probe->pc, true),
				    .ref_ctr_offset = probe->sema ? vaddr_to_offset(elf, probe->sema, false) : 0};
		if (!s.offset || (probe->sema && !s.ref_ctr_offset))
			return false;
		b->sites[p][b->nsites[p]++] = s;
		return b->nsites[p] == 1;
	}
	return false;
}

/* Read the probes of provider "postgresql" that loupe uses from the binary's .note.stapsdt (the SystemTap SDT
 * note format: https://sourceware.org/systemtap/wiki/UserSpaceProbeImplementation). Returns how many of the
 * probes in probe_defs it has, or -errno. */
static int read_probes(struct pg_binary *b)
{
	int fd = open(b->path, O_RDONLY | O_CLOEXEC), found = 0, err = 0;
	Elf *elf = NULL;
	if (fd < 0)
		return -errno;
	size_t shstrndx;
	if (elf_version(EV_CURRENT) == EV_NONE || !(elf = elf_begin(fd, ELF_C_READ, NULL)) ||
	    gelf_getclass(elf) != ELFCLASS64 || elf_getshdrstrndx(elf, &shstrndx)) {
		err = -ENOEXEC;
		goto out;
	}
	uint64_t base_addr;
	Elf_Scn *note = find_stapsdt(elf, shstrndx, &base_addr);
	Elf_Data *data = note ? elf_getdata(note, NULL) : NULL;
	if (!data)
		goto out; /* no probes: built without --enable-dtrace */
	GElf_Nhdr nh;
	size_t off = 0, name_off, desc_off;
	while ((off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
		struct stapsdt_probe probe;
		if (nh.n_type != NT_STAPSDT || nh.n_namesz != 8 ||
		    memcmp((const char *)data->d_buf + name_off, "stapsdt", 8) ||
		    !parse_stapsdt((const char *)data->d_buf + desc_off, nh.n_descsz, base_addr, &probe))
			continue;
		found += add_site(b, elf, &probe);
	}
out:
	elf_end(elf);
	close(fd);
	return err ? err : found;
}

static bool is_postgres_exe(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	return !strcmp(base, "postgres") || !strcmp(base, "postmaster");
}

static void add_binary(struct pgusdt *pg, const char *path)
{
	struct stat st;
	if (pg->nbins >= PG_MAX_BINARIES || stat(path, &st) || !S_ISREG(st.st_mode))
		return;
	for (int i = 0; i < pg->nbins; i++)
		if (pg->bins[i].dev == st.st_dev && pg->bins[i].ino == st.st_ino)
			return;
	struct pg_binary *b = &pg->bins[pg->nbins++];
	memset(b, 0, sizeof(*b));
	snprintf(b->path, sizeof(b->path), "%s", path);
	b->dev = st.st_dev;
	b->ino = st.st_ino;
}

/* The binary process pid (a /proc entry name) runs, when it is a postgres server, through /proc/PID/root so that a
 * process in another mount namespace names its own file. A binary deleted since it started is skipped. */
static void add_process_binary(struct pgusdt *pg, const char *pid)
{
	char link[300], exe[PATH_MAX], path[PATH_MAX + 320];
	snprintf(link, sizeof(link), "/proc/%s/exe", pid);
	ssize_t n = readlink(link, exe, sizeof(exe) - 1);
	if (n <= 0)
		return;
	exe[n] = '\0';
	if (!is_postgres_exe(exe) || strstr(exe, " (deleted)"))
		return;
	snprintf(path, sizeof(path), "/proc/%s/root%s", pid, exe);
	add_binary(pg, path);
}

/* Binaries of running target processes named postgres. */
static void find_running(struct pgusdt *pg)
{
	struct bpf_map *m = NULL;
	for (int i = 0; i < pg->L->nobjects && !m; i++)
		m = bpf_object__find_map_by_name(pg->L->objects[i], "target_procs");
	if (!m)
		return;
	int fd = bpf_map__fd(m);
	__u32 key, next, *prev = NULL;
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		char pid[16];
		key = next;
		prev = &key;
		snprintf(pid, sizeof(pid), "%u", next);
		add_process_binary(pg, pid);
	}
}

/* Binaries of every running postgres process on the host (for `loupe check`, which has no targets). */
static void find_running_any(struct pgusdt *pg)
{
	DIR *d = opendir("/proc");
	if (!d)
		return;
	for (struct dirent *de; (de = readdir(d));)
		if (de->d_name[0] >= '1' && de->d_name[0] <= '9')
			add_process_binary(pg, de->d_name);
	closedir(d);
}

/* Installed servers, newest first: for `loupe run` when no postgres target runs yet and a service is called
 * postgres (the default targets name it so), and for `loupe check`. Packaged layouts: Debian/Ubuntu, PGDG RPMs,
 * source installs. A server upgraded in place after loupe started runs a new file: pgusdt_poll() finds it. */
static void find_installed(struct pgusdt *pg)
{
	static const char *const patterns[] = {"/usr/lib/postgresql/*/bin/postgres", "/usr/pgsql-*/bin/postgres",
					       "/usr/local/pgsql/bin/postgres", "/usr/bin/postgres"};
	for (size_t i = 0; i < ARRAY_SIZE(patterns); i++) {
		glob_t g;
		if (glob(patterns[i], 0, NULL, &g))
			continue;
		for (size_t k = g.gl_pathc; k-- > 0;) /* newest version first */
			add_binary(pg, g.gl_pathv[k]);
		globfree(&g);
	}
}

/* The binaries to probe, with their probes read: running targets' first, else installed ones when a service is
 * named postgres. 0, or LOUPE_FEATURE_DISABLED with the reason in detail (when detail is not NULL). */
static int find_binaries(struct pgusdt *pg, char *detail, size_t dlen)
{
	const struct target_rules *rules = &pg->L->opt->rules;
	find_running(pg);
	bool named = false;
	for (int s = 1; s <= rules->nservices; s++)
		named |= !strcmp(rules->service[s], "postgres");
	if (!pg->nbins && named)
		find_installed(pg);
	if (!pg->nbins) {
		if (detail)
			snprintf(detail, dlen, "off: no postgres binary (no target process runs one, and no service "
					       "named postgres has one installed)");
		return LOUPE_FEATURE_DISABLED;
	}
	int with_probes = 0;
	for (int i = 0; i < pg->nbins; i++) {
		int n = read_probes(&pg->bins[i]);
		if (n < 0)
			log_warn("pg_usdt_unreadable", "cannot read the ELF notes of a postgres binary (%s)", strerror(-n));
		else
			with_probes += n > 0;
	}
	if (!with_probes) {
		if (detail)
			snprintf(detail, dlen, "off: the postgres binary has no USDT probes (PostgreSQL built without "
					       "--enable-dtrace)");
		return LOUPE_FEATURE_DISABLED;
	}
	return 0;
}

/* Open the skeleton with only the enabled probes' programs, sharing the targets' service map, and load it. */
static int pgusdt_load(struct pgusdt *pg)
{
	struct loupe *L = pg->L;
	pg->skel = pgusdt_bpf__open();
	if (!pg->skel)
		return -errno;
	/* uprobe_multi where the kernel has it (--uprobe-attach auto): perf-event uprobes need CAP_SYS_ADMIN since
	 * Linux 6.15, uprobe_multi links only the CAP_BPF and CAP_PERFMON that load the programs. A program is
	 * loaded for one kind or the other, so the choice is made here. */
	pg->multi = L->opt->uprobe_attach == UPROBE_MULTI ||
		    (L->opt->uprobe_attach == UPROBE_AUTO && L->kf.r[KF_UPROBE_MULTI].ok);
	for (size_t p = 0; p < PG_NPROBES; p++) {
		struct bpf_program *prog = bpf_object__find_program_by_name(pg->skel->obj, probe_defs[p].prog);
		if (!prog)
			continue;
		bpf_program__set_autoload(prog, probe_enabled(L, &probe_defs[p]));
		if (pg->multi)
			bpf_program__set_expected_attach_type(prog, LOUPE_TRACE_UPROBE_MULTI);
	}
	int err;
	if ((err = bpf_map__set_max_entries(pg->skel->maps.target_svc, L->pid_max)) ||
	    (err = bpf_map__reuse_fd(pg->skel->maps.target_svc, L->target_svc_fd)) || (err = pgusdt_bpf__load(pg->skel)))
		return err;
	return 0;
}

static int pgusdt_open(struct loupe *L, void **priv)
{
	struct pgusdt *pg = calloc(1, sizeof(*pg));
	int err;
	if (!pg)
		return -ENOMEM;
	pg->L = L;
	err = find_binaries(pg, L->opening ? L->opening->detail : NULL, L->opening ? sizeof(L->opening->detail) : 0);
	if (err)
		goto fail;
	err = pgusdt_load(pg);
	if (err)
		goto fail;
	loupe__add_object(L, pg->skel->obj);
	if (L->opening)
		L->opening->hook = pg->multi ? "uprobe_multi" : "uprobe";
	*priv = pg;
	return 0;
fail:
	pgusdt_bpf__destroy(pg->skel);
	free(pg);
	return err;
}

/* Attach probe p at each of its sites in the binaries from bins[from] on; the first error is kept in
 * attach_err[p] and logged. Returns how many sites attached. */
static unsigned attach_probe(struct pgusdt *pg, size_t p, int from)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(pg->skel->obj, probe_defs[p].prog);
	unsigned n = 0;
	int err = 0;
	for (int i = from; i < pg->nbins; i++) {
		const struct pg_binary *b = &pg->bins[i];
		if (pg->multi && b->nsites[p]) {
			/* One link for every site of the probe in this binary, in every process that runs it. */
			uint64_t offs[PG_MAX_SITES], refs[PG_MAX_SITES];
			for (unsigned s = 0; s < b->nsites[p]; s++) {
				offs[s] = b->sites[p][s].offset;
				refs[s] = b->sites[p][s].ref_ctr_offset;
			}
			int fd = uprobe_multi_link(bpf_program__fd(prog), b->path, offs, refs, b->nsites[p]);
			if (fd < 0) {
				err = err ? err : fd;
				continue;
			}
			pg->link_fds[pg->nlink_fds++] = fd;
			pg->attached[p] += b->nsites[p];
			n += b->nsites[p];
			continue;
		}
		for (unsigned s = 0; s < b->nsites[p]; s++) {
			/* pid -1: every process running this binary, now and later; the kernel raises the semaphore in
			 * each of them. */
			LIBBPF_OPTS(bpf_uprobe_opts, opts, .ref_ctr_offset = b->sites[p][s].ref_ctr_offset);
			struct bpf_link *l = bpf_program__attach_uprobe_opts(prog, -1, b->path, b->sites[p][s].offset, &opts);
			if (!l) {
				err = err ? err : -errno;
				continue;
			}
			pg->links[pg->nlinks++] = l;
			pg->attached[p]++;
			n++;
		}
	}
	if (err) {
		if (!pg->attach_err[p])
			pg->attach_err[p] = err;
		log_warn("pg_usdt_attach_failed", "postgres probe %s: attach failed (%s)", probe_defs[p].name,
			 strerror(-err));
	}
	return n;
}

/* Every few seconds: binaries of postgres targets started since (a server upgraded in place runs a new file; one
 * installed elsewhere starts after loupe), their probes read and attached. With uprobe_multi links this needs no
 * capability beyond those loupe keeps (docs/privileges.md). */
static int pgusdt_poll(void *priv)
{
	struct pgusdt *pg = priv;
	int from = pg->nbins;
	if (from >= PG_MAX_BINARIES)
		return 0;
	find_running(pg);
	for (int i = from; i < pg->nbins; i++) {
		int n = read_probes(&pg->bins[i]);
		if (n < 0)
			log_warn("pg_usdt_unreadable", "cannot read the ELF notes of a new postgres binary (%s)", strerror(-n));
	}
	unsigned total = 0;
	for (size_t p = 0; p < PG_NPROBES && pg->nbins > from; p++)
		if (probe_enabled(pg->L, &probe_defs[p]))
			total += attach_probe(pg, p, from);
	if (pg->nbins > from)
		log_info("pg_usdt_new_binary", "%d postgres binar%s started since loupe did: %u probe site(s) attached",
			 pg->nbins - from, pg->nbins - from == 1 ? "y" : "ies", total);
	if (pg->nbins == PG_MAX_BINARIES && from < PG_MAX_BINARIES)
		log_warn("pg_usdt_binaries_full", "%d postgres binaries probed: later ones are not (restart loupe)",
			 PG_MAX_BINARIES);
	return 0;
}

static int pgusdt_attach(void *priv)
{
	struct pgusdt *pg = priv;
	unsigned total = 0;
	for (size_t p = 0; p < PG_NPROBES; p++)
		if (probe_enabled(pg->L, &probe_defs[p]))
			total += attach_probe(pg, p, 0);
	if (!total) {
		for (size_t p = 0; p < PG_NPROBES; p++)
			if (pg->attach_err[p])
				return pg->attach_err[p];
		return -ENOENT;
	}
	log_info("pg_usdt_attached", "%u postgres probe site(s) attached in %d binar%s (%s); per-query probes %s",
		 total, pg->nbins, pg->nbins == 1 ? "y" : "ies", pg->multi ? "uprobe_multi links" : "perf-event uprobes",
		 pg->L->opt->pg_usdt_query ? "on" : "off");
	return 0;
}

static const struct {
	const char *name, *help;
} hist_defs[PG_HIST_NR] = {
	[PG_HIST_LOCK_WAIT] = {"loupe_postgres_lock_wait_seconds",
			       "Time PostgreSQL backends waited for a heavyweight lock that was then granted "
			       "(USDT lock__wait__start/done; waits ended by an error are not counted)."},
	[PG_HIST_CHECKPOINT] = {"loupe_postgres_checkpoint_duration_seconds",
				"Duration of PostgreSQL checkpoints (USDT checkpoint__start/done)."},
	[PG_HIST_QUERY] = {"loupe_postgres_usdt_query_duration_seconds",
			   "Duration of PostgreSQL queries in the backend (USDT query__start/done; only with "
			   "--pg-usdt-query)."},
};

static const struct counter_def counter_defs[PG_CNT_NR] = {
	[PG_CNT_DEADLOCKS] = {"loupe_postgres_deadlocks_total", "Deadlocks PostgreSQL detected (USDT deadlock__found)."},
	[PG_CNT_XACT_ABORTS] = {"loupe_postgres_transaction_aborts_total",
				"PostgreSQL transactions aborted: ROLLBACK or an error (USDT transaction__abort)."},
	[PG_CNT_XACT_COMMITS] = {"loupe_postgres_transaction_commits_total",
				 "PostgreSQL transactions committed (USDT transaction__commit; only with "
				 "--pg-usdt-query)."},
};

/* The per-service latency histograms ([service][histogram] in pg_hists), the query one only with
 * --pg-usdt-query. */
static int export_hists(struct pgusdt *pg, struct registry *reg)
{
	static const char *const labels[] = {"service_name", NULL};
	const struct target_rules *rules = &pg->L->opt->rules;
	const size_t nwords = sizeof(struct loupe_hist) / sizeof(uint64_t);
	int err = percpu_array_sum_all(bpf_map__fd(pg->skel->maps.pg_hists), (LOUPE_MAX_SERVICES + 1) * PG_HIST_NR,
				       nwords, pg->sums);
	if (err)
		return err;
	for (int h = 0; h < PG_HIST_NR; h++) {
		if (h == PG_HIST_QUERY && !pg->L->opt->pg_usdt_query)
			continue;
		struct metric_family *f = log2_hist_family(reg, hist_defs[h].name, hist_defs[h].help, labels);
		if (!f)
			return -ENOMEM;
		for (int s = 1; s <= rules->nservices; s++) {
			const uint64_t *words = pg->sums + ((size_t)s * PG_HIST_NR + h) * nwords;
			const char *v[] = {rules->service[s]};
			log2_hist_observe(f, v, words);
		}
	}
	return 0;
}

static int pgusdt_collect(void *priv, struct registry *reg)
{
	struct pgusdt *pg = priv;
	uint64_t skip = pg->L->opt->pg_usdt_query ? 0 : 1ull << PG_CNT_XACT_COMMITS;
	int err = export_hists(pg, reg);
	if (err)
		return err;
	err = export_service_counters(reg, &pg->L->opt->rules, bpf_map__fd(pg->skel->maps.pg_counters), counter_defs,
				      PG_CNT_NR, skip);
	if (err)
		return err;
	return loupe_export_drops(reg, "pg_usdt", bpf_map__fd(pg->skel->maps.pg_drops), drop_reasons, PG_DROP_NR);
}

/* Which probes attached (no paths: /status names no file). */
static void pgusdt_status(void *priv, struct buf *json)
{
	struct pgusdt *pg = priv;
	buf__printf(json, "\"binaries\":%d,\"per_query_probes\":%s,\"probes\":{", pg->nbins,
		    pg->L->opt->pg_usdt_query ? "true" : "false");
	for (size_t p = 0; p < PG_NPROBES; p++) {
		unsigned sites = 0;
		for (int i = 0; i < pg->nbins; i++)
			sites += pg->bins[i].nsites[p];
		const char *state = !probe_enabled(pg->L, &probe_defs[p]) ? "off"
				    : pg->attached[p]			    ? "attached"
				    : !sites				    ? "not_in_binary"
									    : "attach_failed";
		buf__printf(json, "%s\"%s\":\"%s\"", p ? "," : "", probe_defs[p].name, state);
	}
	buf__puts(json, "}");
}

static void pgusdt_close(void *priv)
{
	struct pgusdt *pg = priv;
	if (!pg)
		return;
	for (int i = 0; i < pg->nlinks; i++)
		bpf_link__destroy(pg->links[i]);
	for (int i = 0; i < pg->nlink_fds; i++)
		close(pg->link_fds[i]);
	pgusdt_bpf__destroy(pg->skel);
	free(pg);
}

bool pgusdt__check(char *detail, size_t len)
{
	struct pgusdt *pg = calloc(1, sizeof(*pg));
	if (!pg) {
		snprintf(detail, len, "out of memory");
		return false;
	}
	/* Running servers first, then installed ones. */
	find_running_any(pg);
	find_installed(pg);
	int best = 0;
	for (int i = 0; i < pg->nbins; i++) {
		int n = read_probes(&pg->bins[i]);
		unsigned rare = 0, all = 0;
		for (size_t p = 0; n > 0 && p < PG_NPROBES; p++) {
			all += probe_defs[p].group == PG_RARE;
			rare += probe_defs[p].group == PG_RARE && pg->bins[i].nsites[p];
		}
		if (n > 0 && (int)rare > best) {
			best = (int)rare;
			snprintf(detail, len, "%u of %u probes in the postgres binary", rare, all);
		}
	}
	if (!pg->nbins)
		snprintf(detail, len, "no postgres binary found (running or installed)");
	else if (!best)
		snprintf(detail, len, "the postgres binary has no USDT probes (built without --enable-dtrace)");
	free(pg);
	return best > 0;
}

const struct collector pgusdt_collector = {
	.name = "pg_usdt",
	.open = pgusdt_open,
	.attach = pgusdt_attach,
	.poll = pgusdt_poll,
	.poll_period_ms = 5000,
	.collect = pgusdt_collect,
	.status = pgusdt_status,
	.close = pgusdt_close,
};
