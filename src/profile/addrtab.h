/* SPDX-License-Identifier: BSD-2-Clause */
/* Lookups in tables of address ranges sorted by start, the shape of every symbol table here (an ELF file's
 * functions, kallsyms, a perf map). Each table's entry type begins with its uint64_t start address. */
#ifndef LOUPE_ADDRTAB_H
#define LOUPE_ADDRTAB_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Entries looked at before the nearest start at or below an address, for a big range enclosing small ones. */
#define ADDRTAB_BACK_SCAN 8

static inline uint64_t addrtab_start(const void *base, size_t stride, size_t i)
{
	uint64_t start;
	memcpy(&start, (const char *)base + i * stride, sizeof(start));
	return start;
}

/* How many of the n entries start at or below addr: entry [result - 1] is the last such one. */
static inline size_t addrtab_upper(const void *base, size_t n, size_t stride, uint64_t addr)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (addrtab_start(base, stride, mid) <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The entry whose [start, start + size_of(entry)) holds addr, among the ADDRTAB_BACK_SCAN last ones starting at or
 * below it, nearest first: its index, or -1. size_of is inlined when the caller passes a static function. */
static inline int64_t addrtab_enclosing(const void *base, size_t n, size_t stride, uint64_t addr,
					uint64_t (*size_of)(const void *entry))
{
	for (size_t i = addrtab_upper(base, n, stride, addr), k = 0; i > 0 && k < ADDRTAB_BACK_SCAN; i--, k++) {
		const void *e = (const char *)base + (i - 1) * stride;
		if (addr - addrtab_start(base, stride, i - 1) < size_of(e))
			return (int64_t)(i - 1);
	}
	return -1;
}

#endif
