// SPDX-License-Identifier: BSD-2-Clause
/* libFuzzer target for the readers of ELF files a profiled process maps (its executable, its libraries: any bytes
 * the process's owner wrote): src/profile/elfsyms.c (function tables, PT_LOAD translation, build-id),
 * src/profile/debugfile.c (separate debug files by build-id and .gnu_debuglink), src/profile/symcache.c (which
 * ties them), src/profile/unwind_table.c (.eh_frame / .debug_frame into unwind rows, through libdw) and
 * src/profile/pyruntime.c's pyruntime__inspect() (_PyRuntime, Py_Version).
 * Input: byte 0 flags; bit 0: a debug file follows: bytes 1-3 the main file's length (little endian), then the
 * main file, then the debug file. The main file is written to DIR/bin/prog (one temporary directory per process);
 * the debug file where debugfile.c looks for it: DIR/debug/.build-id/xx/yyyy.debug (the main file's build-id)
 * and DIR/bin/.debug/LINK (its .gnu_debuglink). Then the real API reads them by path.
 * Invariants:
 *   tables: loaded or -ENOEXEC/-EINVAL/-ENOMEM; the build-id is the file's; functions come from a debug file only
 *     when one was planted and has a .symtab and a compatible build-id; every symbol lookup leads back to its
 *     function's start (found there with offset 0), and the name found at a symbol's address is the preferred one
 *     of the aliases there (global, weak, local; then fewest leading '_', then shortest), computed independently
 *     with libelf; file offsets translate through the first PT_LOAD holding them, and only then.
 *   unwind rows: on success at least two rows, pcs strictly increasing, kinds valid, no two neighbours with the
 *     same rule, the last one UW_CFA_NONE, unsupported rows counted, and unwind_table__find() answers the row
 *     whose range holds the address; a failure is one of the documented errors, with a reason.
 *   pyruntime__inspect(): 0 without _PyRuntime; else a layout whose version is the one written. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_file.h"
#include "profile/elfsyms.h"
#include "profile/pyruntime.h"
#include "profile/symcache.h"
#include "profile/unwind_table.h"

static char dir[64], prog[128], debug_root[128], bid_path[256], link_path[512];

static void rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st))
		return;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *e;
		char p[1024];
		while (d && (e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
			rm_rf(p);
		}
		if (d)
			closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

static void cleanup(void)
{
	if (dir[0])
		rm_rf(dir);
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK(fd >= 0);
	CHECK(n == 0 || write(fd, p, n) == (ssize_t)n);
	close(fd);
}

static void setup(void)
{
	if (dir[0])
		return;
	/* $TMPDIR when set (scripts/fuzz-long.sh points it at /dev/shm: each input writes and unlinks files), else /tmp */
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp || strlen(tmp) > 32)
		tmp = "/tmp";
	snprintf(dir, sizeof(dir), "%s/loupe-fuzz-elf-XXXXXX", tmp);
	CHECK(mkdtemp(dir));
	atexit(cleanup);
	snprintf(prog, sizeof(prog), "%s/bin", dir);
	CHECK(!mkdir(prog, 0755));
	snprintf(prog, sizeof(prog), "%s/bin/.debug", dir);
	CHECK(!mkdir(prog, 0755));
	snprintf(prog, sizeof(prog), "%s/bin/prog", dir);
	snprintf(debug_root, sizeof(debug_root), "%s/debug", dir);
	CHECK(!mkdir(debug_root, 0755));
	snprintf(bid_path, sizeof(bid_path), "%s/.build-id", debug_root);
	CHECK(!mkdir(bid_path, 0755));
	CHECK(elf_version(EV_CURRENT) != EV_NONE);
}

/* ---- an independent view of the function symbols ---- */

struct osym {
	uint64_t addr;
	const char *name;
	int rank, unders;
	size_t len;
};

/* The functions of the symbol section sym.c reads (first .symtab, else first .dynsym), with the same filter. */
static size_t oracle_syms(Elf *e, struct osym *out, size_t max)
{
	Elf_Scn *scn = elf_find_section(e, SHT_SYMTAB, NULL);
	if (!scn)
		scn = elf_find_section(e, SHT_DYNSYM, NULL);
	GElf_Shdr sh;
	Elf_Data *d;
	if (!scn || !gelf_getshdr(scn, &sh) || !sh.sh_entsize || !(d = elf_getdata(scn, NULL)))
		return 0;
	size_t n = 0, count = sh.sh_size / sh.sh_entsize;
	for (size_t i = 0; i < count && n < max; i++) {
		GElf_Sym s;
		if (!gelf_getsym(d, (int)i, &s))
			break;
		int type = GELF_ST_TYPE(s.st_info), bind = GELF_ST_BIND(s.st_info);
		if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s.st_shndx == SHN_UNDEF || s.st_shndx >= SHN_LORESERVE ||
		    !s.st_value)
			continue;
		const char *name = elf_strptr(e, sh.sh_link, s.st_name);
		if (!name || !*name)
			continue;
		out[n++] = (struct osym){s.st_value, name, bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 1 : 2,
					 (int)strspn(name, "_"), strlen(name)};
	}
	return n;
}

