// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/collectors/unwinder.c against BPF maps of the profiler's shapes (root: skipped, saying why,
 * without the right to create maps).
 *
 * The regression: unwinder__add() kept a pointer to the interpreter's entry in its table of files while it went on
 * adding the process's other files, and a new file could move the table (realloc when it grows past 64, 128, ...
 * files): the pointer was then read freed. Found by tests/e2e/test_asan.py (heap-use-after-free in unwinder__add,
 * when a CPython process was first seen as the table grew). Here a maps text of the interpreter followed by 70
 * other libraries makes the table grow inside that one call, every time. A plain build reads the stale memory
 * without noticing; `make asan` builds this test with AddressSanitizer too (build/asan/tests/test_unwinder), and
 * test_asan.py runs that build, which reports the read. */
#include <bpf/bpf.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <cmocka.h>

#include "collectors/unwinder.h"
#include "profile/procmaps.h"
#include "profile/pyruntime.h"
#include "profile/symcache.h"
#include "unwind.h"

#define LIBDIR "/usr/lib/x86_64-linux-gnu"
#define OTHERS 70
#define ROWS (1u << 20)

struct maps {
	int rows, procs, slot, layouts;
};

static int maps_create(struct maps *m)
{
	m->rows = bpf_map_create(BPF_MAP_TYPE_ARRAY, "t_rows", 4, sizeof(struct unwind_row), ROWS, NULL);
	m->procs = bpf_map_create(BPF_MAP_TYPE_ARRAY, "t_procs", 4, sizeof(struct unwind_proc), UNWIND_PROC_SLOTS, NULL);
	m->slot = bpf_map_create(BPF_MAP_TYPE_HASH, "t_slot", 4, 4, 1024, NULL);
	m->layouts = bpf_map_create(BPF_MAP_TYPE_ARRAY, "t_layouts", 4, sizeof(struct py_layout), PY_LAYOUTS_MAX, NULL);
	return m->rows < 0 || m->procs < 0 || m->slot < 0 || m->layouts < 0 ? -errno : 0;
}

static void maps_close(struct maps *m)
{
	int *fds[] = {&m->rows, &m->procs, &m->slot, &m->layouts};
	for (size_t i = 0; i < 4; i++)
		if (*fds[i] >= 0)
			close(*fds[i]);
}

/* One maps line for the file at path, mapped executable at *at: 0, or -1 when it is not a regular file. */
static int maps_line(char **text, size_t *len, uint64_t *at, const char *path)
{
	struct stat st;
	if (stat(path, &st) || !S_ISREG(st.st_mode))
		return -1;
	uint64_t size = ((uint64_t)st.st_size + 0xfff) & ~(uint64_t)0xfff;
	char line[PATH_MAX + 128];
	int n = snprintf(line, sizeof(line), "%llx-%llx r-xp 00000000 %02x:%02x %llu %s\n", (unsigned long long)*at,
			 (unsigned long long)(*at + size), major(st.st_dev), minor(st.st_dev),
			 (unsigned long long)st.st_ino, path);
	*text = realloc(*text, *len + (size_t)n + 1);
	assert_non_null(*text);
	memcpy(*text + *len, line, (size_t)n + 1);
	*len += (size_t)n;
	*at += size + 0x100000;
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char py[PATH_MAX];

static void test_interpreter_kept_across_growth(void **state)
{
	(void)state;
	struct maps bm = {-1, -1, -1, -1};
	int err = maps_create(&bm);
	assert_int_equal(err, 0);
	/* The interpreter first, then OTHERS small libraries (distinct files: each a new entry), by name. */
	DIR *d = opendir(LIBDIR);
	assert_non_null(d);
	char *names[4096];
	size_t nn = 0;
	for (struct dirent *e; (e = readdir(d)) && nn < 4096;) {
		char p[PATH_MAX];
		struct stat st;
		snprintf(p, sizeof(p), LIBDIR "/%s", e->d_name);
		if (strstr(e->d_name, ".so") && !lstat(p, &st) && S_ISREG(st.st_mode) && st.st_size < (1 << 20) &&
		    !strstr(e->d_name, "python"))
			names[nn++] = strdup(p);
	}
	closedir(d);
	qsort(names, nn, sizeof(*names), by_name);
	assert_true(nn >= OTHERS);
	char *text = NULL;
	size_t len = 0;
	uint64_t at = 0x400000;
	assert_int_equal(maps_line(&text, &len, &at, py), 0);
	for (size_t i = 0; i < OTHERS; i++)
		assert_int_equal(maps_line(&text, &len, &at, names[i]), 0);

	struct sym_cache *c = sym_cache__new(NULL);
	assert_non_null(c);
	struct proc_maps *m = proc_maps__parse(c, getpid(), text, &err);
	assert_non_null(m);
	assert_int_equal(proc_maps__count(m), 1 + OTHERS);
	struct unwinder *u = unwinder__new(bm.rows, ROWS, bm.procs, bm.slot, bm.layouts);
	assert_non_null(u);
	unwinder__budget(u, 600 * NSEC_PER_SEC);
	assert_int_equal(unwinder__add(u, m), 0);
	struct unwinder_stats st;
	unwinder__stats(u, &st);
	/* The table grew inside the call (past its first 64 entries), and the interpreter was still found. */
	assert_true(st.files + st.files_failed > 64);
	assert_non_null(unwinder__py_layout(u, getpid()));
	assert_int_equal(st.py_procs, 1);

	unwinder__free(u);
	proc_maps__free(m);
	sym_cache__free(c);
	free(text);
	for (size_t i = 0; i < nn; i++)
		free(names[i]);
	maps_close(&bm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_interpreter_kept_across_growth),
	};
	/* A test that cannot run here is left out and reported as one TAP skip line, with the reason (cmocka 1.1's
	 * skip() gives none). */
	struct maps bm = {-1, -1, -1, -1};
	int err = maps_create(&bm);
	maps_close(&bm);
	if (err) {
		printf("ok - test_interpreter_kept_across_growth # SKIP cannot create BPF maps (%s): needs root\n",
		       strerror(-err));
		return 0;
	}
	if (!realpath("/usr/bin/python3", py)) {
		printf("ok - test_interpreter_kept_across_growth # SKIP no /usr/bin/python3, the interpreter it needs\n");
		return 0;
	}
	fflush(stdout);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
