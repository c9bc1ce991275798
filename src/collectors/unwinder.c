// SPDX-License-Identifier: BSD-2-Clause
/* The profiler's unwinding maps (unwinder.h): files' rules into the unwind_rows pool, processes' mappings into the
 * slots of unwind_procs, CPython layouts into py_layouts. */
#include "collectors/unwinder.h"
#include "profile/procmaps.h"

#include "lib/hash.h"
#include "lib/log.h"
#include "profile/pyruntime.h"
#include "profile/unwind_table.h"
#include "unwind.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <signal.h>
#include <sys/auxv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define UW_PROCS 4096		    /* processes followed (open addressing by pid) */
#define UW_SWEEP_NS (5 * NSEC_PER_SEC) /* how often exited processes are looked for */

/* A file whose rules were compiled (or could not be): rows [first, first + count) of the pool. */
struct uw_file {
	unsigned dev_major, dev_minor;
	uint64_t inode;
	uint32_t first, count;
	int err; /* 0, or why it has no rows (-ENOSPC: the pool was full) */
	struct py_file py; /* CPython, when the file is an interpreter (py_is) */
	bool py_is;
};

struct uw_slot {
	uint64_t hash; /* of the struct unwind_proc it holds */
	uint32_t refs;
};

struct uw_proc {
	pid_t pid;    /* 0: free */
	uint32_t slot;
	uint32_t py_layout; /* as in unwind_proc */
	bool python;
	bool py_said; /* its CPython was found unreadable, and said so */
};

struct unwinder {
	int rows_fd, procs_fd, slot_fd, layouts_fd;
	uint32_t rows_max, rows_used;
	struct uw_file vdso;   /* the vDSO's rules (one image in every process: loupe's own) */
	uint64_t vdso_vaddr;   /* its first PT_LOAD's virtual address (the load bias is its mapping's start less it) */
	bool vdso_tried;
	struct uw_file *files;
	size_t nfiles, capfiles;
	struct id_index file_idx;
	struct uw_slot slots[UNWIND_PROC_SLOTS];
	struct uw_proc procs[UW_PROCS];
	uint64_t last_sweep_ns;
	uint64_t budget_end_ns; /* no new file is compiled after this (unwinder__budget) */
	bool pending;		/* the last unwinder__add left a file for later */
	struct unwinder_stats st;
	struct unwind_proc tmp; /* the process being built */
};

static uint64_t file_hash(unsigned maj, unsigned min, uint64_t ino)
{
	uint64_t h = fnv1a(FNV1A_SEED, &maj, sizeof(maj));
	h = fnv1a(h, &min, sizeof(min));
	return fnv1a(h, &ino, sizeof(ino));
}

static uint64_t file_hash_of(const void *ctx, uint32_t id)
{
	const struct unwinder *u = ctx;
	const struct uw_file *f = &u->files[id];
	return file_hash(f->dev_major, f->dev_minor, f->inode);
}

struct file_key {
	const struct unwinder *u;
	const struct sym_mapping *mp;
};

static bool file_eq(const void *ctx, uint32_t id)
{
	const struct file_key *k = ctx;
	const struct uw_file *f = &k->u->files[id];
	return f->inode == k->mp->inode && f->dev_major == k->mp->dev_major && f->dev_minor == k->mp->dev_minor;
}

struct unwinder *unwinder__new(int rows_fd, uint32_t rows_max, int procs_fd, int slot_fd, int layouts_fd)
{
	struct unwinder *u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	*u = (struct unwinder){.rows_fd = rows_fd, .rows_max = rows_max, .procs_fd = procs_fd, .slot_fd = slot_fd,
			       .layouts_fd = layouts_fd};
	u->st.rows_max = rows_max;
	size_t n;
	const struct py_layout *L = pyruntime__layouts(&n);
	for (size_t i = 0; i < n && i + 1 < PY_LAYOUTS_MAX; i++) {
		uint32_t k = (uint32_t)i + 1; /* 0 is "not CPython" */
		if (bpf_map_update_elem(layouts_fd, &k, &L[i], BPF_ANY)) {
			int err = errno;
			free(u);
			errno = err;
			return NULL;
		}
	}
	return u;
}

void unwinder__free(struct unwinder *u)
{
	if (!u)
		return;
	free(u->files);
	id_index__free(&u->file_idx);
	free(u);
}

