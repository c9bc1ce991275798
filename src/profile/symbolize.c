/* Symbolisation: /proc/PID/maps snapshots, ELF function tables cached by build-id, kallsyms, perf maps. */
#include "profile/symbolize.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"

#define BACK_SCAN 8		/* symbols looked at before the nearest one, for a big one enclosing a small one */
#define KSYM_MAX_SPAN 65536	/* a kernel symbol last in its module reaches at most this far */
#define BUILD_ID_MAX 64
#define PERF_MAP_PROBE_NS 1000000000ull	/* a missing perf map is looked for again after 1 s */

/* A function: [addr, addr + size), name at names + name. 16 bytes, so libc's table stays small. */
struct sym_entry {
	uint64_t addr;
	uint32_t size;
	uint32_t name;
};

struct sym_seg {
	uint64_t off, filesz, vaddr;
};

struct sym_table {
	struct sym_table *next;
	unsigned char build_id[BUILD_ID_MAX];
	size_t build_id_len;
	struct sym_entry *syms;
	size_t n;
	char *names;
	struct sym_seg *segs;
	size_t nsegs;
	int from_debug;
};

/* (dev, inode) of a mapped file -> its table (NULL: not an ELF; not tried again). */
struct file_ref {
	struct file_ref *next;
	unsigned maj, min;
	uint64_t ino;
	struct sym_table *t;
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
	struct sym_table *tables;
	struct file_ref *files;
	struct name_ref *names;
	struct perf_slot *perf;
	struct ksyms *ks;
	bool ks_tried;
	struct sym_table *vdso;
	bool vdso_tried;
	struct sym_cache_stats st;
};

struct proc_maps {
	struct sym_cache *c;
	pid_t pid, nspid;
	uint64_t start_time;	/* field 22 of /proc/PID/stat: tells a reused pid */
	bool live;		/* may be re-read */
	uint64_t last_refresh_ns;
	struct sym_mapping *maps;
	size_t n;
};

struct ksym_entry {
	uint64_t addr;
	uint32_t name, module;
	uint32_t text;		/* a function (t T w W); other symbols only end the one before them */
};

struct ksyms {
	struct ksym_entry *e;
	size_t n;
	char *names;
	int restricted;
};

struct pm_entry {
	uint64_t start, size;
	uint32_t name, seq;
};

struct perf_map {
	char *path;
	struct pm_entry *e;
	size_t n, cap;
	struct buf names;
	uint64_t parsed;	/* bytes of the file consumed (complete lines) */
	dev_t dev;
	ino_t ino;
	uint32_t seq;
};

