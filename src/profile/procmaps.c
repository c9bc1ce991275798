// SPDX-License-Identifier: BSD-2-Clause
/* /proc/PID/maps snapshots: the maps text parsed line by line into a sorted array of executable mappings, each
 * file opened through the process's own view of it and its table taken from the symbol cache. */
#include "profile/procmaps.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct proc_maps {
	struct sym_cache *c;
	pid_t pid, nspid;
	uint64_t start_time;	/* field 22 of /proc/PID/stat: tells a reused pid */
	bool live;		/* may be re-read */
	uint64_t last_refresh_ns;
	struct sym_mapping *maps;
	size_t n;
};

/* The basename of path into tmp[0..n): the name a mapping is exported by. A memfd's name is the process's choice
 * and may hold '/' and end with one (memfd_create("a/b/") maps as "/memfd:a/b/ (deleted)"): the last non-empty
 * component, never a path; "[anon]" when there is none. */
static const char *base_name(const char *path, char *tmp, size_t n)
{
	size_t end = strlen(path), start;
	while (end && path[end - 1] == '/')
		end--;
	for (start = end; start && path[start - 1] != '/'; start--)
		;
	if (start == end)
		return "[anon]";
	if (!path[end])
		return path + start;
	if (end - start >= n)
		end = start + n - 1;
	memcpy(tmp, path + start, end - start);
	tmp[end - start] = '\0';
	return tmp;
}

static uint64_t proc_start_time(pid_t pid)
{
	char p[64], *s = NULL;
	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	if (read_file(p, &s) < 0)
		return 0;
	uint64_t t = 0;
	char *r = strrchr(s, ')');	/* comm may hold spaces and parentheses */
	if (r) {
		char *q = r + 1;	/* the space before field 3 */
		for (int f = 3; f < 22 && q; f++)
			q = strchr(q + 1, ' ');
		if (q)
			t = strtoull(q + 1, NULL, 10);
	}
	free(s);
	return t;
}

/* The pid in the process's own pid namespace: what a JIT inside a container names its perf map after. */
static pid_t proc_nspid(pid_t pid)
{
	char p[64], *s = NULL;
	snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
	if (read_file(p, &s) < 0)
		return pid;
	pid_t ns = pid;
	char *l = strstr(s, "\nNSpid:");
	if (l) {
		char *end = strchr(l + 1, '\n');
		if (end)
			*end = '\0';
		char *last = strrchr(l, '\t');
		if (last)
			ns = (pid_t)atoi(last + 1);
	}
	free(s);
	return ns > 0 ? ns : pid;
}

/* Open a mapped file for reading its symbols: a regular file only (O_NONBLOCK: a FIFO planted at the path
 * must not hang the agent), and with ino set, only the inode the process mapped (the same path may name another
 * file on the host, or a newer version). */
int proc_open_mapped(const char *path, uint64_t ino)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (ino && st.st_ino != ino)) {
		close(fd);
		return -ENOENT; /* not the file the process mapped */
	}
	return fd;
}

