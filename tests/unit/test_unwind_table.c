// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/profile/unwind_table.c against an independent decoder: binutils' readelf
 * --debug-dump=frames-interp prints every CFI row of a file (LOC, the CFA rule, where rbp and the return address
 * are); for each of those rows, the table's row at LOC must hold the same rule: rsp+N / rbp+N with rbp saved at
 * c-M or not, the PLT expression ("exp"), and an undefined return address as the end of the stack. Files: the
 * interpreter, PostgreSQL, libc and the test helper built without frame pointers (each skipped, saying why, when
 * absent). Rows readelf cannot print plainly are not compared, and counted: at address 0 (FDEs of code the linker
 * discarded), and in FDEs with register-to-register rules (glibc's clone3), whose columns readelf misaligns. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "profile/unwind_table.h"

struct counts {
	size_t rows, compared, skipped, mismatched;
};

/* Column index of name in readelf's header line cols[0..n), or -1. */
static int col(char **cols, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(cols[i], name))
			return i;
	return -1;
}

static int split(char *s, char **out, int max)
{
	int n = 0;
	for (char *tok = strtok(s, " \t\n"); tok && n < max; tok = strtok(NULL, " \t\n"))
		out[n++] = tok;
	return n;
}

/* Compare every row readelf prints for path with the table's. */
static void compare_file(const char *path, struct counts *c)
{
	struct unwind_table t;
	char err[200], cmd[600], line[1024], hdr[1024] = "";
	int rc = unwind_table__from_file(path, &t, err, sizeof(err));
	if (rc) {
		fail_msg("%s: %s", path, err);
		return;
	}
	/* The guard against registers libdw would size frames by (cfa_regs_bounded) leaves real files' FDEs alone. */
	assert_int_equal(t.refused, 0);
	snprintf(cmd, sizeof(cmd), "readelf --debug-dump=frames-interp '%s' 2>/dev/null", path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char *cols[64];
	int ncols = 0;
	char hcopy[1024];
	while (fgets(line, sizeof(line), p)) {
		char *s = line;
		while (*s == ' ')
			s++;
		if (!strncmp(s, "LOC", 3)) {
			snprintf(hdr, sizeof(hdr), "%s", s);
			snprintf(hcopy, sizeof(hcopy), "%s", hdr);
			ncols = split(hcopy, cols, 64);
			continue;
		}
		char *end;
		unsigned long long loc = strtoull(line, &end, 16);
		if (end - line != 16 || *end != ' ' || !ncols)
			continue;
		char *vals[64];
		char copy[1024];
		snprintf(copy, sizeof(copy), "%s", line);
		int nv = split(copy, vals, 64);
		c->rows++;
		int icfa = col(cols, ncols, "CFA"), irbp = col(cols, ncols, "rbp"), ira = col(cols, ncols, "ra");
		const char *cfa = icfa >= 0 && icfa < nv ? vals[icfa] : "?";
		const char *rbp = irbp >= 0 && irbp < nv ? vals[irbp] : "u";
		const char *ra = ira >= 0 && ira < nv ? vals[ira] : "u";
		bool regrule = false;
		for (int i = 1; i < nv; i++) /* a register held in another register: "r10", "(r10)" */
			regrule |= i != icfa && (vals[i][0] == 'r' || vals[i][0] == '(');
		if (!loc || regrule || nv != ncols) {
			c->skipped++;
			continue;
		}
		const struct unwind_row *r = unwind_table__find(&t, loc);
		bool ok = r != NULL;
		if (ok && !strcmp(ra, "u")) {
			ok = UW_ROW_CFA(r) == UW_CFA_END;
		} else if (ok && !strcmp(cfa, "exp")) {
			ok = UW_ROW_CFA(r) == UW_CFA_PLT || UW_ROW_CFA(r) == UW_CFA_UNSUP;
		} else if (ok) {
			long off = 0;
			int kind = !strncmp(cfa, "rsp+", 4) ? UW_CFA_RSP : !strncmp(cfa, "rbp+", 4) ? UW_CFA_RBP : UW_CFA_UNSUP;
			if (kind != UW_CFA_UNSUP)
				off = strtol(cfa + 4, NULL, 10);
			if (strcmp(ra, "c-8") || off % 8 || off / 8 > INT16_MAX)
				kind = UW_CFA_UNSUP;
			ok = UW_ROW_CFA(r) == kind;
			if (ok && kind != UW_CFA_UNSUP) {
				ok = r->cfa_off * 8 == off;
				if (rbp[0] == 'c')
					ok = ok && UW_ROW_RBP(r) == UW_RBP_CFA && r->rbp_off * 8 == strtol(rbp + 1, NULL, 10);
				else
					ok = ok && UW_ROW_RBP(r) == UW_RBP_SAME;
			}
		}
		c->compared++;
		if (!ok && c->mismatched++ < 5)
			print_message("  mismatch at %llx: readelf CFA %s rbp %s ra %s; table kind %d cfa_off %d rbp %d/%d\n",
				      loc, cfa, rbp, ra, r ? UW_ROW_CFA(r) : -1, r ? r->cfa_off * 8 : 0,
				      r ? UW_ROW_RBP(r) : -1, r ? r->rbp_off * 8 : 0);
	}
	pclose(p);
	unwind_table__free(&t);
}

static void check(const char *path)
{
	if (access(path, R_OK)) {
		print_message("# skip %s: not installed\n", path);
		return;
	}
	if (system("command -v readelf >/dev/null 2>&1")) {
		print_message("# skip %s: readelf missing (apt-get install binutils)\n", path);
		return;
	}
	struct counts c = {0};
	compare_file(path, &c);
	print_message("# %s: %zu readelf rows, %zu compared, %zu not comparable, %zu mismatched\n", path, c.rows,
		      c.compared, c.skipped, c.mismatched);
	assert_true(c.compared > 0);
	assert_int_equal(c.mismatched, 0);
}

static void test_python(void **state) { check("/usr/bin/python3.11"); }
static void test_postgres(void **state) { check("/usr/lib/postgresql/15/bin/postgres"); }
static void test_libc(void **state) { check("/lib/x86_64-linux-gnu/libc.so.6"); }
static void test_deepchain(void **state)
{
	check("build/tests/deepchain");
	check("build/tests/libdeepchain.so");
}

/* Between two FDEs the unwinder falls back to the frame pointer; after the last, too. */
static void test_gaps_and_end(void **state)
{
	struct unwind_table t;
	char err[200];
	assert_int_equal(unwind_table__from_file("/usr/bin/python3.11", &t, err, sizeof(err)), 0);
	size_t gaps = 0;
	for (size_t i = 1; i < t.n; i++) {
		assert_true(t.rows[i - 1].pc < t.rows[i].pc); /* sorted, merged */
		gaps += UW_ROW_CFA(&t.rows[i]) == UW_CFA_NONE;
	}
	assert_true(gaps > 0);
	assert_int_equal(UW_ROW_CFA(&t.rows[t.n - 1]), UW_CFA_NONE);
	assert_null(unwind_table__find(&t, t.rows[0].pc - 1));
	unwind_table__free(&t);
}

/* A file without CFI says so. */
static void test_no_cfi(void **state)
{
	char path[] = "/tmp/loupe-nocfi-XXXXXX", err[200];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "printf 'int f(void){return 1;}' | cc -x c -c -fno-asynchronous-unwind-tables "
		 "-fno-unwind-tables -o %s - 2>/dev/null", path);
	if (system(cmd)) {
		unlink(path);
		skip();
	}
	struct unwind_table t;
	assert_int_equal(unwind_table__from_file(path, &t, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no call frame information"));
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_python),	  cmocka_unit_test(test_postgres),     cmocka_unit_test(test_libc),
		cmocka_unit_test(test_deepchain), cmocka_unit_test(test_gaps_and_end), cmocka_unit_test(test_no_cfi),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
