// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for symbolisation (src/profile/symbolize.c and the modules it combines: elfsyms, debugfile,
 * procmaps, symcache, kallsyms, perfmap): addresses of functions whose names the test itself compiled (with gcc,
 * into a temporary directory, at run time) resolve to exactly those names, in a PIE, a non-PIE, a stripped binary
 * with .dynsym only, binaries whose symbols are in separate debug files (by debuglink and by build-id) and
 * shared libraries dlopen()ed into this process; snapshots outlive their processes; perf maps, kallsyms and the
 * fallback names. The expected ELF virtual addresses come from nm(1), not from the code under test.
 * Needs gcc and binutils (strip, objcopy, nm); no root (the check against the real /proc/kallsyms needs root or
 * CAP_SYSLOG and is skipped, with the reason, without). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "profile/symbolize.h"
#include "lib/util.h"

/* The fixture: known functions, one of them static (in .symtab only, never in .dynsym). With FX_MAIN it prints
 * their addresses and waits for EOF on stdin, so the test decides when it exits. */
static const char fixture_src[] =
	"#include <stdio.h>\n"
	"#include <unistd.h>\n"
	"__attribute__((noinline)) int fx_alpha(int x) { return x * 3 + 1; }\n"
	"__attribute__((noinline)) int fx_beta(int x) { return fx_alpha(x) - 2; }\n"
	"__attribute__((noinline)) static int fx_local(int x) { return x ^ 0x55; }\n"
	"void *fx_local_addr(void) { return (void *)fx_local; }\n"
	"#ifdef FX_MAIN\n"
	"int main(void)\n"
	"{\n"
	"	printf(\"%p %p %p\\n\", (void *)fx_alpha, (void *)fx_beta, fx_local_addr());\n"
	"	fflush(stdout);\n"
	"	char c;\n"
	"	while (read(0, &c, 1) > 0)\n"
	"		;\n"
	"	return fx_local(fx_beta(1)) == 0;\n"
	"}\n"
	"#endif\n";

static const char *const fx_names[3] = {"fx_alpha", "fx_beta", "fx_local"};

static char dir[64];
static char skip_reason[256];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

#define CFLAGS "-O0 -fno-inline -Wl,--build-id"

/* Build the fixture ELFs into a fresh temporary directory. 0 when built; 1 with skip_reason set when this host
 * cannot build them; -1 on an error. */
static int setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/loupe-symtest-XXXXXX");
	if (!mkdtemp(dir)) {
		dir[0] = '\0';
		return -1;
	}
	char p[128];
	snprintf(p, sizeof(p), "%s/fx.c", dir);
	FILE *f = fopen(p, "w");
	if (!f)
		return -1;
	fputs(fixture_src, f);
	fclose(f);
	if (sh("(command -v gcc && command -v strip && command -v objcopy && command -v nm) >/dev/null") != 0) {
		snprintf(skip_reason, sizeof(skip_reason), "needs gcc and binutils (apt-get install gcc binutils)");
		return 1;
	}
	int rc = sh("cd %s && gcc " CFLAGS " -shared -fPIC -o libfx.so fx.c && cp libfx.so libfx_copy.so"
		    /* Linked at a base of its own: its ELF addresses differ from its file offsets. */
		    " && gcc " CFLAGS " -shared -fPIC -Wl,-Ttext-segment=0x7000000 -o libfx_base.so fx.c"
		    " && gcc " CFLAGS " -DFX_MAIN -fPIE -pie -o fx_pie fx.c"
		    " && gcc " CFLAGS " -DFX_MAIN -fno-pie -no-pie -o fx_nopie fx.c"
		    " && gcc " CFLAGS " -DFX_MAIN -fPIE -pie -rdynamic -o fx_dyn fx.c && cp fx_dyn fx_dyn.full"
		    " && strip fx_dyn"
		    " && gcc " CFLAGS " -DFX_MAIN -fPIE -pie -o fx_dbg fx.c && cp fx_dbg fx_dbg.full"
		    " && objcopy --only-keep-debug fx_dbg fx_dbg.debug && strip fx_dbg"
		    " && objcopy --add-gnu-debuglink=fx_dbg.debug fx_dbg"
		    " && gcc " CFLAGS " -DFX_MAIN -fPIE -pie -o fx_bid fx.c && cp fx_bid fx_bid.full"
		    " && objcopy --only-keep-debug fx_bid fx_bid.debug && strip fx_bid",
		    dir);
	if (rc) {
		snprintf(skip_reason, sizeof(skip_reason), "building the fixture ELFs with gcc failed (exit %d)", rc);
		return 1;
	}
	/* fx_bid's debug file goes where the build-id lookup expects it, under a test debug root. */
	struct sym_cache *c = sym_cache__new(NULL);
	snprintf(p, sizeof(p), "%s/fx_bid", dir);
	char hex[2 * 64 + 1];
	size_t n = sym_table__build_id(sym_cache__elf(c, p, NULL), hex, sizeof(hex));
	sym_cache__free(c);
	if (n < 2)
		return -1;
	return sh("mkdir -p %s/debug/.build-id/%.2s && mv %s/fx_bid.debug %s/debug/.build-id/%.2s/%s.debug", dir,
		  hex, dir, dir, hex, hex + 2) ? -1 : 0;
}