static const char *strip_dir(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* ---- ELF tables ---- */

static void sym_table__free(struct sym_table *t)
{
	if (!t)
		return;
	free(t->syms);
	free(t->names);
	free(t->segs);
	free(t);
}

size_t sym_table__count(const struct sym_table *t)
{
	return t ? t->n : 0;
}

int sym_table__from_debug_file(const struct sym_table *t)
{
	return t ? t->from_debug : 0;
}

size_t sym_table__build_id(const struct sym_table *t, char *hex, size_t n)
{
	if (n)
		hex[0] = '\0';
	if (!t || n < t->build_id_len * 2 + 1)
		return t ? t->build_id_len : 0;
	for (size_t i = 0; i < t->build_id_len; i++)
		snprintf(hex + 2 * i, 3, "%02x", t->build_id[i]);
	return t->build_id_len;
}

const char *sym_table__find(const struct sym_table *t, uint64_t vaddr, uint64_t *offset)
{
	if (!t || !t->n)
		return NULL;
	size_t lo = 0, hi = t->n;	/* first symbol above vaddr */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (t->syms[mid].addr <= vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo, k = 0; i > 0 && k < BACK_SCAN; i--, k++) {
		const struct sym_entry *s = &t->syms[i - 1];
		if (vaddr - s->addr < s->size) {
			if (offset)
				*offset = vaddr - s->addr;
			return t->names + s->name;
		}
	}
	return NULL;
}

int sym_table__vaddr(const struct sym_table *t, uint64_t off, uint64_t *vaddr)
{
	for (size_t i = 0; t && i < t->nsegs; i++) {
		const struct sym_seg *s = &t->segs[i];
		if (off >= s->off && off - s->off < s->filesz) {
			*vaddr = off - s->off + s->vaddr;
			return 0;
		}
	}
	return -ENOENT;
}

struct bsym {
	uint64_t addr, size, sec_end;
	uint32_t name, name_len;
	int rank;		/* binding: global 0, weak 1, local 2 */
	int unders;		/* leading underscores */
};

static int bsym_cmp(const void *a, const void *b)
{
	const struct bsym *x = a, *y = b;
	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	if (x->rank != y->rank)
		return x->rank - y->rank;
	if (x->unders != y->unders)
		return x->unders - y->unders;
	if (x->name_len != y->name_len)
		return x->name_len < y->name_len ? -1 : 1;
	return x->name < y->name ? -1 : x->name > y->name;
}

/* Functions of symbol section scn of e, appended to *v (count *n, capacity *cap) with names in arena. */
static int collect_syms(Elf *e, Elf_Scn *scn, struct bsym **v, size_t *n, size_t *cap, struct buf *arena)
{
	GElf_Shdr sh;
	if (!gelf_getshdr(scn, &sh) || !sh.sh_entsize)
		return -EINVAL;
	Elf_Data *d = elf_getdata(scn, NULL);
	if (!d)
		return -EINVAL;
	size_t shnum = 0;
	if (elf_getshdrnum(e, &shnum))
		return -EINVAL;
	size_t count = sh.sh_size / sh.sh_entsize;
	/* Sized up front (names take at most about the string table): growing by doubling spent most of a load
	 * in page faults and copies on this project's VM. */
	GElf_Shdr strsh;
	Elf_Scn *strscn = elf_getscn(e, sh.sh_link);
	size_t want = arena->len + (strscn && gelf_getshdr(strscn, &strsh) ? strsh.sh_size : 0) + 1;
	if (want > arena->cap) {
		char *p = realloc(arena->p, want);
		if (!p)
			return -ENOMEM;
		arena->p = p;
		arena->cap = want;
	}
	if (*n + count > *cap) {
		struct bsym *nv = realloc(*v, (*n + count) * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = *n + count;
	}
	for (size_t i = 0; i < count; i++) {
		GElf_Sym s;
		if (!gelf_getsym(d, (int)i, &s))
			break;
		int type = GELF_ST_TYPE(s.st_info);
		if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s.st_shndx == SHN_UNDEF ||
		    s.st_shndx >= SHN_LORESERVE || !s.st_value)
			continue;
		const char *name = elf_strptr(e, sh.sh_link, s.st_name);
		if (!name || !*name)
			continue;
		GElf_Shdr ssh;
		Elf_Scn *sscn = s.st_shndx < shnum ? elf_getscn(e, s.st_shndx) : NULL;
		uint64_t sec_end = sscn && gelf_getshdr(sscn, &ssh) ? ssh.sh_addr + ssh.sh_size : 0;
		if (*n == *cap) {
			size_t nc = *cap ? *cap * 2 : 1024;
			struct bsym *nv = realloc(*v, nc * sizeof(*nv));
			if (!nv)
				return -ENOMEM;
			*v = nv;
			*cap = nc;
		}
		int bind = GELF_ST_BIND(s.st_info);
		struct bsym *b = &(*v)[(*n)++];
		b->addr = s.st_value;
		b->size = s.st_size;
		b->sec_end = sec_end;
		b->name = (uint32_t)arena->len;
		b->name_len = (uint32_t)strlen(name);
		b->rank = bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 1 : 2;
		b->unders = (int)strspn(name, "_");
		buf__append(arena, name, b->name_len + 1);
	}
	return arena->oom ? -ENOMEM : 0;
}

/* Sorted, one symbol per address, sizes of 0 stretched to the next symbol or the end of the section. */
static int finish_table(struct sym_table *t, struct bsym *v, size_t n, struct buf *arena)
{
	qsort(v, n, sizeof(*v), bsym_cmp);
	t->syms = calloc(n ? n : 1, sizeof(*t->syms));
	if (!t->syms)
		return -ENOMEM;
	size_t out = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		uint64_t size = v[i].size;
		for (; j < n && v[j].addr == v[i].addr; j++)
			if (v[j].size > size)
				size = v[j].size;	/* an unsized alias of a sized function */
		if (!size) {
			uint64_t end = j < n ? v[j].addr : v[i].sec_end;
			if (v[i].sec_end > v[i].addr && v[i].sec_end < end)
				end = v[i].sec_end;
			size = end > v[i].addr ? end - v[i].addr : 0;
		}
		struct sym_entry *s = &t->syms[out++];
		s->addr = v[i].addr;
		s->size = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
		s->name = v[i].name;
		i = j;
	}
	t->n = out;
	/* The arena is given to the table as is: the dropped aliases' names are a few KiB at most. */
	t->names = arena->p;
	arena->p = NULL;
	buf__free(arena);
	if (!t->names) {
		t->names = strdup("");
		if (!t->names)
			return -ENOMEM;
	}
	return 0;
}

