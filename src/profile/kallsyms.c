// SPDX-License-Identifier: BSD-2-Clause
/* kallsyms: the text is parsed by hand into one arena of names, sorted by address, aliases dropped. */
#include "profile/addrtab.h"
#include "profile/kallsyms.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include "lib/util.h"

#define KSYM_MAX_SPAN 65536	/* a kernel symbol last in its module reaches at most this far */

struct ksym_entry {
	uint64_t addr;
	uint32_t name, module;
	uint32_t text;		/* a function (t T w W); other symbols only end the one before them */
};
_Static_assert(offsetof(struct ksym_entry, addr) == 0, "profile/addrtab.h reads the start first");

struct ksyms {
	struct ksym_entry *e;
	size_t n;
	char *names;
	int restricted;
};

/* A symbol while the table is built: its rank orders aliases. */
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

/* The parse so far: symbols, their names and modules in one arena, and the module of the last line (modules
 * come in runs, so one remembered name spares interning each line's). */
struct kparse {
	struct kbuild *v;
	size_t cnt, cap;
	size_t lines, zeros;
	struct buf arena;
	uint32_t last_mod;	/* offset of the last module name interned */
	char last_mod_name[64];
};

/* One line "ADDR TYPE NAME [MODULE]" of kallsyms; 0 (also for a line skipped) or -ENOMEM. */
static int kparse_line(struct kparse *kp, const char *l, size_t len)
{
	char line[512];
	if (len >= sizeof(line))
		return 0;
	memcpy(line, l, len);
	line[len] = '\0';
	/* By hand: sscanf() made reading 120k lines take 125 ms. */
	char *end;
	unsigned long long addr = strtoull(line, &end, 16);
	if (end == line || *end != ' ' || !end[1] || end[2] != ' ')
		return 0;
	char type = end[1];
	int pos = (int)(end + 3 - line);
	kp->lines++;
	if (!addr) {
		kp->zeros++;
		return 0;
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
		return 0;
	uint32_t mod_off = 0;
	if (mod) {
		char *close = strchr(mod, ']');
		if (close)
			close[1] = '\0';
		if (strcmp(mod, kp->last_mod_name)) {
			snprintf(kp->last_mod_name, sizeof(kp->last_mod_name), "%s", mod);
			kp->last_mod = (uint32_t)kp->arena.len;
			buf__append(&kp->arena, kp->last_mod_name, strlen(kp->last_mod_name) + 1);
		}
		mod_off = kp->last_mod;
	}
	if (kp->cnt == kp->cap) {
		size_t nc = kp->cap ? kp->cap * 2 : 4096;
		struct kbuild *nv = realloc(kp->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		kp->v = nv;
		kp->cap = nc;
	}
	struct kbuild *k = &kp->v[kp->cnt++];
	k->addr = addr;
	k->module = mod_off;
	/* Data symbols stay as boundaries (a function must not reach over them) but are never answers. */
	k->rank = type == 'T' ? 0 : type == 'W' ? 1 : type == 't' ? 2 : type == 'w' ? 3 : 4;
	k->unders = (int)strspn(name, "_");
	k->len = (int)strlen(name);
	k->name = (uint32_t)kp->arena.len;
	buf__append(&kp->arena, name, (size_t)k->len + 1);
	return 0;
}

/* The parsed symbols sorted into ks, one per address (the preferred alias), the arena handed over; 0 or
 * -ENOMEM. */
static int kparse_finish(struct kparse *kp, struct ksyms *ks)
{
	ks->restricted = kp->lines > 0 && kp->zeros == kp->lines;
	qsort(kp->v, kp->cnt, sizeof(*kp->v), kbuild_cmp);
	ks->e = calloc(kp->cnt ? kp->cnt : 1, sizeof(*ks->e));
	if (!ks->e)
		return -ENOMEM;
	for (size_t i = 0; i < kp->cnt; i++) {
		const struct kbuild *k = &kp->v[i];
		if (ks->n && ks->e[ks->n - 1].addr == k->addr)
			continue;	/* aliases: the first is the preferred one */
		ks->e[ks->n++] = (struct ksym_entry){k->addr, k->name, k->module, k->rank < 4};
	}
	ks->names = kp->arena.p;
	kp->arena.p = NULL;
	return 0;
}

struct ksyms *ksyms__parse(const char *text, size_t n)
{
	struct ksyms *ks = calloc(1, sizeof(*ks));
	struct kparse kp = { .last_mod_name = "[kernel]" };
	if (!ks)
		return NULL;
	/* Sized up front: names and modules take less than the text, and a line is at least 20 bytes. Growing
	 * by doubling cost half of the parse time in page faults and copies on this project's VM. */
	kp.arena.cap = n + 64;
	kp.arena.p = malloc(kp.arena.cap);
	kp.cap = n / 20 + 16;
	kp.v = malloc(kp.cap * sizeof(*kp.v));
	if (!kp.arena.p || !kp.v)
		goto oom;
	buf__append(&kp.arena, "[kernel]", sizeof("[kernel]"));
	for (size_t i = 0; i < n;) {
		const char *l = text + i;
		const char *nl = memchr(l, '\n', n - i);
		size_t len = nl ? (size_t)(nl - l) : n - i;
		i += len + 1;
		if (kparse_line(&kp, l, len))
			goto oom;
	}
	if (kp.arena.oom || kparse_finish(&kp, ks))
		goto oom;
	free(kp.v);
	return ks;
oom:
	free(kp.v);
	buf__free(&kp.arena);
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
	size_t lo = addrtab_upper(ks->e, ks->n, sizeof(*ks->e), addr);
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

