// SPDX-License-Identifier: BSD-2-Clause
/* The symbol cache: lists of what was loaded (tables, files, names, perf maps), searched linearly: a profiler
 * sees tens of files and processes, and every lookup here is behind a per-snapshot or per-process one. */
#include "profile/symcache.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"
#include "profile/debugfile.h"

#define PERF_MAP_PROBE_NS NSEC_PER_SEC	/* a missing perf map is looked for again after 1 s */

struct table_ref {
	struct table_ref *next;
	struct sym_table *t;
};

/* (dev, inode) of a mapped file -> its table (NULL: not an ELF; not tried again). */
struct file_ref {
	struct file_ref *next;
	unsigned maj, min;
	uint64_t ino;
	const struct sym_table *t;
};

/* Interned mapping names: they live as long as the cache, so frames may point at them across refreshes. */
struct name_ref {
	struct name_ref *next;
	char s[];
};

struct perf_slot {
	struct perf_slot *next;
	pid_t pid;
	struct perf_map *pm;		/* NULL: not found at the last look */
	uint64_t last_probe_ns;
};

struct sym_cache {
	char *debug_root, *kallsyms_path, *perf_map_dir;
	struct table_ref *tables;
	struct file_ref *files;
	struct name_ref *names;
	struct perf_slot *perf;
	struct ksyms *ks;
	bool ks_tried;
	struct sym_table *vdso;
	bool vdso_tried;
	struct sym_cache_stats st;
};

/* ---- ELF tables ---- */

static struct sym_table *table_by_build_id(struct sym_cache *c, const unsigned char *id, size_t len)
{
	for (struct table_ref *r = c->tables; r; r = r->next)
		if (sym_table__has_build_id(r->t, id, len))
			return r->t;
	return NULL;
}

/* The table of the ELF e (read from root + path; path may be NULL: no debuglink search). shared: found in or
 * added to the cache by build-id; otherwise a table of the caller's own. The debug file is looked for only
 * when e has no .symtab. */
static int load_table(struct sym_cache *c, Elf *e, const char *root, const char *path, bool shared,
		      struct sym_table **out)
{
	unsigned char id[SYM_BUILD_ID_MAX];
	struct table_ref *ref = NULL;
	struct debug_file *dbg = NULL;
	struct sym_table *t;
	int err;

	if (elf_kind(e) != ELF_K_ELF)
		return -ENOEXEC;
	size_t id_len = elf_build_id(e, id, sizeof(id));
	if (shared && (t = table_by_build_id(c, id, id_len))) {
		*out = t;
		return 0;
	}
	c->st.elf_loads++;
	if (shared && !(ref = malloc(sizeof(*ref))))
		return -ENOMEM;
	if (!elf_find_section(e, SHT_SYMTAB, NULL) &&
	    (dbg = debug_file__find(e, c->debug_root, root, path, id, id_len)))
		c->st.debug_files++;
	err = sym_table__read(e, debug_file__elf(dbg), id, id_len, &t);
	if (err)
		goto out;
	if (shared) {
		*ref = (struct table_ref){ .next = c->tables, .t = t };
		c->tables = ref;
		ref = NULL;
		c->st.tables++;
		c->st.symbols += sym_table__count(t);
	}
	*out = t;
out:
	debug_file__close(dbg);
	free(ref);
	return err;
}

int sym_cache__load_fd(struct sym_cache *c, int fd, const char *root, const char *path,
		       const struct sym_table **out)
{
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!e)
		return -ENOEXEC;
	struct sym_table *t = NULL;
	int err = load_table(c, e, root, path, true, &t);
	elf_end(e);
	*out = t;
	return err;
}

const struct sym_table *sym_cache__elf(struct sym_cache *c, const char *path, int *err)
{
	const struct sym_table *t = NULL;
	int rc, fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
	} else {
		rc = sym_cache__load_fd(c, fd, "", path, &t);
		close(fd);
	}
	if (err)
		*err = rc;
	return rc ? NULL : t;
}

int sym_cache__file_table(const struct sym_cache *c, unsigned maj, unsigned min, uint64_t ino,
			  const struct sym_table **t)
{
	for (const struct file_ref *f = c->files; f; f = f->next) {
		if (f->ino == ino && f->maj == maj && f->min == min) {
			*t = f->t;
			return 1;
		}
	}
	return 0;
}

void sym_cache__remember_file(struct sym_cache *c, unsigned maj, unsigned min, uint64_t ino,
			      const struct sym_table *t)
{
	struct file_ref *f = calloc(1, sizeof(*f));
	if (!f)
		return;	/* only a cost: the file is opened again next time */
	*f = (struct file_ref){c->files, maj, min, ino, t};
	c->files = f;
}

/* ---- the cache ---- */

struct sym_cache *sym_cache__new(const struct sym_cache_opts *opts)
{
	if (elf_version(EV_CURRENT) == EV_NONE)
		return NULL;
	struct sym_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->debug_root = strdup(opts && opts->debug_root ? opts->debug_root : SYM_DEBUG_ROOT);
	c->kallsyms_path = strdup(opts && opts->kallsyms_path ? opts->kallsyms_path : "/proc/kallsyms");
	if (opts && opts->perf_map_dir)
		c->perf_map_dir = strdup(opts->perf_map_dir);
	if (!c->debug_root || !c->kallsyms_path || (opts && opts->perf_map_dir && !c->perf_map_dir)) {
		sym_cache__free(c);
		return NULL;
	}
	return c;
}