static size_t read_build_id(Elf *e, unsigned char *id, size_t cap)
{
	Elf_Scn *scn = NULL;
	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		if (!d)
			continue;
		GElf_Nhdr nh;
		size_t off = 0, name_off, desc_off;
		while ((off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
			if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
			    !memcmp((char *)d->d_buf + name_off, "GNU", 4) && nh.n_descsz <= cap) {
				memcpy(id, (char *)d->d_buf + desc_off, nh.n_descsz);
				return nh.n_descsz;
			}
		}
	}
	return 0;
}

static Elf_Scn *find_section(Elf *e, Elf64_Word type, const char *name)
{
	size_t shstrndx;
	if (elf_getshdrstrndx(e, &shstrndx))
		return NULL;
	Elf_Scn *scn = NULL;
	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != type)
			continue;
		if (!name)
			return scn;
		const char *n = elf_strptr(e, shstrndx, sh.sh_name);
		if (n && !strcmp(n, name))
			return scn;
	}
	return NULL;
}

static int read_segments(Elf *e, struct sym_table *t)
{
	size_t n;
	if (elf_getphdrnum(e, &n))
		return 0;	/* no program headers (a relocatable object): no translation */
	t->segs = calloc(n ? n : 1, sizeof(*t->segs));
	if (!t->segs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		t->segs[t->nsegs++] = (struct sym_seg){ph.p_offset, ph.p_filesz, ph.p_vaddr};
	}
	return 0;
}

/* An open debug file with a .symtab whose build-id matches (when both have one), else NULL. */
static Elf *open_debug(const char *path, const unsigned char *id, size_t id_len, int *fdp)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (e && elf_kind(e) == ELF_K_ELF && find_section(e, SHT_SYMTAB, NULL)) {
		unsigned char did[BUILD_ID_MAX];
		size_t dlen = read_build_id(e, did, sizeof(did));
		if (!id_len || !dlen || (dlen == id_len && !memcmp(did, id, id_len))) {
			*fdp = fd;
			return e;
		}
	}
	elf_end(e);
	close(fd);
	return NULL;
}

/* Separate debug file of the ELF at root + path: by build-id, then by .gnu_debuglink. */
static Elf *find_debug(struct sym_cache *c, Elf *e, const char *root, const char *path, const unsigned char *id,
		       size_t id_len, int *fdp)
{
	char p[PATH_MAX];
	Elf *d;
	if (id_len >= 2) {
		char hex[2 * BUILD_ID_MAX + 1];
		for (size_t i = 0; i < id_len; i++)
			snprintf(hex + 2 * i, 3, "%02x", id[i]);
		snprintf(p, sizeof(p), "%s%s/.build-id/%.2s/%s.debug", root, c->debug_root, hex, hex + 2);
		if ((d = open_debug(p, id, id_len, fdp)))
			return d;
		if (*root) {
			snprintf(p, sizeof(p), "%s/.build-id/%.2s/%s.debug", c->debug_root, hex, hex + 2);
			if ((d = open_debug(p, id, id_len, fdp)))
				return d;
		}
	}
	Elf_Scn *scn = path ? find_section(e, SHT_PROGBITS, ".gnu_debuglink") : NULL;
	Elf_Data *data = scn ? elf_getdata(scn, NULL) : NULL;
	if (!data || !data->d_size || !memchr(data->d_buf, '\0', data->d_size))
		return NULL;
	const char *link = data->d_buf;
	if (!*link || strchr(link, '/'))
		return NULL;
	const char *slash = strrchr(path, '/');
	int dirlen = slash ? (int)(slash - path) : 0;
	const char *fmts[] = {"%s%.*s/%s", "%s%.*s/.debug/%s"};
	for (size_t i = 0; i < ARRAY_SIZE(fmts); i++) {
		snprintf(p, sizeof(p), fmts[i], root, dirlen, path, link);
		if (strcmp(p, path) && (d = open_debug(p, id, id_len, fdp)))
			return d;
	}
	snprintf(p, sizeof(p), "%s%s%.*s/%s", root, c->debug_root, dirlen, path, link);
	if ((d = open_debug(p, id, id_len, fdp)))
		return d;
	if (*root) {
		snprintf(p, sizeof(p), "%s%.*s/%s", c->debug_root, dirlen, path, link);
		if ((d = open_debug(p, id, id_len, fdp)))
			return d;
	}
	return NULL;
}

