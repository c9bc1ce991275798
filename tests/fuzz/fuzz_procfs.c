// SPDX-License-Identifier: BSD-2-Clause
/* libFuzzer target for the readers of text the kernel or a profiled process writes: src/profile/procmaps.c
 * (/proc/PID/maps: paths, and memfd or anonymous mapping names, are the process's choice), src/profile/kallsyms.c
 * (/proc/kallsyms) and src/profile/perfmap.c (/tmp/perf-PID.map, written by the JIT of the profiled process).
 * The first byte picks the reader (% 3); the rest is the file.
 *   maps:     proc_maps__parse() (files named by the lines are opened and their symbols loaded, as in production:
 *             seeds name real ones). Invariants: every mapping is executable text of the input, a file's name is a
 *             basename (DESIGN.md section 3: names are exported, paths never), lookups only ever answer a mapping
 *             holding the address, and exactly the right one when the mappings are sorted and disjoint;
 *             translation is addr - start + pgoff, and through the file's PT_LOAD segments when it has a table.
 *   kallsyms: ksyms__parse(). Invariants: an answer names a symbol of the input and a module "[kernel]" or one of
 *             the input, its offset leads back to the symbol's start (found there with offset 0) and every address
 *             in between gives the same symbol; a restricted table (all addresses 0) is empty.
 *   perf map: perf_map__load() of the first part through a memfd, the rest appended and perf_map__update(), must
 *             answer every lookup exactly as a fresh load of the whole file (the incremental re-read of complete
 *             lines); answers name text of the input and lead back to an entry starting at addr - offset. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_file.h"
#include "profile/kallsyms.h"
#include "profile/perfmap.h"
#include "profile/procmaps.h"
#include "profile/symcache.h"

enum { SEL_MAPS, SEL_KALLSYMS, SEL_PERFMAP, SEL_N };

/* Addresses to look up: those written at the start of each line (and after its first '-' and ' '), and
 * their neighbours. */
static size_t line_addrs(const char *text, uint64_t *out, size_t max)
{
	size_t n = 0;
	for (const char *l = text; l && *l && n + 8 <= max;) {
		char *end;
		uint64_t a = strtoull(l, &end, 16);
		uint64_t b = *end == '-' || *end == ' ' ? strtoull(end + 1, NULL, 16) : a;
		const uint64_t v[] = {a, a - 1, a + 1, a + 0xffff, a + 0x10000, b, b - 1, a + (b - a) / 2};
		for (size_t i = 0; i < 8; i++)
			out[n++] = v[i];
		l = strchr(l, '\n');
		l = l ? l + 1 : NULL;
	}
	return n;
}

/* text[0..n) with NULs made newlines (where the readers stop a line's text), NUL-terminated, for line_addrs(). */
static char *nul_to_newline(const char *text, size_t n)
{
	char *z = malloc(n + 1);
	CHECK(z);
	for (size_t i = 0; i < n; i++)
		z[i] = text[i] ? text[i] : '\n';
	z[n] = '\0';
	return z;
}

/* ---- /proc/PID/maps ---- */

static struct sym_cache *cache;
static unsigned cache_uses;