/* Copy t's rows into the pool at rows_used: 0 or -errno. */
static int pool_put(struct unwinder *u, const struct unwind_table *t, uint32_t *first)
{
	if (t->n > u->rows_max - u->rows_used)
		return -ENOSPC;
	uint32_t *keys = malloc(t->n * sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++)
		keys[i] = u->rows_used + (uint32_t)i;
	int err = 0;
	for (size_t done = 0; done < t->n && !err;) { /* in chunks: a batch is copied into the kernel at once */
		__u32 count = (__u32)(t->n - done < 65536 ? t->n - done : 65536);
		DECLARE_LIBBPF_OPTS(bpf_map_batch_opts, o);
		if (bpf_map_update_batch(u->rows_fd, keys + done, t->rows + done, &count, &o))
			err = -errno;
		done += count;
	}
	free(keys);
	if (!err) {
		*first = u->rows_used;
		u->rows_used += (uint32_t)t->n;
		u->st.rows_used = u->rows_used;
	}
	return err;
}

/* The rules of mapping mp of process pid: compiled now if the file is new. NULL when out of memory. */
static const struct uw_file NO_FILE_YET;

static const struct uw_file *file_of(struct unwinder *u, pid_t pid, const struct sym_mapping *mp)
{
	struct file_key k = {u, mp};
	uint64_t h = file_hash(mp->dev_major, mp->dev_minor, mp->inode);
	int64_t id = id_index__find(&u->file_idx, h, file_eq, &k);
	if (id >= 0)
		return &u->files[id];
	if (now_ns(CLOCK_MONOTONIC) > u->budget_end_ns) { /* later: the caller holds the daemon's lock */
		u->pending = true;
		return &NO_FILE_YET;
	}
	if (u->nfiles == u->capfiles) {
		size_t nc = u->capfiles ? 2 * u->capfiles : 64;
		struct uw_file *nf = realloc(u->files, nc * sizeof(*nf));
		if (!nf)
			return NULL;
		u->files = nf;
		u->capfiles = nc;
	}
	if (id_index__reserve(&u->file_idx, u->nfiles + 1, file_hash_of, u))
		return NULL;
	struct uw_file *f = &u->files[u->nfiles];
	*f = (struct uw_file){.dev_major = mp->dev_major, .dev_minor = mp->dev_minor, .inode = mp->inode};
	/* The file as the process sees it (its mount namespace), else the mapped file itself (a replaced file on disk;
	 * map_files needs CAP_SYS_ADMIN, which loupe does not keep after attaching: docs/privileges.md). */
	char err[160] = "";
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);
	int fd = proc_open_mapping(pid, mp->start, mp->end, mp->path, mp->inode);
	if (fd < 0) {
		f->err = fd;
	} else {
		Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
		struct unwind_table t = {0};
		f->err = e ? unwind_table__from_elf(e, &t, err, sizeof(err)) : -ENOEXEC;
		f->py_is = e && pyruntime__inspect(e, mp->name, &f->py) == 1;
		if (!f->err && t.n)
			f->err = pool_put(u, &t, &f->first);
		if (!f->err)
			f->count = (uint32_t)t.n;
		u->st.fdes_refused += t.refused;
		unwind_table__free(&t);
		if (e)
			elf_end(e);
		close(fd);
	}
	u->st.load_ns += now_ns(CLOCK_MONOTONIC) - t0;
	if (f->err == -ENOSPC) {
		if (!u->st.files_pool_full++)
			log_warn("profile_unwind_pool_full", "the unwind rule pool is full (%u rows): %s and later files "
				 "are unwound by frame pointers only", u->rows_max, mp->name);
	} else if (f->err) {
		u->st.files_failed++;
		log_debug("profile_unwind_no_rules", "no unwind rules for %s: %s", mp->name, err[0] ? err : strerror(-f->err));
	} else {
		u->st.files++;
		log_debug("profile_unwind_rules", "%u unwind rules for %s", f->count, mp->name);
	}
	id_index__insert(&u->file_idx, h, (uint32_t)u->nfiles);
	return &u->files[u->nfiles++];
}