static struct sym_table *table_by_build_id(struct sym_cache *c, const unsigned char *id, size_t len)
{
	for (struct sym_table *t = c->tables; t; t = t->next)
		if (len && t->build_id_len == len && !memcmp(t->build_id, id, len))
			return t;
	return NULL;
}

/* The table of the ELF e (read from root + path; path may be NULL: no debuglink search), from the cache when
 * its build-id is known. */
static int load_table(struct sym_cache *c, Elf *e, const char *root, const char *path, struct sym_table **out)
{
	unsigned char id[BUILD_ID_MAX];
	struct bsym *v = NULL;
	size_t n = 0, cap = 0;
	struct buf arena = {0};
	Elf *dbg = NULL;
	int dfd = -1, err;

	if (elf_kind(e) != ELF_K_ELF)
		return -ENOEXEC;
	size_t id_len = read_build_id(e, id, sizeof(id));
	struct sym_table *t = table_by_build_id(c, id, id_len);
	if (t) {
		*out = t;
		return 0;
	}
	c->st.elf_loads++;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	memcpy(t->build_id, id, id_len);
	t->build_id_len = id_len;
	err = read_segments(e, t);
	if (err)
		goto out;
	Elf_Scn *scn = find_section(e, SHT_SYMTAB, NULL);
	if (scn) {
		err = collect_syms(e, scn, &v, &n, &cap, &arena);
	} else if ((dbg = find_debug(c, e, root, path, id, id_len, &dfd))) {
		err = collect_syms(dbg, find_section(dbg, SHT_SYMTAB, NULL), &v, &n, &cap, &arena);
		t->from_debug = 1;
		c->st.debug_files++;
	} else if ((scn = find_section(e, SHT_DYNSYM, NULL))) {
		err = collect_syms(e, scn, &v, &n, &cap, &arena);
	}
	if (err)
		goto out;
	err = finish_table(t, v, n, &arena);
	if (err)
		goto out;
	t->next = c->tables;
	c->tables = t;
	c->st.tables++;
	c->st.symbols += t->n;
	*out = t;
	t = NULL;
out:
	elf_end(dbg);
	if (dfd >= 0)
		close(dfd);
	buf__free(&arena);
	free(v);
	sym_table__free(t);
	return err;
}

static int load_fd(struct sym_cache *c, int fd, const char *root, const char *path, struct sym_table **out)
{
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!e)
		return -ENOEXEC;
	int err = load_table(c, e, root, path, out);
	elf_end(e);
	return err;
}

const struct sym_table *sym_cache__elf(struct sym_cache *c, const char *path, int *err)
{
	struct sym_table *t = NULL;
	int rc, fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
	} else {
		rc = load_fd(c, fd, "", path, &t);
		close(fd);
	}
	if (err)
		*err = rc;
	return rc ? NULL : t;
}

/* ---- cache ---- */

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
		struct sym_table *t = c->tables;
		c->tables = t->next;
		sym_table__free(t);
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

static const char *intern(struct sym_cache *c, const char *s)
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
static struct sym_table *vdso_table(struct sym_cache *c)
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
	struct sym_table *t = NULL;
	if (e && !load_table(c, e, "", NULL, &t)) {
		/* load_table() linked it into the shared list; the vDSO keeps its own reference instead. */
		if (c->tables == t) {
			c->tables = t->next;
			c->st.tables--;
			c->st.symbols -= t->n;
			c->vdso = t;
		}
	}
	elf_end(e);
	free(img);
	return c->vdso;
}

/* ---- /proc/PID/maps snapshots ---- */

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
static int open_mapped(const char *path, uint64_t ino)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (ino && st.st_ino != ino)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The table of a file mapping. Tried in order: the process's own view of the path (containers), the mapped
 * file itself through map_files (deleted or replaced files; needs CAP_SYS_ADMIN), the process's view without the
 * inode check (overlayfs may show other inode numbers), the path as is. */
