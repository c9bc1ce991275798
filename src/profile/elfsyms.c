// SPDX-License-Identifier: BSD-2-Clause
/* ELF function tables: symbols collected with their names into one arena, sorted, aliases merged, sizes of 0
 * stretched; PT_LOAD segments kept for address translation. */
#include "profile/addrtab.h"
#include "profile/elfsyms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include "lib/util.h"


/* A function: [addr, addr + size), name at names + name. 16 bytes, so libc's table stays small. */
struct sym_entry {
	uint64_t addr;
	uint32_t size;
	uint32_t name;
};
_Static_assert(offsetof(struct sym_entry, addr) == 0, "profile/addrtab.h reads the start first");

struct sym_seg {
	uint64_t off, filesz, vaddr;
};

struct sym_table {
	unsigned char build_id[SYM_BUILD_ID_MAX];
	size_t build_id_len;
	struct sym_entry *syms;
	size_t n;
	char *names;
	struct sym_seg *segs;
	size_t nsegs;
	int from_debug;
};


void sym_table__free(struct sym_table *t)
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

static uint64_t sym_size(const void *e)
{
	return ((const struct sym_entry *)e)->size;
}

const char *sym_table__find(const struct sym_table *t, uint64_t vaddr, uint64_t *offset)
{
	if (!t || !t->n)
		return NULL;
	int64_t i = addrtab_enclosing(t->syms, t->n, sizeof(*t->syms), vaddr, sym_size);
	if (i < 0)
		return NULL;
	if (offset)
		*offset = vaddr - t->syms[i].addr;
	return t->names + t->syms[i].name;
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
	 * in page faults and copies on this project's VM. The sizes are those of the sections' data, which libelf
	 * checked against the file: a header's sh_size (or a tiny sh_entsize) is whatever the file says. */
	size_t sym_size = gelf_fsize(e, ELF_T_SYM, 1, EV_CURRENT);
	if (sym_size && count > d->d_size / sym_size)
		count = d->d_size / sym_size;
	GElf_Shdr strsh;
	Elf_Scn *strscn = elf_getscn(e, sh.sh_link);
	Elf_Data *strd = strscn && gelf_getshdr(strscn, &strsh) && strsh.sh_type != SHT_NOBITS ?
			 elf_getdata(strscn, NULL) : NULL;
	size_t want = arena->len + (strd ? strd->d_size : 0) + 1;
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
	if (n) /* v is NULL for a file without functions: qsort() takes no NULL */
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

size_t elf_build_id(Elf *e, unsigned char *id, size_t cap)
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

Elf_Scn *elf_find_section(Elf *e, Elf64_Word type, const char *name)
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


bool sym_table__has_build_id(const struct sym_table *t, const unsigned char *id, size_t len)
{
	return len && t->build_id_len == len && !memcmp(t->build_id, id, len);
}

int sym_table__read(Elf *e, Elf *dbg, const unsigned char *id, size_t id_len, struct sym_table **out)
{
	struct sym_table *t = calloc(1, sizeof(*t));
	struct bsym *v = NULL;
	size_t n = 0, cap = 0;
	struct buf arena = {0};
	Elf_Scn *scn;
	int err;

	if (!t)
		return -ENOMEM;
	if (id_len > sizeof(t->build_id))
		id_len = sizeof(t->build_id);
	memcpy(t->build_id, id, id_len);
	t->build_id_len = id_len;
	err = read_segments(e, t);
	if (err)
		goto out;
	if (dbg) {
		err = collect_syms(dbg, elf_find_section(dbg, SHT_SYMTAB, NULL), &v, &n, &cap, &arena);
		t->from_debug = 1;
	} else if ((scn = elf_find_section(e, SHT_SYMTAB, NULL)) || (scn = elf_find_section(e, SHT_DYNSYM, NULL))) {
		err = collect_syms(e, scn, &v, &n, &cap, &arena);
	}
	if (err)
		goto out;
	err = finish_table(t, v, n, &arena);
	if (err)
		goto out;
	*out = t;
	t = NULL;
out:
	buf__free(&arena);
	free(v);
	sym_table__free(t);
	return err;
}