/* The vDSO's rules, compiled once from loupe's own (the kernel maps the same image into every process). */
static const struct uw_file *vdso_file(struct unwinder *u)
{
	if (u->vdso_tried)
		return &u->vdso;
	u->vdso_tried = true;
	unsigned long base = getauxval(AT_SYSINFO_EHDR);
	char line[256];
	size_t size = 0;
	FILE *f = base ? fopen("/proc/self/maps", "re") : NULL;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		if (strstr(line, "[vdso]") && sscanf(line, "%lx-%lx", &s, &e) == 2 && s == base)
			size = e - s;
	}
	if (f)
		fclose(f);
	char *img = size ? malloc(size) : NULL; /* libelf may keep pointers into the image: a copy of our own */
	if (!img)
		return &u->vdso;
	memcpy(img, (void *)base, size);
	Elf *e = elf_memory(img, size);
	struct unwind_table t = {0};
	char err[160];
	size_t nph = 0;
	if (e && !elf_getphdrnum(e, &nph)) {
		for (size_t i = 0; i < nph; i++) {
			GElf_Phdr ph;
			if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD) {
				u->vdso_vaddr = ph.p_vaddr - ph.p_offset; /* the image is mapped from its offset 0 */
				break;
			}
		}
		if (!unwind_table__from_elf(e, &t, err, sizeof(err)) && t.n && !pool_put(u, &t, &u->vdso.first))
			u->vdso.count = (uint32_t)t.n;
	}
	unwind_table__free(&t);
	if (e)
		elf_end(e);
	free(img);
	return &u->vdso;
}

static struct uw_proc *proc_find(struct unwinder *u, pid_t pid, bool create)
{
	size_t j = ((uint32_t)pid * 2654435761u) & (UW_PROCS - 1);
	for (size_t i = 0; i < UW_PROCS; i++, j = (j + 1) & (UW_PROCS - 1)) {
		if (u->procs[j].pid == pid)
			return &u->procs[j];
		if (!u->procs[j].pid)
			return create ? &u->procs[j] : NULL;
	}
	return NULL;
}

static void slot_release(struct unwinder *u, uint32_t slot)
{
	if (slot < UNWIND_PROC_SLOTS && u->slots[slot].refs && !--u->slots[slot].refs) {
		u->slots[slot].hash = 0;
		u->st.slots--;
	}
}

/* Remove p from the table (keeping the probe chains of open addressing intact by reinserting what follows). */
static void proc_remove(struct unwinder *u, struct uw_proc *p)
{
	__u32 key = (__u32)p->pid;
	bpf_map_delete_elem(u->slot_fd, &key);
	slot_release(u, p->slot);
	u->st.procs--;
	u->st.py_procs -= p->python;
	size_t j = (size_t)(p - u->procs);
	u->procs[j] = (struct uw_proc){0};
	for (j = (j + 1) & (UW_PROCS - 1); u->procs[j].pid; j = (j + 1) & (UW_PROCS - 1)) {
		struct uw_proc e = u->procs[j];
		u->procs[j] = (struct uw_proc){0};
		*proc_find(u, e.pid, true) = e;
	}
}

void unwinder__budget(struct unwinder *u, uint64_t ns)
{
	u->budget_end_ns = now_ns(CLOCK_MONOTONIC) + ns;
}