void sym_cache__free(struct sym_cache *c)
{
	if (!c)
		return;
	while (c->tables) {
		struct table_ref *r = c->tables;
		c->tables = r->next;
		sym_table__free(r->t);
		free(r);
	}
	while (c->files) {
		struct file_ref *f = c->files;
		c->files = f->next;
		free(f);
	}
	while (c->names) {
		struct name_ref *r = c->names;
		c->names = r->next;
		free(r);
	}
	while (c->perf) {
		struct perf_slot *s = c->perf;
		c->perf = s->next;
		perf_map__free(s->pm);
		free(s);
	}
	ksyms__free(c->ks);
	sym_table__free(c->vdso);
	free(c->debug_root);
	free(c->kallsyms_path);
	free(c->perf_map_dir);
	free(c);
}

void sym_cache__stats(const struct sym_cache *c, struct sym_cache_stats *st)
{
	*st = c->st;
}

const char *sym_cache__intern(struct sym_cache *c, const char *s)
{
	for (struct name_ref *r = c->names; r; r = r->next)
		if (!strcmp(r->s, s))
			return r->s;
	size_t n = strlen(s);
	struct name_ref *r = malloc(sizeof(*r) + n + 1);
	if (!r)
		return NULL;
	memcpy(r->s, s, n + 1);
	r->next = c->names;
	c->names = r;
	return r->s;
}


/* loupe's own vDSO: the kernel maps one image into every process, so its symbols serve all of them. */
const struct sym_table *sym_cache__vdso(struct sym_cache *c)
{
	if (c->vdso_tried)
		return c->vdso;
	c->vdso_tried = true;
	unsigned long base = getauxval(AT_SYSINFO_EHDR);
	char *maps = NULL;
	if (!base || read_file("/proc/self/maps", &maps) < 0)
		return NULL;
	size_t size = 0;
	for (char *line = maps; line && *line;) {
		char *nl = strchr(line, '\n');
		unsigned long s, e;
		if (nl)
			*nl = '\0';
		if (strstr(line, "[vdso]") && sscanf(line, "%lx-%lx", &s, &e) == 2 && s == base)
			size = e - s;
		line = nl ? nl + 1 : NULL;
	}
	free(maps);
	/* libelf may keep pointers into the image: give it a copy it may keep for the call's duration. */
	char *img = size ? malloc(size) : NULL;
	if (!img)
		return NULL;
	memcpy(img, (void *)base, size);
	Elf *e = elf_memory(img, size);
	if (e)
		load_table(c, e, "", NULL, false, &c->vdso);
	elf_end(e);
	free(img);
	return c->vdso;
}

/* ---- kernel and perf maps ---- */

const struct ksyms *sym_cache__ksyms(struct sym_cache *c)
{
	if (!c->ks_tried)
		sym_cache__reload_kernel(c);
	return c->ks;
}

struct perf_map *sym_cache__perf_map(struct sym_cache *c, pid_t pid, pid_t nspid, bool live, bool probe)
{
	struct perf_slot *s;
	for (s = c->perf; s; s = s->next)
		if (s->pid == pid)
			break;
	if (s && s->pm) {
		c->st.perf_map_reads += perf_map__update(s->pm) > 0;
		return s->pm;
	}
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	if (!probe || (s && now - s->last_probe_ns < PERF_MAP_PROBE_NS))
		return NULL;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		s->pid = pid;
		s->next = c->perf;
		c->perf = s;
	}
	s->last_probe_ns = now;
	char p[PATH_MAX];
	if (c->perf_map_dir) {
		snprintf(p, sizeof(p), "%s/perf-%d.map", c->perf_map_dir, (int)pid);
		s->pm = perf_map__load(p, NULL);
	} else {
		snprintf(p, sizeof(p), "/proc/%d/root/tmp/perf-%d.map", (int)pid, (int)nspid);
		if (live)
			s->pm = perf_map__load(p, NULL);
		if (!s->pm) {
			snprintf(p, sizeof(p), "/tmp/perf-%d.map", (int)pid);
			s->pm = perf_map__load(p, NULL);
		}
	}
	c->st.perf_map_reads += s->pm != NULL;
	return s->pm;
}

void sym_cache__drop_pid(struct sym_cache *c, pid_t pid)
{
	for (struct perf_slot **pp = &c->perf; *pp; pp = &(*pp)->next) {
		if ((*pp)->pid == pid) {
			struct perf_slot *s = *pp;
			*pp = s->next;
			perf_map__free(s->pm);
			free(s);
			return;
		}
	}
}

int sym_cache__reload_kernel(struct sym_cache *c)
{
	int err;
	struct ksyms *ks = ksyms__load(c->kallsyms_path, &err);
	c->ks_tried = true;
	if (!ks)
		return err;
	ksyms__free(c->ks);
	c->ks = ks;
	return 0;
}