static struct sym_table *mapping_table(struct sym_cache *c, const struct proc_maps *m, const struct sym_mapping *mp)
{
	struct file_ref *f;
	for (f = c->files; f; f = f->next)
		if (f->ino == mp->inode && f->maj == mp->dev_major && f->min == mp->dev_minor)
			return f->t;
	char root[64] = "", p[PATH_MAX];
	int fd = -1;
	if (m->live) {
		snprintf(root, sizeof(root), "/proc/%d/root", (int)m->pid);
		snprintf(p, sizeof(p), "%s%s", root, mp->path);
		fd = open_mapped(p, mp->inode);
		if (fd < 0) {
			char mf[96];
			snprintf(mf, sizeof(mf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)m->pid, mp->start,
				 mp->end);
			fd = open_mapped(mf, 0);
		}
		if (fd < 0)
			fd = open_mapped(p, 0);
	}
	if (fd < 0) {
		root[0] = '\0';
		fd = open_mapped(mp->path, mp->inode);
	}
	if (fd < 0)
		return NULL;	/* not recorded: it may be readable next time */
	struct sym_table *t = NULL;
	int err = load_fd(c, fd, root, mp->path, &t);
	close(fd);
	if (err && err != -ENOEXEC)
		return NULL;
	if (mp->inode && (f = calloc(1, sizeof(*f)))) {
		*f = (struct file_ref){c->files, mp->dev_major, mp->dev_minor, mp->inode, t};
		c->files = f;
	}
	return t;
}

static void free_mappings(struct sym_mapping *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free((char *)v[i].path);
	free(v);
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

		unsigned long long start, end, off, ino;
		unsigned maj, min;
		char perms[8];
		int pos = 0;
		if (sscanf(l, "%llx-%llx %7s %llx %x:%x %llu%n", &start, &end, perms, &off, &maj, &min, &ino,
			   &pos) != 7 || strlen(perms) < 3 || perms[2] != 'x')
			continue;
		char *path = l + pos;
		path += strspn(path, " \t");
		size_t pl = strlen(path);
		static const char deleted[] = " (deleted)";
		if (pl >= sizeof(deleted) - 1 && !strcmp(path + pl - (sizeof(deleted) - 1), deleted))
			path[pl - (sizeof(deleted) - 1)] = '\0';
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
		*mp = (struct sym_mapping){.start = start, .end = end, .pgoff = off, .inode = ino, .dev_major = maj,
					   .dev_minor = min};
		if (!*path || !strncmp(path, "[anon:", 6)) {
			mp->kind = SYM_MAP_ANON;
			mp->name = "[anon]";
		} else if (*path == '[') {
			mp->kind = strcmp(path, "[vdso]") ? SYM_MAP_OTHER : SYM_MAP_VDSO;
			mp->name = intern(c, path);
		} else {
			mp->kind = SYM_MAP_FILE;
			mp->name = intern(c, *strip_dir(path) ? strip_dir(path) : path);
		}
		mp->path = strdup(path);
		if (!mp->name || !mp->path) {
			free((char *)mp->path);
			err = -ENOMEM;
			break;
		}
		n++;
		if (mp->kind == SYM_MAP_FILE)
			mp->table = mapping_table(c, m, mp);
		else if (mp->kind == SYM_MAP_VDSO)
			mp->table = vdso_table(c);
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

/* ---- resolution ---- */

/* The perf map of m's process, read again if it grew. A missing file is looked for again only after
 * PERF_MAP_PROBE_NS: without frame pointers, unwinding yields many addresses in no mapping, and each look costs
 * two failed opens. With probe 0 only a map already known is used. */
static struct perf_map *perf_map_for(struct sym_cache *c, const struct proc_maps *m, bool probe)
{
	struct perf_slot *s;
	for (s = c->perf; s; s = s->next)
		if (s->pid == m->pid)
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
		s->pid = m->pid;
		s->next = c->perf;
		c->perf = s;
	}
	s->last_probe_ns = now;
	char p[PATH_MAX];
	if (c->perf_map_dir) {
		snprintf(p, sizeof(p), "%s/perf-%d.map", c->perf_map_dir, (int)m->pid);
		s->pm = perf_map__load(p, NULL);
	} else {
		snprintf(p, sizeof(p), "/proc/%d/root/tmp/perf-%d.map", (int)m->pid, (int)m->nspid);
		if (m->live)
			s->pm = perf_map__load(p, NULL);
		if (!s->pm) {
			snprintf(p, sizeof(p), "/tmp/perf-%d.map", (int)m->pid);
			s->pm = perf_map__load(p, NULL);
		}
	}
	c->st.perf_map_reads += s->pm != NULL;
	return s->pm;
}

/* "NAME+0xOFF" by hand: in a stripped python3.11 most frames take this path, and snprintf() made it twice as
 * slow as a symbol lookup. */