int unwinder__add(struct unwinder *u, const struct proc_maps *m)
{
	pid_t pid = proc_maps__pid(m);
	u->pending = false;
	struct unwind_proc *up = &u->tmp;
	memset(up, 0, sizeof(*up));
	size_t n = proc_maps__count(m);
	/* The interpreter (or libpython) it maps, as an index into u->files (a later file_of() may move the array),
	 * and its load bias. */
	ptrdiff_t py_at = -1;
	bool unreadable = false;
	const struct uw_proc *known;
	uint64_t py_bias = 0;
	for (size_t i = 0; i < n && up->nmaps < UNWIND_PROC_MAPS; i++) {
		const struct sym_mapping *mp = proc_maps__mapping(m, i);
		struct unwind_map *um = &up->maps[up->nmaps];
		*um = (struct unwind_map){.start = mp->start, .end = mp->end};
		if (mp->kind == SYM_MAP_VDSO) {
			const struct uw_file *f = vdso_file(u);
			if (f->count) {
				um->bias = mp->start - u->vdso_vaddr;
				um->row_first = f->first;
				um->row_count = f->count;
			}
		} else if (mp->kind == SYM_MAP_FILE) {
			const struct uw_file *f = file_of(u, pid, mp);
			if (!f)
				return -ENOMEM;
			if (f->py_is && !f->count && py_at < 0) { /* no rules, yet an interpreter: the bias still */
				uint64_t off0, v0;
				if (sym_mapping__translate(mp, mp->start, &off0, &v0) == 1) {
					py_at = f - u->files;
					py_bias = mp->start - v0;
				}
			}
			/* The load bias, from an address of the mapping its file's PT_LOAD segments hold (a small
			 * file's code may end early in its one page: its start is held, its middle may not be). */
			uint64_t off, vaddr, try[3] = {mp->start, mp->start + (mp->end - mp->start) / 2, mp->end - 1};
			for (int k = 0; k < 3 && f->count; k++) {
				if (sym_mapping__translate(mp, try[k], &off, &vaddr) == 1) {
					um->bias = try[k] - vaddr;
					if (f->py_is && py_at < 0) {
						py_at = f - u->files;
						py_bias = um->bias;
					}
					um->row_first = f->first;
					um->row_count = f->count;
					break;
				}
			}
		}
		up->nmaps++;
	}
	const struct py_file *py_file = py_at >= 0 ? &u->files[py_at].py : NULL;
	if (py_file && py_file->layout) {
		up->py_layout = (uint32_t)py_file->layout;
		up->py_runtime = py_file->runtime_vaddr + py_bias;
	} else if (py_file && !((known = proc_find(u, pid, false)) && known->py_said)) {
		unreadable = true; /* said once per process, not at each re-read */
		u->st.py_unreadable++;
		snprintf(u->st.py_unreadable_why, sizeof(u->st.py_unreadable_why), "%s", py_file->why);
		log_warn("profile_python_unreadable", "process %d: %s; its native frames are still shown", (int)pid,
			 py_file->why);
	}
	uint64_t h = fnv1a(FNV1A_SEED, up, sizeof(*up));
	/* A slot holding the same, else a free one. */
	uint32_t slot = UNWIND_PROC_SLOTS, free_slot = UNWIND_PROC_SLOTS;
	for (uint32_t s = 0; s < UNWIND_PROC_SLOTS && slot == UNWIND_PROC_SLOTS; s++) {
		if (u->slots[s].refs && u->slots[s].hash == h)
			slot = s;
		else if (!u->slots[s].refs && free_slot == UNWIND_PROC_SLOTS)
			free_slot = s;
	}
	struct uw_proc *p = proc_find(u, pid, false);
	if (p)
		p->py_said |= unreadable;
	if (p && p->slot == slot && slot < UNWIND_PROC_SLOTS)
		return u->pending ? -EAGAIN : 0; /* nothing changed */
	if (slot == UNWIND_PROC_SLOTS) {
		if (free_slot == UNWIND_PROC_SLOTS)
			return -ENOSPC;
		slot = free_slot;
		if (bpf_map_update_elem(u->procs_fd, &slot, up, BPF_ANY))
			return -errno;
		u->slots[slot].hash = h;
		u->st.slots++;
	}
	u->slots[slot].refs++;
	if (p) {
		slot_release(u, p->slot);
		u->st.py_procs -= p->python;
	} else {
		if (!(p = proc_find(u, pid, true))) {
			slot_release(u, slot);
			return -ENOSPC;
		}
		p->pid = pid;
		u->st.procs++;
	}
	p->slot = slot;
	p->py_said |= unreadable;
	p->python = up->py_layout != 0;
	p->py_layout = up->py_layout;
	u->st.py_procs += p->python;
	__u32 key = (__u32)pid;
	if (bpf_map_update_elem(u->slot_fd, &key, &slot, BPF_ANY))
		return -errno;
	return u->pending ? -EAGAIN : 0;
}

void unwinder__forget(struct unwinder *u, pid_t pid)
{
	struct uw_proc *p = proc_find(u, pid, false);
	if (p)
		proc_remove(u, p);
}

void unwinder__sweep(struct unwinder *u)
{
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	if (now - u->last_sweep_ns < UW_SWEEP_NS)
		return;
	u->last_sweep_ns = now;
	for (size_t j = 0; j < UW_PROCS; j++)
		while (u->procs[j].pid && kill(u->procs[j].pid, 0) && errno == ESRCH)
			proc_remove(u, &u->procs[j]); /* what moves into j is checked too */
}

const struct py_layout *unwinder__py_layout(const struct unwinder *u, pid_t pid)
{
	const struct uw_proc *p = proc_find((struct unwinder *)u, pid, false);
	size_t n;
	const struct py_layout *L = pyruntime__layouts(&n);
	return p && p->py_layout && p->py_layout <= n ? &L[p->py_layout - 1] : NULL;
}

void unwinder__stats(const struct unwinder *u, struct unwinder_stats *st)
{
	*st = u->st;
}