static int key_cmp(const struct osym *a, const struct osym *b)
{
	if (a->rank != b->rank)
		return a->rank - b->rank;
	if (a->unders != b->unders)
		return a->unders - b->unders;
	return a->len < b->len ? -1 : a->len > b->len;
}

static bool has_symtab(const uint8_t *p, size_t n)
{
	char *copy = malloc(n ? n : 1); /* libelf may convert a foreign byte order in place */
	CHECK(copy);
	memcpy(copy, p, n);
	Elf *e = elf_memory(copy, n);
	bool r = e && elf_kind(e) == ELF_K_ELF && elf_find_section(e, SHT_SYMTAB, NULL);
	elf_end(e);
	free(copy);
	return r;
}

static void check_table(const struct sym_table *t, Elf *main_elf, const uint8_t *dbg, size_t dbg_n,
			const unsigned char *id, size_t id_len)
{
	char hex[2 * SYM_BUILD_ID_MAX + 1];
	CHECK(sym_table__build_id(t, hex, sizeof(hex)) == id_len);
	for (size_t i = 0; i < id_len; i++) {
		char two[3];
		snprintf(two, sizeof(two), "%02x", id[i]);
		CHECK(hex[2 * i] == two[0] && hex[2 * i + 1] == two[1]);
	}
	CHECK(hex[2 * id_len] == '\0');
	CHECK(sym_table__has_build_id(t, id, id_len) == (id_len > 0));

	/* Where the functions come from. */
	Elf *src = main_elf, *de = NULL;
	uint8_t *dcopy = NULL;
	if (sym_table__from_debug_file(t)) {
		CHECK(dbg && has_symtab(dbg, dbg_n) && !elf_find_section(main_elf, SHT_SYMTAB, NULL));
		dcopy = malloc(dbg_n);
		CHECK(dcopy);
		memcpy(dcopy, dbg, dbg_n);
		de = elf_memory((char *)dcopy, dbg_n);
		CHECK(de);
		unsigned char did[SYM_BUILD_ID_MAX];
		size_t dlen = elf_build_id(de, did, sizeof(did));
		CHECK(!id_len || !dlen || (dlen == id_len && !memcmp(did, id, id_len)));
		src = de;
	}
	static struct osym o[1024];
	size_t n = oracle_syms(src, o, 1024);
	if (n < 1024)
		CHECK(sym_table__count(t) <= n);
	for (size_t i = 0; i < n && i < 256; i++) {
		uint64_t off = ~0ull, off2 = ~0ull;
		const char *name = sym_table__find(t, o[i].addr, &off);
		if (!name)
			continue;
		CHECK(name[0] && off <= o[i].addr);
		CHECK(sym_table__find(t, o[i].addr - off, &off2) == name && off2 == 0);
		if (off)
			continue;
		/* The name at this address is the best of its aliases. */
		const struct osym *best = NULL, *mine = NULL;
		for (size_t j = 0; j < n; j++) {
			if (o[j].addr != o[i].addr)
				continue;
			if (!best || key_cmp(&o[j], best) < 0)
				best = &o[j];
			if (!strcmp(o[j].name, name) && (!mine || key_cmp(&o[j], mine) < 0))
				mine = &o[j];
		}
		if (n < 1024) {
			CHECK(mine);
			CHECK(key_cmp(mine, best) == 0);
		}
	}
	/* PT_LOAD translation: the first segment holding the offset. */
	size_t np = 0;
	if (!elf_getphdrnum(main_elf, &np)) {
		for (size_t i = 0; i < np && i < 64; i++) {
			GElf_Phdr ph;
			if (!gelf_getphdr(main_elf, (int)i, &ph) || ph.p_type != PT_LOAD)
				continue;
			const uint64_t q[] = {ph.p_offset, ph.p_offset + ph.p_filesz - 1, ph.p_offset + ph.p_filesz};
			for (size_t k = 0; k < 3; k++) {
				bool want = false;
				uint64_t wv = 0, v = 0;
				for (size_t j = 0; j < np && !want; j++) {
					GElf_Phdr p2;
					if (gelf_getphdr(main_elf, (int)j, &p2) && p2.p_type == PT_LOAD &&
					    q[k] >= p2.p_offset && q[k] - p2.p_offset < p2.p_filesz) {
						want = true;
						wv = q[k] - p2.p_offset + p2.p_vaddr;
					}
				}
				int rc = sym_table__vaddr(t, q[k], &v);
				CHECK(rc == 0 || rc == -ENOENT);
				CHECK((rc == 0) == want);
				if (want)
					CHECK(v == wv);
			}
		}
	}
	elf_end(de);
	free(dcopy);
}