static void format_offset(char *dst, size_t n, const char *name, uint64_t off)
{
	char hex[2 + 16];
	size_t h = sizeof(hex);
	do {
		hex[--h] = "0123456789abcdef"[off & 15];
		off >>= 4;
	} while (off);
	hex[--h] = 'x';
	hex[--h] = '0';
	size_t hl = sizeof(hex) - h, nl = strlen(name);
	if (nl + 1 + hl >= n)
		nl = n - 2 - hl;	/* SYM_NAME_MAX leaves room: cut the name, keep the offset */
	memcpy(dst, name, nl);
	dst[nl] = '+';
	memcpy(dst + nl + 1, hex + h, hl);
	dst[nl + 1 + hl] = '\0';
}

static void frame_copy(struct sym_frame *f, const char *name)
{
	snprintf(f->buf, sizeof(f->buf), "%s", name);
	f->name = f->buf;
}

int sym_resolve_user(struct sym_cache *c, struct proc_maps *m, uint64_t addr, struct sym_frame *f)
{
	const struct sym_mapping *mp = m ? proc_maps__find(m, addr) : NULL;
	if (!mp && m && m->live && addr >= SYM_USER_ADDR_MIN && addr < SYM_USER_ADDR_END &&
	    now_ns(CLOCK_MONOTONIC) - m->last_refresh_ns >= SYM_REFRESH_MIN_NS && !proc_maps__refresh(m))
		mp = proc_maps__find(m, addr);

	uint64_t off = 0, vaddr;
	if (mp && sym_mapping__translate(mp, addr, &off, &vaddr) > 0) {
		const char *name = sym_table__find(mp->table, vaddr, &f->offset);
		if (name) {
			f->name = name;
			f->module = mp->name;
			f->kind = SYM_FRAME_ELF;
			return 1;
		}
	}
	/* JIT code lives in anonymous memory (or memfd files); without a mapping it may be newer than the maps. */
	if (m && (!mp || mp->kind == SYM_MAP_ANON || (mp->kind == SYM_MAP_FILE && !mp->table))) {
		struct perf_map *pm = perf_map_for(c, m, mp != NULL);
		const char *name = pm ? perf_map__find(pm, addr, &f->offset) : NULL;
		if (name) {
			frame_copy(f, name);
			f->module = mp ? mp->name : "[unknown]";
			f->kind = SYM_FRAME_PERF_MAP;
			return 1;
		}
	}
	f->kind = SYM_FRAME_UNRESOLVED;
	f->name = f->buf;
	if (!mp) {
		f->module = "[unknown]";
		f->offset = 0;
		frame_copy(f, "[unknown]");
		return 0;
	}
	f->module = mp->name;
	f->offset = mp->kind == SYM_MAP_FILE ? off : addr - mp->start;
	format_offset(f->buf, sizeof(f->buf), mp->name, f->offset);
	return 0;
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

int sym_resolve_kernel(struct sym_cache *c, uint64_t addr, struct sym_frame *f)
{
	if (!c->ks_tried)
		sym_cache__reload_kernel(c);
	const char *module = NULL;
	const char *name = c->ks ? ksyms__find(c->ks, addr, &module, &f->offset) : NULL;
	if (name) {
		f->name = name;
		f->module = module;
		f->kind = SYM_FRAME_KERNEL;
		return 1;
	}
	frame_copy(f, "[kernel]");
	f->module = "[kernel]";
	f->offset = 0;
	f->kind = SYM_FRAME_UNRESOLVED;
	return 0;
}

/* ---- kallsyms ---- */

struct kbuild {
	uint64_t addr;
	uint32_t name, module;
	int rank, unders, len;
};

static int kbuild_cmp(const void *a, const void *b)
{
	const struct kbuild *x = a, *y = b;
	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	if (x->rank != y->rank)
		return x->rank - y->rank;
	if (x->unders != y->unders)
		return x->unders - y->unders;
	return x->len - y->len;
}

struct ksyms *ksyms__parse(const char *text, size_t n)
{
	struct ksyms *ks = calloc(1, sizeof(*ks));
	struct kbuild *v = NULL;
	size_t cnt = 0, cap = 0, lines = 0, zeros = 0;
	struct buf arena = {0};
	if (!ks)
		return NULL;
	/* Sized up front: names and modules take less than the text, and a line is at least 20 bytes. Growing
	 * by doubling cost half of the parse time in page faults and copies on this project's VM. */
	arena.cap = n + 64;
	arena.p = malloc(arena.cap);
	cap = n / 20 + 16;
	v = malloc(cap * sizeof(*v));
	if (!arena.p || !v)
		goto oom;
	buf__append(&arena, "[kernel]", sizeof("[kernel]"));
	uint32_t last_mod = 0;	/* offset of the last module name interned */
	char last_mod_name[64] = "[kernel]";
	for (size_t i = 0; i < n;) {
		const char *l = text + i;
		const char *nl = memchr(l, '\n', n - i);
		size_t len = nl ? (size_t)(nl - l) : n - i;
		i += len + 1;
		char line[512];
		if (len >= sizeof(line))
			continue;
		memcpy(line, l, len);
		line[len] = '\0';
		/* By hand: sscanf() made reading 120k lines take 125 ms. */
		char *end;
		unsigned long long addr = strtoull(line, &end, 16);
		if (end == line || *end != ' ' || !end[1] || end[2] != ' ')
			continue;
		char type = end[1];
		int pos = (int)(end + 3 - line);
		lines++;
		if (!addr) {
			zeros++;
			continue;
		}
		char *name = line + pos;
		char *mod = strpbrk(name, " \t");
		if (mod) {
			*mod++ = '\0';
			mod += strspn(mod, " \t");
			if (*mod != '[')
				mod = NULL;
		}
		if (!*name)
			continue;
		uint32_t mod_off = 0;
		if (mod) {
			char *close = strchr(mod, ']');
			if (close)
				close[1] = '\0';
			if (strcmp(mod, last_mod_name)) {
				snprintf(last_mod_name, sizeof(last_mod_name), "%s", mod);
				last_mod = (uint32_t)arena.len;
				buf__append(&arena, last_mod_name, strlen(last_mod_name) + 1);
			}
			mod_off = last_mod;
		}
		if (cnt == cap) {
			size_t nc = cap ? cap * 2 : 4096;
			struct kbuild *nv = realloc(v, nc * sizeof(*nv));
			if (!nv)
				goto oom;
			v = nv;
			cap = nc;
		}
		struct kbuild *k = &v[cnt++];
		k->addr = addr;
		k->module = mod_off;
		/* Data symbols stay as boundaries (a function must not reach over them) but are never answers. */
		k->rank = type == 'T' ? 0 : type == 'W' ? 1 : type == 't' ? 2 : type == 'w' ? 3 : 4;
		k->unders = (int)strspn(name, "_");
		k->len = (int)strlen(name);
		k->name = (uint32_t)arena.len;
		buf__append(&arena, name, (size_t)k->len + 1);
	}
	if (arena.oom)
		goto oom;
	ks->restricted = lines > 0 && zeros == lines;
	qsort(v, cnt, sizeof(*v), kbuild_cmp);
	ks->e = calloc(cnt ? cnt : 1, sizeof(*ks->e));
	if (!ks->e)
		goto oom;
	for (size_t i = 0; i < cnt; i++) {
		if (ks->n && ks->e[ks->n - 1].addr == v[i].addr)
			continue;	/* aliases: the first is the preferred one */
		ks->e[ks->n++] = (struct ksym_entry){v[i].addr, v[i].name, v[i].module, v[i].rank < 4};
	}
	free(v);
	ks->names = arena.p;
	return ks;
oom:
	free(v);
	buf__free(&arena);
	ksyms__free(ks);
	return NULL;
}

struct ksyms *ksyms__load(const char *path, int *err)
{
	char *text = NULL;
	long n = read_file(path, &text);
	if (n < 0) {
		if (err)
			*err = (int)n;
		return NULL;
	}
	struct ksyms *ks = ksyms__parse(text, (size_t)n);
	free(text);
	if (err)
		*err = ks ? 0 : -ENOMEM;
	return ks;
}

void ksyms__free(struct ksyms *ks)
{
	if (!ks)
		return;
	free(ks->e);
	free(ks->names);
	free(ks);
}

size_t ksyms__count(const struct ksyms *ks)
{
	return ks ? ks->n : 0;
}

int ksyms__restricted(const struct ksyms *ks)
{
	return ks ? ks->restricted : 1;
}

const char *ksyms__find(const struct ksyms *ks, uint64_t addr, const char **module, uint64_t *offset)
{
	if (!ks || !ks->n)
		return NULL;
	size_t lo = 0, hi = ks->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ks->e[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return NULL;
	const struct ksym_entry *k = &ks->e[lo - 1];
	if (!k->text)
		return NULL;
	/* kallsyms has no sizes: a symbol reaches the next one, unless that one is in another module (or there is
	 * none): then the gap may be unmapped or another module's data, and KSYM_MAX_SPAN bounds the guess. */
	bool bounded = lo < ks->n && ks->e[lo].module == k->module;
	if (!bounded && addr - k->addr >= KSYM_MAX_SPAN)
		return NULL;
	if (module)
		*module = ks->names + k->module;
	if (offset)
		*offset = addr - k->addr;
	return ks->names + k->name;
}

/* ---- perf maps ---- */

static int pm_cmp(const void *a, const void *b)
{
	const struct pm_entry *x = a, *y = b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Parse the complete lines of text[0..n); returns the bytes consumed. */
static size_t pm_parse(struct perf_map *pm, const char *text, size_t n)
{
	size_t done = 0;
	while (done < n) {
		const char *l = text + done;
		const char *nl = memchr(l, '\n', n - done);
		if (!nl)
			break;	/* a line being written: read it next time */
		size_t len = (size_t)(nl - l);
		done += len + 1;
		char line[1024];
		if (len >= sizeof(line))
			len = sizeof(line) - 1;
		memcpy(line, l, len);
		line[len] = '\0';
		unsigned long long start, size;
		int pos = 0;
		if (sscanf(line, "%llx %llx %n", &start, &size, &pos) != 2 || !pos || !line[pos] || !size)
			continue;
		char *name = line + pos;
		name[strcspn(name, "\r")] = '\0';
		if (!*name)
			continue;
		if (pm->n == pm->cap) {
			size_t nc = pm->cap ? pm->cap * 2 : 256;
			struct pm_entry *ne = realloc(pm->e, nc * sizeof(*ne));
			if (!ne)
				break;
			pm->e = ne;
			pm->cap = nc;
		}
		pm->e[pm->n++] = (struct pm_entry){start, size, (uint32_t)pm->names.len, pm->seq++};
		buf__append(&pm->names, name, strlen(name) + 1);
	}
	return done;
}

int perf_map__update(struct perf_map *pm)
{
	struct stat st;
	if (stat(pm->path, &st))
		return -errno;
	bool replaced = st.st_dev != pm->dev || st.st_ino != pm->ino || (uint64_t)st.st_size < pm->parsed;
	if (!replaced && (uint64_t)st.st_size == pm->parsed)
		return 0;
	int fd = open(pm->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		int err = -errno;
		close(fd);
		return err;
	}
	if (replaced) {
		pm->n = 0;
		pm->parsed = 0;
		buf__reset(&pm->names);
		pm->dev = st.st_dev;
		pm->ino = st.st_ino;
	}
	struct buf b = {0};
	char tmp[65536];
	ssize_t r;
	while ((r = pread(fd, tmp, sizeof(tmp), (off_t)(pm->parsed + b.len))) > 0)
		buf__append(&b, tmp, (size_t)r);
	close(fd);
	if (b.oom) {
		buf__free(&b);
		return -ENOMEM;
	}
	pm->parsed += pm_parse(pm, b.p ? b.p : "", b.len);
	buf__free(&b);
	qsort(pm->e, pm->n, sizeof(*pm->e), pm_cmp);
	return 1;
}

struct perf_map *perf_map__load(const char *path, int *err)
{
	struct perf_map *pm = calloc(1, sizeof(*pm));
	int rc = -ENOMEM;
	if (!pm || !(pm->path = strdup(path)))
		goto fail;
	rc = perf_map__update(pm);
	if (rc < 0)
		goto fail;
	if (err)
		*err = 0;
	return pm;
fail:
	perf_map__free(pm);
	if (err)
		*err = rc;
	return NULL;
}

void perf_map__free(struct perf_map *pm)
{
	if (!pm)
		return;
	free(pm->path);
	free(pm->e);
	buf__free(&pm->names);
	free(pm);
}

size_t perf_map__count(const struct perf_map *pm)
{
	return pm ? pm->n : 0;
}

const char *perf_map__find(const struct perf_map *pm, uint64_t addr, uint64_t *offset)
{
	if (!pm || !pm->n)
		return NULL;
	size_t lo = 0, hi = pm->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (pm->e[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* Walking back from the last start <= addr meets the newest line for a start first. */
	for (size_t i = lo, k = 0; i > 0 && k < BACK_SCAN; i--, k++) {
		const struct pm_entry *e = &pm->e[i - 1];
		if (addr - e->start < e->size) {
			if (offset)
				*offset = addr - e->start;
			return pm->names.p + e->name;
		}
	}
	return NULL;
}