int proc_open_mapping(pid_t pid, uint64_t start, uint64_t end, const char *path, uint64_t ino)
{
	char p[PATH_MAX + 32], mf[96];
	snprintf(p, sizeof(p), "/proc/%d/root%s", (int)pid, path);
	int fd = proc_open_mapped(p, ino);
	if (fd < 0) {
		snprintf(mf, sizeof(mf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid, start, end);
		fd = proc_open_mapped(mf, 0);
	}
	if (fd < 0)
		fd = proc_open_mapped(p, 0);
	return fd;
}

/* The table of a file mapping: proc_open_mapping() while the process lives, else the path as is. */
static const struct sym_table *mapping_table(struct sym_cache *c, const struct proc_maps *m,
					     const struct sym_mapping *mp)
{
	const struct sym_table *t = NULL;
	if (sym_cache__file_table(c, mp->dev_major, mp->dev_minor, mp->inode, &t))
		return t;
	char root[64] = "";
	int fd = -1;
	if (m->live) {
		snprintf(root, sizeof(root), "/proc/%d/root", (int)m->pid);
		fd = proc_open_mapping(m->pid, mp->start, mp->end, mp->path, mp->inode);
	}
	if (fd < 0) {
		root[0] = '\0';
		fd = proc_open_mapped(mp->path, mp->inode);
	}
	if (fd < 0)
		return NULL;	/* not recorded: it may be readable next time */
	int err = sym_cache__load_fd(c, fd, root, mp->path, &t);
	close(fd);
	if (err && err != -ENOEXEC)
		return NULL;
	if (mp->inode)
		sym_cache__remember_file(c, mp->dev_major, mp->dev_minor, mp->inode, t);
	return t;
}

static void free_mappings(struct sym_mapping *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free((char *)v[i].path);
	free(v);
}

/* One line of a maps text (NUL-terminated, may be modified) into *mp when it is an executable mapping: 1, 0 when
 * it is not one (or not a mapping line), -ENOMEM. The table is not looked up yet. */
static int parse_maps_line(struct sym_cache *c, char *l, struct sym_mapping *mp)
{
	unsigned long long start, end, off, ino;
	unsigned maj, min;
	char perms[8];
	int pos = 0;
	if (sscanf(l, "%llx-%llx %7s %llx %x:%x %llu%n", &start, &end, perms, &off, &maj, &min, &ino, &pos) != 7 ||
	    strlen(perms) < 3 || perms[2] != 'x')
		return 0;
	char *path = l + pos;
	path += strspn(path, " \t");
	size_t pl = strlen(path);
	static const char deleted[] = " (deleted)";
	if (pl >= sizeof(deleted) - 1 && !strcmp(path + pl - (sizeof(deleted) - 1), deleted))
		path[pl - (sizeof(deleted) - 1)] = '\0';
	*mp = (struct sym_mapping){.start = start, .end = end, .pgoff = off, .inode = ino, .dev_major = maj,
				   .dev_minor = min};
	if (!*path || !strncmp(path, "[anon:", 6)) {
		mp->kind = SYM_MAP_ANON;
		mp->name = "[anon]";
	} else if (*path == '[') {
		mp->kind = strcmp(path, "[vdso]") ? SYM_MAP_OTHER : SYM_MAP_VDSO;
		mp->name = sym_cache__intern(c, path);
	} else {
		char base[NAME_MAX + 1];
		mp->kind = SYM_MAP_FILE;
		mp->name = sym_cache__intern(c, base_name(path, base, sizeof(base)));
	}
	mp->path = strdup(path);
	if (!mp->name || !mp->path) {
		free((char *)mp->path);
		return -ENOMEM;
	}
	return 1;
}

/* Executable mappings of a maps text, with their tables. */
static int parse_maps(struct proc_maps *m, const char *text, struct sym_mapping **out, size_t *outn)
{
	struct sym_cache *c = m->c;
	struct sym_mapping *v = NULL;
	size_t n = 0, cap = 0;
	int err = 0;
	for (const char *line = text; line && *line;) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		char l[PATH_MAX + 128];
		if (len >= sizeof(l))
			len = sizeof(l) - 1;
		memcpy(l, line, len);
		l[len] = '\0';
		line = nl ? nl + 1 : NULL;

		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct sym_mapping *nv = realloc(v, nc * sizeof(*nv));
			if (!nv) {
				err = -ENOMEM;
				break;
			}
			v = nv;
			cap = nc;
		}
		struct sym_mapping *mp = &v[n];
		err = parse_maps_line(c, l, mp);
		if (err < 0)
			break;
		if (!err)
			continue;
		err = 0;
		n++;
		if (mp->kind == SYM_MAP_FILE)
			mp->table = mapping_table(c, m, mp);
		else if (mp->kind == SYM_MAP_VDSO)
			mp->table = sym_cache__vdso(c);
	}
	if (err) {
		free_mappings(v, n);
		return err;
	}
	*out = v;
	*outn = n;
	return 0;
}