static void check_unwind(void)
{
	struct unwind_table t;
	char err[256] = "x";
	int rc = unwind_table__from_file(prog, &t, err, sizeof(err));
	if (rc) {
		CHECK(rc == -ENOENT || rc == -ERANGE || rc == -EINVAL || rc == -ENOMEM || rc == -ENOEXEC);
		CHECK(err[0] && memchr(err, '\0', sizeof(err)));
		CHECK(!t.rows && !t.n);
		return;
	}
	CHECK(t.n >= 2 && t.rows);
	CHECK(t.fdes >= 1);
	size_t unsup = 0;
	for (size_t i = 0; i < t.n; i++) {
		const struct unwind_row *r = &t.rows[i];
		CHECK(UW_ROW_CFA(r) <= UW_CFA_UNSUP && UW_ROW_RBP(r) <= UW_RBP_CFA);
		if (UW_ROW_CFA(r) == UW_CFA_UNSUP)
			unsup++;
		if (UW_ROW_CFA(r) != UW_CFA_RSP && UW_ROW_CFA(r) != UW_CFA_RBP)
			CHECK(UW_ROW_RBP(r) == UW_RBP_SAME);
		if (i) {
			const struct unwind_row *p = &t.rows[i - 1];
			CHECK(p->pc < r->pc); /* sorted, no two rows for one address */
			CHECK(!(p->kind == r->kind && p->cfa_off == r->cfa_off && p->rbp_off == r->rbp_off));
			CHECK(unwind_table__find(&t, r->pc - 1) == p);
		}
		CHECK(unwind_table__find(&t, r->pc) == r);
	}
	CHECK(unsup <= t.unsupported);
	CHECK(UW_ROW_CFA(&t.rows[t.n - 1]) == UW_CFA_NONE);
	if ((uint64_t)t.rows[t.n - 1].pc + 12345 <= UINT32_MAX)
		CHECK(unwind_table__find(&t, (uint64_t)t.rows[t.n - 1].pc + 12345) == &t.rows[t.n - 1]);
	if (t.rows[0].pc)
		CHECK(unwind_table__find(&t, t.rows[0].pc - 1) == NULL);
	CHECK(unwind_table__find(&t, (uint64_t)UINT32_MAX + 1) == NULL);
	unwind_table__free(&t);
	CHECK(!t.rows && !t.n);
}

