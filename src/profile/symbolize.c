// SPDX-License-Identifier: BSD-2-Clause
/* Symbolisation's front: an address to a frame, through the snapshot's mappings and the ELF tables (procmaps.h,
 * elfsyms.h), perf maps for JIT code (perfmap.h) and kallsyms (kallsyms.h), all held by the cache (symcache.h);
 * and the fallback names when none knows the address. */
#include "profile/symbolize.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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

/* An ELF symbol of mapping mp for addr: 1 with f filled, else 0 with *file_off set when addr is in mp. */
static int resolve_elf(const struct sym_mapping *mp, uint64_t addr, uint64_t *file_off, struct sym_frame *f)
{
	uint64_t vaddr;
	if (!mp || sym_mapping__translate(mp, addr, file_off, &vaddr) <= 0)
		return 0;
	const char *name = sym_table__find(mp->table, vaddr, &f->offset);
	if (!name)
		return 0;
	f->name = name;
	f->module = mp->name;
	f->kind = SYM_FRAME_ELF;
	return 1;
}

/* A perf map entry for addr: 1 with f filled, else 0. JIT code lives in anonymous memory (or memfd files);
 * without a mapping it may be newer than the maps, but then only a perf map already read is searched (broken
 * unwinds make many such addresses, and each look for a missing file costs two failed opens). */
static int resolve_jit(struct sym_cache *c, const struct proc_maps *m, const struct sym_mapping *mp, uint64_t addr,
		       struct sym_frame *f)
{
	if (mp && mp->kind != SYM_MAP_ANON && (mp->kind != SYM_MAP_FILE || mp->table))
		return 0;
	struct perf_map *pm = sym_cache__perf_map(c, proc_maps__pid(m), proc_maps__nspid(m), proc_maps__live(m),
						  mp != NULL);
	const char *name = pm ? perf_map__find(pm, addr, &f->offset) : NULL;
	if (!name)
		return 0;
	frame_copy(f, name);
	f->module = mp ? mp->name : "[unknown]";
	f->kind = SYM_FRAME_PERF_MAP;
	return 1;
}

int sym_resolve_user(struct sym_cache *c, struct proc_maps *m, uint64_t addr, struct sym_frame *f)
{
	const struct sym_mapping *mp = m ? proc_maps__lookup(m, addr) : NULL;
	uint64_t off = 0;

	if (resolve_elf(mp, addr, &off, f) || (m && resolve_jit(c, m, mp, addr, f)))
		return 1;
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

int sym_resolve_kernel(struct sym_cache *c, uint64_t addr, struct sym_frame *f)
{
	const struct ksyms *ks = sym_cache__ksyms(c);
	const char *module = NULL;
	const char *name = ks ? ksyms__find(ks, addr, &module, &f->offset) : NULL;
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