static void teardown(void)
{
	if (dir[0] && strstr(dir, "/tmp/loupe-symtest-") == dir)
		sh("rm -rf %s", dir);
}

/* ELF virtual address of a symbol, from nm (ground truth independent of the code under test). */
static uint64_t nm_addr(const char *file, const char *sym)
{
	char cmd[512], line[512];
	snprintf(cmd, sizeof(cmd), "nm %s/%s", dir, file);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	uint64_t addr = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a;
		char type, name[256];
		if (sscanf(line, "%llx %c %255s", &a, &type, name) == 3 && !strcmp(name, sym))
			addr = a;
	}
	pclose(f);
	assert_true(addr != 0);
	return addr;
}

struct child {
	pid_t pid;
	int in_fd;
	uint64_t addr[3];	/* fx_alpha, fx_beta, fx_local */
};

static void spawn(const char *name, struct child *ch)
{
	char path[128];
	int in[2], out[2];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	ch->pid = fork();
	assert_true(ch->pid >= 0);
	if (!ch->pid) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execl(path, path, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	ch->in_fd = in[1];
	FILE *f = fdopen(out[0], "r");
	assert_non_null(f);
	unsigned long long a, b, c;
	assert_int_equal(fscanf(f, "%llx %llx %llx", &a, &b, &c), 3);
	fclose(f);
	ch->addr[0] = a;
	ch->addr[1] = b;
	ch->addr[2] = c;
}

static void finish(struct child *ch)
{
	int status;
	close(ch->in_fd);
	assert_int_equal(waitpid(ch->pid, &status, 0), ch->pid);
	assert_true(WIFEXITED(status));
}

/* Each fixture function, 4 bytes into it, resolves to its name at offset 4 in module `module`. */
static void expect_fx(struct sym_cache *c, struct proc_maps *m, const uint64_t *addr, const char *module, int n)
{
	for (int i = 0; i < n; i++) {
		struct sym_frame f;
		assert_int_equal(sym_resolve_user(c, m, addr[i] + 4, &f), 1);
		assert_int_equal(f.kind, SYM_FRAME_ELF);
		assert_string_equal(f.name, fx_names[i]);
		assert_string_equal(f.module, module);
		assert_int_equal(f.offset, 4);
	}
}

/* PIE and non-PIE: runtime address -> ELF virtual address (checked against nm) -> the right name, while the
 * process lives and after it exited (and its binary was deleted). */
static void run_exe(const char *name, int pie)
{
	struct sym_cache *c = sym_cache__new(NULL);
	struct child ch;
	spawn(name, &ch);
	int err = -1;
	struct proc_maps *m = proc_maps__snapshot(c, ch.pid, &err);
	assert_non_null(m);
	assert_int_equal(err, 0);
	assert_int_equal(proc_maps__pid(m), ch.pid);
	for (int i = 0; i < 3; i++) {
		const struct sym_mapping *mp = proc_maps__find(m, ch.addr[i]);
		assert_non_null(mp);
		assert_int_equal(mp->kind, SYM_MAP_FILE);
		assert_string_equal(mp->name, name);
		uint64_t off, vaddr;
		assert_int_equal(sym_mapping__translate(mp, ch.addr[i], &off, &vaddr), 1);
		assert_int_equal(vaddr, nm_addr(name, fx_names[i]));
		if (!pie)
			assert_int_equal(vaddr, ch.addr[i]);
		else
			assert_true(vaddr != ch.addr[i]);
	}
	expect_fx(c, m, ch.addr, name, 3);
	finish(&ch);
	char p[128];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	unlink(p);
	/* Gone, and its file too: the snapshot still answers; a refresh says the process is gone. */
	expect_fx(c, m, ch.addr, name, 3);
	assert_int_equal(proc_maps__refresh(m), -ESRCH);
	expect_fx(c, m, ch.addr, name, 3);
	proc_maps__free(m);
	sym_cache__free(c);
}

static void test_pie(void **state)
{
	run_exe("fx_pie", 1);
}

static void test_no_pie(void **state)
{
	run_exe("fx_nopie", 0);
}

/* Stripped, linked with -rdynamic: exported functions resolve from .dynsym; the static one is not exported and
 * must not be charged to an exported neighbour: it is "fx_dyn+0xFILEOFFSET" (PIE text: offset == vaddr). */
static void test_dynsym_only(void **state)
{
	struct sym_cache *c = sym_cache__new(NULL);
	struct child ch;
	spawn("fx_dyn", &ch);
	struct proc_maps *m = proc_maps__snapshot(c, ch.pid, NULL);
	assert_non_null(m);
	finish(&ch);
	expect_fx(c, m, ch.addr, "fx_dyn", 2);
	struct sym_frame f;
	assert_int_equal(sym_resolve_user(c, m, ch.addr[2] + 4, &f), 0);
	assert_int_equal(f.kind, SYM_FRAME_UNRESOLVED);
	char want[64];
	snprintf(want, sizeof(want), "fx_dyn+0x%" PRIx64, nm_addr("fx_dyn.full", "fx_local") + 4);
	assert_string_equal(f.name, want);
	assert_string_equal(f.module, "fx_dyn");
	assert_false(sym_table__from_debug_file(proc_maps__find(m, ch.addr[0])->table));
	proc_maps__free(m);
	sym_cache__free(c);
}

/* Fully stripped (no exported functions at all): the names come from the separate debug file, found through
 * .gnu_debuglink next to the binary, or through the build-id under the debug root. */
static void run_debug(const char *name, const char *debug_root)
{
	char root[128];
	snprintf(root, sizeof(root), "%s/%s", dir, debug_root);
	struct sym_cache_opts o = {.debug_root = root};
	struct sym_cache *c = sym_cache__new(&o);
	struct child ch;
	spawn(name, &ch);
	struct proc_maps *m = proc_maps__snapshot(c, ch.pid, NULL);
	assert_non_null(m);
	finish(&ch);
	expect_fx(c, m, ch.addr, name, 3);
	assert_true(sym_table__from_debug_file(proc_maps__find(m, ch.addr[0])->table));
	struct sym_cache_stats st;
	sym_cache__stats(c, &st);
	assert_true(st.debug_files >= 1);
	proc_maps__free(m);
	sym_cache__free(c);

	/* Without its debug file the binary has no function symbols: the names above came from that file. */
	if (strcmp(name, "fx_bid"))
		return;
	o.debug_root = "/nonexistent";
	c = sym_cache__new(&o);
	snprintf(root, sizeof(root), "%s/%s", dir, name);
	const struct sym_table *t = sym_cache__elf(c, root, NULL);
	assert_non_null(t);
	assert_int_equal(sym_table__count(t), 0);
	assert_null(sym_table__find(t, nm_addr("fx_bid.full", "fx_alpha"), NULL));
	sym_cache__free(c);
}

static void test_debuglink(void **state)
{
	run_debug("fx_dbg", "nonexistent");
}

static void test_debug_build_id(void **state)
{
	run_debug("fx_bid", "debug");
}

/* dlopen() one of the fixture libraries from dir; the run-time addresses of fx_names[] into addr. */
static void *dlopen_fx(const char *lib, uint64_t addr[3])
{
	char p[128];
	snprintf(p, sizeof(p), "%s/%s", dir, lib);
	void *h = dlopen(p, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(h);
	void *(*local_addr)(void) = (void *(*)(void))dlsym(h, "fx_local_addr");
	assert_non_null(local_addr);
	addr[0] = (uintptr_t)dlsym(h, "fx_alpha");
	addr[1] = (uintptr_t)dlsym(h, "fx_beta");
	addr[2] = (uintptr_t)local_addr();
	return h;
}

/* A library dlopen()ed into this process: exported and static functions by name through /proc/self/maps. */
static void test_dlopen_self(void **state)
{
	char p[128];
	uint64_t addr[3];
	void *h = dlopen_fx("libfx.so", addr);
	struct sym_cache *c = sym_cache__new(NULL);
	struct proc_maps *m = proc_maps__snapshot(c, getpid(), NULL);
	assert_non_null(m);
	expect_fx(c, m, addr, "libfx.so", 3);
	for (int i = 0; i < 3; i++) {
		uint64_t off, vaddr;
		assert_int_equal(sym_mapping__translate(proc_maps__find(m, addr[i]), addr[i], &off, &vaddr), 1);
		assert_int_equal(vaddr, nm_addr("libfx.so", fx_names[i]));
	}
	/* A function of libc, through the same snapshot. */
	struct sym_frame f;
	assert_int_equal(sym_resolve_user(c, m, (uintptr_t)dlsym(RTLD_DEFAULT, "dlopen") + 1, &f), 1);
	assert_non_null(strstr(f.name, "dlopen"));
	assert_string_equal(f.module, "libc.so.6");

	/* A library loaded after the snapshot: the miss re-reads the maps (at most every SYM_REFRESH_MIN_NS). */
	snprintf(p, sizeof(p), "%s/libfx_copy.so", dir);
	void *h2 = dlopen(p, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(h2);
	uint64_t late = (uintptr_t)dlsym(h2, "fx_beta");
	assert_true(late != addr[1]);
	usleep(SYM_REFRESH_MIN_NS / 1000 + 10000);
	assert_int_equal(sym_resolve_user(c, m, late + 4, &f), 1);
	assert_string_equal(f.name, "fx_beta");
	assert_string_equal(f.module, "libfx_copy.so");
	/* Same build-id: the copy shares the first one's table. */
	assert_ptr_equal(proc_maps__find(m, late)->table, proc_maps__find(m, addr[1])->table);
	proc_maps__free(m);
	sym_cache__free(c);
	dlclose(h2);
	dlclose(h);
}

/* A library whose ELF addresses are not its file offsets (linked at base 0x7000000), wherever it is loaded. */
static void test_dlopen_based(void **state)
{
	uint64_t addr[3];
	void *h = dlopen_fx("libfx_base.so", addr);
	struct sym_cache *c = sym_cache__new(NULL);
	struct proc_maps *m = proc_maps__snapshot(c, getpid(), NULL);
	assert_non_null(m);
	for (int i = 0; i < 3; i++) {
		uint64_t off, vaddr, want = nm_addr("libfx_base.so", fx_names[i]);
		assert_int_equal(sym_mapping__translate(proc_maps__find(m, addr[i]), addr[i], &off, &vaddr), 1);
		assert_int_equal(vaddr, want);
		assert_true(off < 0x7000000 && off != want);
	}
	expect_fx(c, m, addr, "libfx_base.so", 3);
	proc_maps__free(m);
	sym_cache__free(c);
	dlclose(h);
}

/* One table per build-id: a copy of a library (another inode, same build-id) and libc mapped by two processes
 * share one table, and the copy is not read twice. */
static void test_build_id_sharing(void **state)
{
	struct sym_cache *c = sym_cache__new(NULL);
	char p[128];
	struct sym_cache_stats st0, st1;
	snprintf(p, sizeof(p), "%s/libfx.so", dir);
	const struct sym_table *a = sym_cache__elf(c, p, NULL);
	assert_non_null(a);
	char hex[129];
	assert_int_equal(sym_table__build_id(a, hex, sizeof(hex)), 20);
	assert_int_equal(strlen(hex), 40);
	sym_cache__stats(c, &st0);
	snprintf(p, sizeof(p), "%s/libfx_copy.so", dir);
	const struct sym_table *b = sym_cache__elf(c, p, NULL);
	sym_cache__stats(c, &st1);
	assert_ptr_equal(a, b);
	assert_int_equal(st1.tables, st0.tables);
	assert_int_equal(st1.elf_loads, st0.elf_loads);
	assert_int_equal(st1.symbols, st0.symbols);
	assert_true(sym_table__count(a) >= 4);

	struct child ch;
	spawn("fx_dyn", &ch);
	struct proc_maps *self = proc_maps__snapshot(c, getpid(), NULL);
	struct proc_maps *other = proc_maps__snapshot(c, ch.pid, NULL);
	finish(&ch);
	assert_non_null(self);
	assert_non_null(other);
	const struct sym_table *libc_self = NULL, *libc_other = NULL;
	for (size_t i = 0; i < proc_maps__count(self); i++)
		if (!strcmp(proc_maps__mapping(self, i)->name, "libc.so.6"))
			libc_self = proc_maps__mapping(self, i)->table;
	for (size_t i = 0; i < proc_maps__count(other); i++)
		if (!strcmp(proc_maps__mapping(other, i)->name, "libc.so.6"))
			libc_other = proc_maps__mapping(other, i)->table;
	assert_non_null(libc_self);
	assert_ptr_equal(libc_self, libc_other);
	/* Not an ELF. */
	int err = 0;
	snprintf(p, sizeof(p), "%s/fx.c", dir);
	assert_null(sym_cache__elf(c, p, &err));
	assert_int_equal(err, -ENOEXEC);
	proc_maps__free(self);
	proc_maps__free(other);
	sym_cache__free(c);
}

static void write_file(const char *path, const char *mode, const char *text)
{
	FILE *f = fopen(path, mode);
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static const char fake_maps[] =
	"00400000-00401000 r--p 00000000 08:01 100 /nonexistent/dir/app\n"
	"555555554000-555555556000 r-xp 00001000 08:01 12345 /nonexistent/dir/libfoo.so.1 (deleted)\n"
	"555555556000-555555558000 rw-p 00000000 00:00 0 [heap]\n"
	"7f0000000000-7f0000010000 r-xp 00000000 00:00 0 \n"
	"7f0000010000-7f0000020000 rwxp 00000000 00:00 0 [anon:jit code]\n"
	"7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0 [stack]\n"
	"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]\n";

#define FAKE_PID 999999

/* Perf maps (JIT): found on a miss in anonymous code, read again when they grow, newest line wins, a line
 * still being written is not taken. */
static void test_perf_map(void **state)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/perf-%d.map", dir, FAKE_PID);
	write_file(p, "w", "7f0000001000 100 jit_fn_one\n"
			   "0x7f0000001100 0x80 LazyCompile:*foo bar.js:12\n"
			   "garbage line\n"
			   "7f0000010010 20 Interpreter\n"
			   "7f0000100000 10 outside_fn\n");
	struct sym_cache_opts o = {.perf_map_dir = dir};
	struct sym_cache *c = sym_cache__new(&o);
	struct proc_maps *m = proc_maps__parse(c, FAKE_PID, fake_maps, NULL);
	assert_non_null(m);
	struct sym_frame f;
	assert_int_equal(sym_resolve_user(c, m, 0x7f0000001010, &f), 1);
	assert_int_equal(f.kind, SYM_FRAME_PERF_MAP);
	assert_string_equal(f.name, "jit_fn_one");
	assert_int_equal(f.offset, 0x10);
	assert_string_equal(f.module, "[anon]");
	assert_int_equal(sym_resolve_user(c, m, 0x7f000000117f, &f), 1);
	assert_string_equal(f.name, "LazyCompile:*foo bar.js:12");
	assert_int_equal(sym_resolve_user(c, m, 0x7f0000010015, &f), 1);	/* named anonymous mapping */
	assert_string_equal(f.name, "Interpreter");
	/* Code newer than the snapshot (no mapping holds it): a perf map already read still names it. */
	assert_int_equal(sym_resolve_user(c, m, 0x7f0000100001, &f), 1);
	assert_string_equal(f.name, "outside_fn");
	assert_string_equal(f.module, "[unknown]");
	assert_int_equal(sym_resolve_user(c, m, 0x7f0000001180, &f), 0);	/* just past the entry */
	assert_string_equal(f.name, "[anon]+0x1180");
	assert_int_equal(sym_resolve_user(c, m, 0x7f0000002000, &f), 0);
	assert_string_equal(f.name, "[anon]+0x2000");

	/* The JIT appends: a new function, recompiled code at an old start, half a line. */
	write_file(p, "a", "7f0000002000 40 jit_fn_two\n7f0000001000 100 jit_fn_one_v2\n7f0000003000 10 jit_par");
	assert_int_equal(sym_resolve_user(c, m, 0x7f0000002000, &f), 1);
	assert_string_equal(f.name, "jit_fn_two");
	assert_int_equal(sym_resolve_user(c, m, 0x7f0000001000, &f), 1);
	assert_string_equal(f.name, "jit_fn_one_v2");
	assert_int_equal(sym_resolve_user(c, m, 0x7f0000003001, &f), 0);
	write_file(p, "a", "tial\n");
	assert_int_equal(sym_resolve_user(c, m, 0x7f0000003001, &f), 1);
	assert_string_equal(f.name, "jit_partial");
	assert_int_equal(f.offset, 1);

	/* Forgotten: read again from scratch at the next miss. */
	struct sym_cache_stats st0, st1;
	sym_cache__stats(c, &st0);
	sym_cache__drop_pid(c, FAKE_PID);
	assert_int_equal(sym_resolve_user(c, m, 0x7f0000002001, &f), 1);
	assert_string_equal(f.name, "jit_fn_two");
	sym_cache__stats(c, &st1);
	assert_int_equal(st1.perf_map_reads, st0.perf_map_reads + 1);

	/* Replaced by a shorter file: read from the start again. */
	unlink(p);
	write_file(p, "w", "7f0000004000 10 fresh\n");
	assert_int_equal(sym_resolve_user(c, m, 0x7f0000004002, &f), 1);
	assert_string_equal(f.name, "fresh");
	assert_int_equal(sym_resolve_user(c, m, 0x7f0000002000, &f), 0);

	/* A process without a perf map: looked for at most once per second, then found once it exists. */
	struct proc_maps *m2 = proc_maps__parse(c, FAKE_PID - 1, fake_maps, NULL);
	assert_non_null(m2);
	assert_int_equal(sym_resolve_user(c, m2, 0x7f0000001010, &f), 0);
	assert_string_equal(f.name, "[anon]+0x1010");
	char p2[128];
	snprintf(p2, sizeof(p2), "%s/perf-%d.map", dir, FAKE_PID - 1);
	write_file(p2, "w", "7f0000001000 100 late_jit\n");
	assert_int_equal(sym_resolve_user(c, m2, 0x7f0000001010, &f), 0);
	usleep(1100000);
	assert_int_equal(sym_resolve_user(c, m2, 0x7f0000001010, &f), 1);
	assert_string_equal(f.name, "late_jit");
	proc_maps__free(m2);

	struct perf_map *pm = perf_map__load(p, NULL);
	assert_non_null(pm);
	assert_int_equal(perf_map__count(pm), 1);
	assert_int_equal(perf_map__update(pm), 0);
	perf_map__free(pm);
	int err = 0;
	assert_null(perf_map__load("/nonexistent/perf-1.map", &err));
	assert_int_equal(err, -ENOENT);
	proc_maps__free(m);
	sym_cache__free(c);
}

/* A mapped file is read only if it is the inode the process mapped: the same path may name another file. */
static void test_inode_check(void **state)
{
	char p[128], maps[512];
	struct stat sb;
	snprintf(p, sizeof(p), "%s/libfx.so", dir);
	assert_int_equal(stat(p, &sb), 0);
	struct sym_cache *c = sym_cache__new(NULL);
	const struct sym_table *t = sym_cache__elf(c, p, NULL);
	assert_non_null(t);
	for (int wrong = 0; wrong < 2; wrong++) {
		snprintf(maps, sizeof(maps), "10000-20000 r-xp 00001000 %02x:%02x %llu %s\n", major(sb.st_dev),
			 minor(sb.st_dev), (unsigned long long)sb.st_ino + wrong, p);
		struct proc_maps *m = proc_maps__parse(c, FAKE_PID, maps, NULL);
		assert_non_null(m);
		const struct sym_mapping *mp = proc_maps__mapping(m, 0);
		assert_non_null(mp);
		assert_string_equal(mp->name, "libfx.so");
		if (wrong) {
			struct sym_frame f;
			assert_null(mp->table);
			assert_int_equal(sym_resolve_user(c, m, 0x10010, &f), 0);
			assert_string_equal(f.name, "libfx.so+0x1010");
		} else {
			assert_ptr_equal(mp->table, t);
		}
		proc_maps__free(m);
	}
	sym_cache__free(c);
}

/* Unresolved frames are named by their mapping, never empty, and carry no directory. */
static void test_fallback_names(void **state)
{
	struct sym_cache_opts o = {.perf_map_dir = "/nonexistent"};
	struct sym_cache *c = sym_cache__new(&o);
	struct proc_maps *m = proc_maps__parse(c, FAKE_PID, fake_maps, NULL);
	assert_non_null(m);
	assert_int_equal(proc_maps__count(m), 4);	/* the executable ones */
	const struct sym_mapping *mp = proc_maps__find(m, 0x555555554100);
	assert_non_null(mp);
	assert_string_equal(mp->name, "libfoo.so.1");
	assert_string_equal(mp->path, "/nonexistent/dir/libfoo.so.1");
	assert_null(mp->table);
	assert_int_equal(mp->inode, 12345);
	assert_int_equal(mp->dev_major, 8);
	assert_int_equal(mp->dev_minor, 1);
	uint64_t off, vaddr;
	assert_int_equal(sym_mapping__translate(mp, 0x555555554234, &off, &vaddr), 0);
	assert_int_equal(off, 0x1234);
	assert_int_equal(sym_mapping__translate(mp, 0x555555556000, &off, &vaddr), -ERANGE);

	struct sym_frame f;
	assert_int_equal(sym_resolve_user(c, m, 0x555555554234, &f), 0);
	assert_string_equal(f.name, "libfoo.so.1+0x1234");
	assert_string_equal(f.module, "libfoo.so.1");
	assert_int_equal(f.offset, 0x1234);
	assert_int_equal(sym_resolve_user(c, m, 0xffffffffff600010, &f), 0);
	assert_string_equal(f.name, "[vsyscall]+0x10");
	assert_int_equal(sym_resolve_user(c, m, 0x7f0000000abc, &f), 0);
	assert_string_equal(f.name, "[anon]+0xabc");
	assert_int_equal(sym_resolve_user(c, m, 0x00400010, &f), 0);	/* not executable: not kept */
	assert_string_equal(f.name, "[unknown]");
	assert_string_equal(f.module, "[unknown]");
	assert_int_equal(sym_resolve_user(c, m, 0x1, &f), 0);
	assert_string_equal(f.name, "[unknown]");
	assert_int_equal(sym_resolve_user(c, NULL, 0x555555554234, &f), 0);
	assert_string_equal(f.name, "[unknown]");
	assert_int_equal(proc_maps__refresh(m), -ESRCH);	/* parsed, not live */
	proc_maps__free(m);

	/* A name too long for the frame is cut; the offset stays whole. */
	char maps[2048], longname[700], want[SYM_NAME_MAX];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	snprintf(maps, sizeof(maps), "1000-2000 r-xp 00000000 08:01 7 /x/%s\n", longname);
	m = proc_maps__parse(c, FAKE_PID, maps, NULL);
	assert_non_null(m);
	assert_int_equal(sym_resolve_user(c, m, 0x1abc, &f), 0);
	snprintf(want, sizeof(want), "%.*s+0xabc", SYM_NAME_MAX - 7, longname);
	assert_string_equal(f.name, want);
	assert_int_equal(strlen(f.name), SYM_NAME_MAX - 1);
	proc_maps__free(m);

	int err = 0;
	assert_null(proc_maps__snapshot(c, 0x7ffffff0, &err));
	assert_int_equal(err, -ESRCH);
	sym_cache__free(c);
	proc_maps__free(NULL);
	sym_cache__free(NULL);
}

/* The vDSO of this process resolves through loupe's own copy of it. */
static void test_vdso(void **state)
{
	struct sym_cache *c = sym_cache__new(NULL);
	struct proc_maps *m = proc_maps__snapshot(c, getpid(), NULL);
	assert_non_null(m);
	const struct sym_mapping *vdso = NULL;
	for (size_t i = 0; i < proc_maps__count(m); i++)
		if (proc_maps__mapping(m, i)->kind == SYM_MAP_VDSO)
			vdso = proc_maps__mapping(m, i);
	assert_non_null(vdso);
	assert_non_null(vdso->table);
	assert_true(sym_table__count(vdso->table) > 0);
	int found = 0;
	for (uint64_t a = vdso->start; a < vdso->end; a += 4) {
		struct sym_frame f;
		if (sym_resolve_user(c, m, a, &f) && strstr(f.name, "clock_gettime")) {
			assert_string_equal(f.module, "[vdso]");
			found = 1;
		}
	}
	assert_true(found);
	proc_maps__free(m);
	sym_cache__free(c);
}

static const char fake_kallsyms[] =
	"ffffffff81000000 T _stext\n"
	"ffffffff81000000 T _text\n"
	"ffffffff81001000 T do_one\n"
	"ffffffff81001100 t helper_two\n"
	"ffffffff81002000 D some_data\n"
	"ffffffff81003000 W weak_fn\n"
	"ffffffffc0001000 t mod_fn\t[fake_mod]\n"
	"ffffffffc0001200 T mod_fn2\t[fake_mod]\n"
	"ffffffffc0101000 t other_fn\t[other_mod]\n";

static void test_kallsyms(void **state)
{
	struct ksyms *ks = ksyms__parse(fake_kallsyms, strlen(fake_kallsyms));
	assert_non_null(ks);
	assert_false(ksyms__restricted(ks));
	const char *mod = NULL;
	uint64_t off = 0;
	assert_string_equal(ksyms__find(ks, 0xffffffff81001050, &mod, &off), "do_one");
	assert_string_equal(mod, "[kernel]");
	assert_int_equal(off, 0x50);
	assert_string_equal(ksyms__find(ks, 0xffffffff81001108, &mod, &off), "helper_two");
	assert_string_equal(ksyms__find(ks, 0xffffffff81000004, &mod, &off), "_text");	/* shorter alias */
	assert_null(ksyms__find(ks, 0xffffffff81002010, &mod, &off));	/* data */
	assert_string_equal(ksyms__find(ks, 0xffffffff81003001, &mod, &off), "weak_fn");
	assert_string_equal(ksyms__find(ks, 0xffffffffc0001210, &mod, &off), "mod_fn2");
	assert_string_equal(mod, "[fake_mod]");
	assert_int_equal(off, 0x10);
	assert_string_equal(ksyms__find(ks, 0xffffffffc0001010, &mod, &off), "mod_fn");
	assert_null(ksyms__find(ks, 0xffffffffc0001200 + 0x20000, &mod, &off));	/* past the module's end */
	assert_string_equal(ksyms__find(ks, 0xffffffffc0101001, &mod, &off), "other_fn");
	assert_string_equal(mod, "[other_mod]");
	assert_null(ksyms__find(ks, 0xffffffff80000000, &mod, &off));
	ksyms__free(ks);

	/* Through a cache, from a file. */
	char p[128];
	snprintf(p, sizeof(p), "%s/kallsyms", dir);
	write_file(p, "w", fake_kallsyms);
	struct sym_cache_opts o = {.kallsyms_path = p};
	struct sym_cache *c = sym_cache__new(&o);
	struct sym_frame f;
	assert_int_equal(sym_resolve_kernel(c, 0xffffffffc0001202, &f), 1);
	assert_int_equal(f.kind, SYM_FRAME_KERNEL);
	assert_string_equal(f.name, "mod_fn2");
	assert_string_equal(f.module, "[fake_mod]");
	assert_int_equal(sym_resolve_kernel(c, 0xffffffff81002010, &f), 0);
	assert_string_equal(f.name, "[kernel]");
	assert_string_equal(f.module, "[kernel]");
	sym_cache__free(c);

	/* Restricted: every address reads 0. */
	write_file(p, "w", "0000000000000000 T _stext\n0000000000000000 t mod_fn\t[fake_mod]\n");
	ks = ksyms__load(p, NULL);
	assert_non_null(ks);
	assert_true(ksyms__restricted(ks));
	assert_int_equal(ksyms__count(ks), 0);
	ksyms__free(ks);
	c = sym_cache__new(&o);
	assert_int_equal(sym_resolve_kernel(c, 0xffffffff81001050, &f), 0);
	assert_string_equal(f.name, "[kernel]");
	assert_int_equal(f.kind, SYM_FRAME_UNRESOLVED);
	sym_cache__free(c);

	/* Missing file: every kernel frame is "[kernel]". */
	o.kallsyms_path = "/nonexistent/kallsyms";
	c = sym_cache__new(&o);
	assert_int_equal(sym_resolve_kernel(c, 0xffffffff81001050, &f), 0);
	assert_string_equal(f.name, "[kernel]");
	assert_int_equal(sym_cache__reload_kernel(c), -ENOENT);
	sym_cache__free(c);
}

/* The real /proc/kallsyms: the address it gives for schedule() resolves back to it. */
static void test_real_kallsyms(void **state)
{
	struct ksyms *ks = ksyms__load("/proc/kallsyms", NULL);
	assert_non_null(ks);
	assert_false(ksyms__restricted(ks));
	FILE *f = fopen("/proc/kallsyms", "r");
	assert_non_null(f);
	char line[512];
	unsigned long long want = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a;
		char type, name[256];
		if (sscanf(line, "%llx %c %255s", &a, &type, name) == 3 && !strcmp(name, "schedule"))
			want = a;
	}
	fclose(f);
	assert_true(want != 0);
	const char *mod = NULL;
	assert_string_equal(ksyms__find(ks, want + 1, &mod, NULL), "schedule");
	assert_string_equal(mod, "[kernel]");
	ksyms__free(ks);
}

/* Whether the kernel shows this process real kallsyms addresses (root or CAP_SYSLOG, kptr_restrict < 2). */
static int kallsyms_visible(void)
{
	struct ksyms *ks = ksyms__load("/proc/kallsyms", NULL);
	int ok = ks && !ksyms__restricted(ks) && ksyms__count(ks) > 0;
	ksyms__free(ks);
	return ok;
}

int main(void)
{
	/* needs: 1 = the fixture ELFs, 2 = real kallsyms addresses, 4 = a vDSO. */
	static const struct {
		struct CMUnitTest t;
		int needs;
	} all[] = {
		{cmocka_unit_test(test_pie), 1},
		{cmocka_unit_test(test_no_pie), 1},
		{cmocka_unit_test(test_dynsym_only), 1},
		{cmocka_unit_test(test_debuglink), 1},
		{cmocka_unit_test(test_debug_build_id), 1},
		{cmocka_unit_test(test_dlopen_self), 1},
		{cmocka_unit_test(test_dlopen_based), 1},
		{cmocka_unit_test(test_build_id_sharing), 1},
		{cmocka_unit_test(test_inode_check), 1},
		{cmocka_unit_test(test_perf_map), 0},
		{cmocka_unit_test(test_fallback_names), 0},
		{cmocka_unit_test(test_vdso), 4},
		{cmocka_unit_test(test_kallsyms), 0},
		{cmocka_unit_test(test_real_kallsyms), 2},
	};
	struct CMUnitTest run[ARRAY_SIZE(all)];
	size_t n = 0;
	int rc = setup();
	if (rc < 0) {
		printf("not ok - setup: cannot prepare the fixture directory under /tmp\n");
		teardown();
		return 1;
	}
	int have = (rc == 0 ? 1 : 0) | (kallsyms_visible() ? 2 : 0) | (getauxval(AT_SYSINFO_EHDR) ? 4 : 0);
	/* cmocka 1.1's skip() prints "not ok ... # SKIP", which TAP readers count as a failure: a test that cannot
	 * run here is left out and reported as one TAP skip line, with the reason. */
	for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
		int missing = all[i].needs & ~have;
		if (!missing)
			run[n++] = all[i].t;
		else
			printf("ok - %s # SKIP %s\n", all[i].t.name,
			       missing & 1   ? skip_reason
			       : missing & 2 ? "/proc/kallsyms addresses are hidden: needs root or CAP_SYSLOG"
					     : "no vDSO in this process");
	}
	fflush(stdout);
	rc = _cmocka_run_group_tests("test_symbolize", run, n, NULL, NULL);
	teardown();
	return rc;
}