static void fuzz_maps(const char *text)
{
	/* The cache keeps every table and name it saw (as the daemon's does for its lifetime): start again now and
	 * then, so a long run does not grow without bound. */
	if (!cache || ++cache_uses % 4096 == 0) {
		sym_cache__free(cache);
		cache = sym_cache__new(NULL);
		CHECK(cache);
	}
	int err = 1;
	struct proc_maps *m = proc_maps__parse(cache, 4242, text, &err);
	CHECK(m ? err == 0 : err == -ENOMEM);
	if (!m)
		return;
	CHECK(proc_maps__pid(m) == 4242 && proc_maps__nspid(m) == 4242 && !proc_maps__live(m));
	CHECK(proc_maps__refresh(m) == -ESRCH); /* a parsed text is never re-read */
	size_t n = proc_maps__count(m), lines = 1;
	for (const char *p = text; *p; p++)
		lines += *p == '\n';
	CHECK(n <= lines);
	CHECK(proc_maps__mapping(m, n) == NULL);
	bool sorted = true;
	for (size_t i = 0; i < n; i++) {
		const struct sym_mapping *mp = proc_maps__mapping(m, i);
		CHECK(mp && mp->name && mp->name[0] && mp->path);
		CHECK(strlen(mp->path) < 4096 + 128);
		switch (mp->kind) {
		case SYM_MAP_FILE:
			CHECK(mp->path[0] && mp->path[0] != '[');
			CHECK(!strchr(mp->name, '/')); /* a basename: exported */
			CHECK(strstr(mp->path, mp->name) || !strcmp(mp->name, "[anon]"));
			break;
		case SYM_MAP_ANON:
			CHECK(!strcmp(mp->name, "[anon]") && !mp->table);
			CHECK(!mp->path[0] || !strncmp(mp->path, "[anon:", 6));
			break;
		case SYM_MAP_VDSO:
			CHECK(!strcmp(mp->name, "[vdso]") && !strcmp(mp->path, "[vdso]"));
			break;
		case SYM_MAP_OTHER:
			CHECK(mp->name[0] == '[' && !strcmp(mp->name, mp->path) && !mp->table);
			break;
		default:
			CHECK(!"mapping kind");
		}
		if (mp->start >= mp->end || (i && mp->start < proc_maps__mapping(m, i - 1)->end))
			sorted = false;
		/* translation */
		uint64_t off = 0, vaddr = 0;
		if (mp->start < mp->end) {
			uint64_t a = mp->start + (mp->end - mp->start) / 2;
			int rc = sym_mapping__translate(mp, a, &off, &vaddr);
			CHECK(rc == 0 || rc == 1);
			CHECK(off == a - mp->start + mp->pgoff);
			if (rc == 1) {
				uint64_t v2;
				CHECK(mp->table && sym_table__vaddr(mp->table, off, &v2) == 0 && v2 == vaddr);
			}
			CHECK(sym_mapping__translate(mp, mp->end, &off, &vaddr) == -ERANGE);
		}
		if (mp->start)
			CHECK(sym_mapping__translate(mp, mp->start - 1, &off, &vaddr) == -ERANGE);
	}
	for (size_t i = 0; i < n; i++) {
		const struct sym_mapping *mp = proc_maps__mapping(m, i);
		const uint64_t q[] = {mp->start, mp->end - 1, mp->end, mp->start - 1, mp->start / 2 + mp->end / 2};
		for (size_t k = 0; k < sizeof(q) / sizeof(q[0]); k++) {
			const struct sym_mapping *f = proc_maps__find(m, q[k]);
			CHECK(!f || (q[k] >= f->start && q[k] < f->end)); /* never an address outside its answer */
			CHECK(proc_maps__lookup(m, q[k]) == f);	   /* not live: no re-read */
			if (sorted) {
				const struct sym_mapping *want = NULL;
				for (size_t j = 0; j < n && !want; j++)
					if (q[k] >= proc_maps__mapping(m, j)->start && q[k] < proc_maps__mapping(m, j)->end)
						want = proc_maps__mapping(m, j);
				CHECK(f == want);
			}
		}
	}
	proc_maps__free(m);
}

/* ---- /proc/kallsyms ---- */

static void fuzz_kallsyms(const char *text, size_t size)
{
	char *copy = malloc(size ? size : 1); /* exactly the input: ASan sees a read past it */
	CHECK(copy);
	memcpy(copy, text, size);
	struct ksyms *ks = ksyms__parse(copy, size);
	char *copy_z = nul_to_newline(text, size);
	CHECK(ks);
	size_t lines = 1;
	for (size_t i = 0; i < size; i++)
		lines += text[i] == '\n';
	CHECK(ksyms__count(ks) <= lines);
	if (ksyms__restricted(ks))
		CHECK(ksyms__count(ks) == 0);
	static uint64_t q[4096];
	size_t nq = line_addrs(copy_z, q, sizeof(q) / sizeof(q[0]));
	for (size_t i = 0; i < nq; i++) {
		const char *mod = NULL, *mod2 = NULL;
		uint64_t off = ~0ull, off2 = ~0ull;
		const char *name = ksyms__find(ks, q[i], &mod, &off);
		if (!name)
			continue;
		CHECK(name[0] && strlen(name) < 512 && memmem(text, size, name, strlen(name)));
		CHECK(mod && mod[0] == '[' && (!strcmp(mod, "[kernel]") || memmem(text, size, mod, strlen(mod))));
		CHECK(off <= q[i]);
		CHECK(ksyms__find(ks, q[i] - off, &mod2, &off2) == name && off2 == 0 && mod2 == mod);
		CHECK(ksyms__find(ks, q[i] - off / 2, &mod2, &off2) == name && off2 == off - off / 2);
		CHECK(ksyms__find(ks, q[i], NULL, NULL) == name);
	}
	ksyms__free(ks);
	free(copy);
	free(copy_z);
}

/* ---- perf maps ---- */