static struct proc_maps *maps_new(struct sym_cache *c, pid_t pid, const char *text, bool live, int *err)
{
	struct proc_maps *m = calloc(1, sizeof(*m));
	int rc = -ENOMEM;
	if (!m)
		goto fail;
	m->c = c;
	m->pid = m->nspid = pid;
	m->live = live;
	char *owned = NULL;
	if (live) {
		char p[64];
		m->start_time = proc_start_time(pid);
		m->nspid = proc_nspid(pid);
		snprintf(p, sizeof(p), "/proc/%d/maps", (int)pid);
		long r = read_file(p, &owned);
		if (r < 0) {
			rc = r == -ENOENT ? -ESRCH : (int)r;
			goto fail;
		}
		text = owned;
		m->last_refresh_ns = now_ns(CLOCK_MONOTONIC);
	}
	rc = parse_maps(m, text, &m->maps, &m->n);
	free(owned);
	if (rc)
		goto fail;
	if (err)
		*err = 0;
	return m;
fail:
	free(m);
	if (err)
		*err = rc;
	return NULL;
}

struct proc_maps *proc_maps__snapshot(struct sym_cache *c, pid_t pid, int *err)
{
	return maps_new(c, pid, NULL, true, err);
}

struct proc_maps *proc_maps__parse(struct sym_cache *c, pid_t pid, const char *text, int *err)
{
	return maps_new(c, pid, text, false, err);
}

int proc_maps__refresh(struct proc_maps *m)
{
	if (!m->live)
		return -ESRCH;
	m->last_refresh_ns = now_ns(CLOCK_MONOTONIC);
	char p[64], *text = NULL;
	snprintf(p, sizeof(p), "/proc/%d/maps", (int)m->pid);
	long r = read_file(p, &text);
	/* Read the start time after the maps: if it still matches, the maps were the same process's. */
	if (r < 0 || proc_start_time(m->pid) != m->start_time) {
		free(text);
		m->live = false;
		return -ESRCH;
	}
	struct sym_mapping *v;
	size_t n;
	int err = parse_maps(m, text, &v, &n);
	free(text);
	if (err)
		return err;
	free_mappings(m->maps, m->n);
	m->maps = v;
	m->n = n;
	return 0;
}

void proc_maps__free(struct proc_maps *m)
{
	if (!m)
		return;
	free_mappings(m->maps, m->n);
	free(m);
}

pid_t proc_maps__pid(const struct proc_maps *m)
{
	return m->pid;
}

size_t proc_maps__count(const struct proc_maps *m)
{
	return m->n;
}

const struct sym_mapping *proc_maps__mapping(const struct proc_maps *m, size_t i)
{
	return i < m->n ? &m->maps[i] : NULL;
}

const struct sym_mapping *proc_maps__find(const struct proc_maps *m, uint64_t addr)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->maps[mid].end <= addr)
			lo = mid + 1;
		else if (m->maps[mid].start > addr)
			hi = mid;
		else
			return &m->maps[mid];
	}
	return NULL;
}

int sym_mapping__translate(const struct sym_mapping *mp, uint64_t addr, uint64_t *file_off, uint64_t *vaddr)
{
	if (addr < mp->start || addr >= mp->end)
		return -ERANGE;
	*file_off = addr - mp->start + mp->pgoff;
	return mp->table && !sym_table__vaddr(mp->table, *file_off, vaddr) ? 1 : 0;
}

pid_t proc_maps__nspid(const struct proc_maps *m)
{
	return m->nspid;
}

int proc_maps__live(const struct proc_maps *m)
{
	return m->live;
}

const struct sym_mapping *proc_maps__lookup(struct proc_maps *m, uint64_t addr)
{
	const struct sym_mapping *mp = proc_maps__find(m, addr);
	if (!mp && m->live && addr >= SYM_USER_ADDR_MIN && addr < SYM_USER_ADDR_END &&
	    now_ns(CLOCK_MONOTONIC) - m->last_refresh_ns >= SYM_REFRESH_MIN_NS && !proc_maps__refresh(m))
		mp = proc_maps__find(m, addr);
	return mp;
}