static void check_python(Elf *e)
{
	struct py_file f;
	size_t nl;
	const struct py_layout *L = pyruntime__layouts(&nl);
	int rc = pyruntime__inspect(e, "python3.11", &f);
	CHECK(rc == 0 || rc == 1);
	CHECK(memchr(f.why, '\0', sizeof(f.why)) && memchr(f.version, '\0', sizeof(f.version)));
	if (!rc) {
		CHECK(f.layout == 0 && !f.runtime_vaddr && !f.why[0]);
		return;
	}
	CHECK(f.layout >= 0 && (size_t)f.layout <= nl);
	if (f.layout) {
		char v[16];
		snprintf(v, sizeof(v), "%u.%u", L[f.layout - 1].version >> 8, L[f.layout - 1].version & 0xff);
		CHECK(!strcmp(v, f.version) && !f.why[0]);
	} else {
		CHECK(f.why[0]);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	if (!size)
		return 0;
	const uint8_t *a = data + 1, *b = NULL;
	size_t an = size - 1, bn = 0;
	if (data[0] & 1 && size >= 4) {
		size_t len = data[1] | (size_t)data[2] << 8 | (size_t)data[3] << 16;
		a = data + 4;
		an = size - 4;
		if (len < an) {
			b = a + len;
			bn = an - len;
			an = len;
		}
	}
	write_file(prog, a, an);

	/* The build-id and debuglink as the production helpers read them, to plant the debug file. */
	uint8_t *acopy = malloc(an ? an : 1);
	CHECK(acopy);
	memcpy(acopy, a, an);
	Elf *e = elf_memory((char *)acopy, an);
	unsigned char id[SYM_BUILD_ID_MAX];
	size_t id_len = e && elf_kind(e) == ELF_K_ELF ? elf_build_id(e, id, sizeof(id)) : 0;
	bid_path[0] = link_path[0] = '\0';
	if (b && id_len >= 2) {
		char sub[512];
		snprintf(sub, sizeof(sub), "%s/.build-id/%02x", debug_root, id[0]);
		mkdir(sub, 0755);
		int o = snprintf(bid_path, sizeof(bid_path), "%s/", sub);
		for (size_t i = 1; i < id_len; i++)
			o += snprintf(bid_path + o, sizeof(bid_path) - (size_t)o, "%02x", id[i]);
		snprintf(bid_path + o, sizeof(bid_path) - (size_t)o, ".debug");
		write_file(bid_path, b, bn);
	}
	Elf_Scn *dl = b && e && elf_kind(e) == ELF_K_ELF ? elf_find_section(e, SHT_PROGBITS, ".gnu_debuglink") : NULL;
	Elf_Data *dd = dl ? elf_getdata(dl, NULL) : NULL;
	if (dd && dd->d_size && memchr(dd->d_buf, '\0', dd->d_size)) {
		const char *link = dd->d_buf;
		if (*link && !strchr(link, '/') && strlen(link) < 200 && strcmp(link, ".") && strcmp(link, "..")) {
			snprintf(link_path, sizeof(link_path), "%s/bin/.debug/%s", dir, link);
			write_file(link_path, b, bn);
		}
	}

	struct sym_cache_opts opts = {.debug_root = debug_root};
	struct sym_cache *c = sym_cache__new(&opts);
	CHECK(c);
	int err = 1;
	const struct sym_table *t = sym_cache__elf(c, prog, &err);
	CHECK(err == 0 || err == -ENOEXEC || err == -EINVAL || err == -ENOMEM);
	CHECK(!t == !!err);
	if (t) {
		CHECK(e && elf_kind(e) == ELF_K_ELF);
		check_table(t, e, b, bn, id, id_len);
		/* A second load of the same file is the cached table when it has a build-id. */
		const struct sym_table *t2 = sym_cache__elf(c, prog, &err);
		CHECK(t2 && !err);
		if (id_len)
			CHECK(t2 == t);
	}
	sym_cache__free(c);

	check_unwind();
	if (e && elf_kind(e) == ELF_K_ELF)
		check_python(e);
	elf_end(e);
	free(acopy);
	if (bid_path[0])
		unlink(bid_path);
	if (link_path[0])
		unlink(link_path);
	return 0;
}

/* ---- seeds: small ELF files of this machine, and this process's vDSO ---- */

static void seed_elf(const char *seeds, const char *name, const char *path, const char *debug)
{
	size_t an = 0, bn = 0;
	uint8_t *a = slurp(path, 1 << 20, &an), *b = debug ? slurp(debug, 1 << 20, &bn) : NULL;
	uint8_t *s = a ? malloc(4 + an + bn) : NULL;
	if (s && an < (1u << 24)) {
		size_t n = 0;
		s[n++] = b ? 1 : 0;
		if (b) {
			s[n++] = (uint8_t)an;
			s[n++] = (uint8_t)(an >> 8);
			s[n++] = (uint8_t)(an >> 16);
		}
		memcpy(s + n, a, an);
		n += an;
		if (b) {
			memcpy(s + n, b, bn);
			n += bn;
		}
		seed_bytes(seeds, name, s, n);
	}
	free(s);
	free(a);
	free(b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *seeds = getenv("LOUPE_FUZZ_SEEDS");
	if (!seeds)
		return 0;
	static const char lib[] = "/usr/lib/x86_64-linux-gnu";
	char p[256], q[256];
	seed_elf(seeds, "true", "/usr/bin/true", NULL);
	snprintf(p, sizeof(p), "%s/libdl.so.2", lib);
	seed_elf(seeds, "libdl", p, NULL);
	snprintf(p, sizeof(p), "%s/Scrt1.o", lib);
	seed_elf(seeds, "Scrt1", p, NULL);
	snprintf(q, sizeof(q), "%s/crti.o", lib);
	seed_elf(seeds, "crti", q, NULL);
	/* A stripped executable with a "debug file" that has a .symtab (no build-id: accepted by any). */
	seed_elf(seeds, "true+debug", "/usr/bin/true", p);
	/* The vDSO: .dynsym, .eh_frame, a build-id, no file. */
	unsigned long base = getauxval(AT_SYSINFO_EHDR);
	if (base) {
		const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
		size_t n = eh->e_shoff + (size_t)eh->e_shnum * eh->e_shentsize;
		uint8_t *s = n < (1 << 16) ? malloc(n + 1) : NULL;
		if (s) {
			s[0] = 0;
			memcpy(s + 1, (const void *)base, n);
			seed_bytes(seeds, "vdso", s, n + 1);
			free(s);
		}
	}
	return 0;
}