static void fuzz_perfmap(const uint8_t *data, size_t size)
{
	static struct mfile grow, whole;
	mfile_open(&grow, "perf-grow.map");
	mfile_open(&whole, "perf-whole.map");
	if (!size)
		return;
	size_t split = (size_t)data[0] * (size - 1) / 255;
	const char *text = (const char *)data + 1;
	size--;
	if (split > size)
		split = size;
	mfile_set(&grow, text, split);
	mfile_set(&whole, text, size);
	int err = 1;
	struct perf_map *a = perf_map__load(grow.path, &err);
	CHECK(a && err == 0);
	CHECK(perf_map__update(a) == 0); /* nothing new */
	mfile_append(&grow, text + split, size - split);
	int rc = perf_map__update(a);
	CHECK(rc == (split < size ? 1 : 0));
	struct perf_map *b = perf_map__load(whole.path, &err);
	CHECK(b && err == 0);
	CHECK(perf_map__count(a) == perf_map__count(b));

	char *z = nul_to_newline(text, size);
	static uint64_t q[4096];
	size_t nq = line_addrs(z, q, sizeof(q) / sizeof(q[0]));
	for (size_t i = 0; i < nq; i++) {
		uint64_t oa = ~0ull, ob = ~0ull, o2 = ~0ull;
		const char *na = perf_map__find(a, q[i], &oa), *nb = perf_map__find(b, q[i], &ob);
		CHECK(!na == !nb);
		if (!na)
			continue;
		CHECK(!strcmp(na, nb) && oa == ob);
		CHECK(na[0] && !strchr(na, '\n') && !strchr(na, '\r') && memmem(text, size, na, strlen(na)));
		CHECK(oa <= q[i] && perf_map__find(a, q[i] - oa, &o2) && o2 == 0);
	}
	free(z);
	perf_map__free(a);
	perf_map__free(b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("LOUPE_FUZZ_SEEDS");
	if (!dir)
		return 0;
	size_t n;
	uint8_t *b;
	char *s;
	/* This process's own maps, and a hand-made one with every kind of line. */
	if ((b = slurp("/proc/self/maps", 200000, &n)) && (s = malloc(n + 1))) {
		s[0] = SEL_MAPS;
		memcpy(s + 1, b, n);
		seed_bytes(dir, "maps-self", s, n + 1);
		free(s);
	}
	free(b);
	static const char maps[] =
		"\x00"
		"55d0a1a00000-55d0a1a02000 r--p 00000000 08:01 1835013                    /usr/bin/true\n"
		"55d0a1a02000-55d0a1a06000 r-xp 00002000 08:01 1835013                    /usr/bin/true\n"
		"7f1c2c000000-7f1c2c021000 rwxp 00000000 00:00 0 \n"
		"7f1c2d000000-7f1c2d001000 r-xp 00000000 00:01 34000                      /memfd:jit (deleted)\n"
		"7f1c2e000000-7f1c2e001000 r-xs 00000000 00:01 34001                      [anon:v8 code]\n"
		"7f1c2f000000-7f1c2f001000 r-xp 00000000 00:00 0                          /lib/x86_64-linux-gnu/libc.so.6\n"
		"7ffd5e1f3000-7ffd5e1f5000 r-xp 00000000 00:00 0                          [vdso]\n"
		"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n";
	seed_bytes(dir, "maps-kinds", maps, sizeof(maps) - 1);

	/* The head of /proc/kallsyms (addresses read 0 without CAP_SYSLOG: restricted), and one by hand with
	 * modules, aliases and data symbols. */
	if ((b = slurp("/proc/kallsyms", 16384, &n)) && (s = malloc(n + 1))) {
		s[0] = SEL_KALLSYMS;
		memcpy(s + 1, b, n);
		seed_bytes(dir, "kallsyms-head", s, n + 1);
		free(s);
	}
	free(b);
	static const char ksyms[] =
		"\x01"
		"ffffffff81000000 T _stext\n"
		"ffffffff81000000 T startup_64\n"
		"ffffffff81000100 t __pfx_secondary_startup\n"
		"ffffffff81000110 W weak_fn\n"
		"ffffffff81000110 T strong_fn\n"
		"ffffffff81000200 D some_data\n"
		"ffffffff81000300 t local_fn\n"
		"ffffffffc0a01000 t nft_do_chain\t[nf_tables]\n"
		"ffffffffc0a01080 T nft_register_expr\t[nf_tables]\n"
		"ffffffffc0b00000 t xt_init\t[x_tables]\n"
		"0000000000000000 A fixed_percpu_data\n";
	seed_bytes(dir, "kallsyms-hand", ksyms, sizeof(ksyms) - 1);

	/* Perf maps: the Linux perf tool's format, as V8, the JVM and CPython's trampoline write it; the split
	 * byte puts part of it in the first read. */
	static const char pm[] =
		"\x02\x80"
		"7f0000001000 40 py::main:/app/main.py\n"
		"0x7f0000001040 0x20 LazyCompile:~handler /srv/app.js:10\r\n"
		"7f0000002000 100 Interpreter\n"
		"7f0000001000 10 py::reused:/app/x.py\n"
		"7f0000003000 0 zero size\n"
		"bad line\n"
		"7f0000004000 8 partial-line-without-newline";
	seed_bytes(dir, "perfmap", pm, sizeof(pm) - 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	int sel = data[0] % SEL_N;
	data++;
	size--;
	if (sel == SEL_PERFMAP) {
		fuzz_perfmap(data, size);
		return 0;
	}
	char *text = malloc(size + 1);
	CHECK(text);
	memcpy(text, data, size);
	text[size] = '\0';
	if (sel == SEL_MAPS)
		fuzz_maps(text);
	else
		fuzz_kallsyms(text, size);
	free(text);
	return 0;
}
