// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for unwind tables (src/profile/unwind_table.c): every CFI row of real files compared with an independent
 * decoder, binutils' readelf --debug-dump=frames-interp, on /usr/bin/python3.11, postgres 15, libc.so.6, pyenv's
 * libpython3.11.so.1.0 and $(BUILD)/tests/deepchain (PIE and not) with its libdeepchain.so: at each row's first and
 * last address, unwind_table__find() must give the CFA rule and the rbp rule readelf's row says (readelf "exp" in a
 * .plt* section -> UW_CFA_PLT, elsewhere UW_CFA_UNSUP; ra "u" -> UW_CFA_END; a signal frame's CIE -> UNSUP), every
 * FDE end outside every FDE gives a UW_CFA_NONE row, and no row of the table starts anywhere but at a readelf row or
 * an FDE end. Counts per file are printed as TAP comments, with the kinds of rows the unwinder does not support.
 * PLT rows are checked against the machine code too: at every instruction of every .plt entry (objdump), the CFA
 * offset the BPF formula gives (unwind.h) is rsp + 8 up to the entry's push and rsp + 16 after it. Fixtures built
 * with gcc at run time check .debug_frame (alone, compressed, and filling what .eh_frame leaves out, where
 * .eh_frame wins), a file without CFI (decided: 0 and an empty table, which the BPF side reads as "use frame
 * pointers"), addresses above 4 GiB (-ERANGE) and the errors. A file that is not installed is skipped with the
 * reason. Needs gcc and binutils (readelf, objdump, nm); no root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/wait.h>
#include <unistd.h>

#include "profile/unwind_table.h"
#include "lib/util.h"

#define PYTHON "/usr/bin/python3.11"
#define POSTGRES "/usr/lib/postgresql/15/bin/postgres"
#define LIBC "/lib/x86_64-linux-gnu/libc.so.6"
#define LIBPYTHON "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0"

static char dir[64];		/* fixtures built at run time */
static char helpers[PATH_MAX];	/* $(BUILD)/tests: this program's directory, where deepchain is */
static char skip_reason[256];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static FILE *run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static FILE *run(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	return f;
}

/* ---- readelf's view: FDEs and rows ---- */

struct re_row {
	uint64_t loc;
	char cfa[32], rbp[32], ra[32]; /* readelf's cells: "rsp+8", "c-16", "u", "exp", ... ("" when no column) */
};

struct re_fde {
	uint64_t start, end;
	bool debug;  /* from .debug_frame */
	bool signal; /* its CIE's augmentation has 'S' */
	size_t row, nrows;
};

struct re_cie {
	uint64_t off;
	bool debug, signal;
	struct re_row init;
};

struct re_dump {
	struct re_fde *fdes;
	size_t nfdes, cap_f;
	struct re_row *rows;
	size_t nrows, cap_r;
	struct re_cie *cies;
	size_t ncies, cap_c;
};

static void *grow(void *v, size_t n, size_t *cap, size_t sz)
{
	if (n < *cap)
		return v;
	*cap = *cap ? *cap * 2 : 1024;
	v = realloc(v, *cap * sz);
	assert_non_null(v);
	return v;
}

static void re_free(struct re_dump *d)
{
	free(d->fdes);
	free(d->rows);
	free(d->cies);
	memset(d, 0, sizeof(*d));
}

/* The next cell of a readelf row from *p into out: a word, or "r10 (r10)" for a register rule (a word followed by
 * a parenthesised name). false at the end of the line. */
static bool next_cell(const char **p, char *out, size_t n)
{
	const char *s = *p + strspn(*p, " "), *e = s + strcspn(s, " ");
	if (s == e)
		return false;
	const char *after = e + strspn(e, " ");
	if (*after == '(')
		e = after + strcspn(after, " ");
	snprintf(out, n, "%.*s", (int)(e - s), s);
	*p = e;
	return true;
}

static bool is_hex_row(const char *l)
{
	for (int i = 0; i < 16; i++)
		if (!((l[i] >= '0' && l[i] <= '9') || (l[i] >= 'a' && l[i] <= 'f')))
			return false;
	return l[16] == ' ';
}

/* readelf --debug-dump=frames-interp of path (its own sections only: no-follow-links). */
static void re_read(const char *path, struct re_dump *d)
{
	memset(d, 0, sizeof(*d));
	FILE *f = run("readelf --debug-dump=frames-interp,no-follow-links '%s' 2>/dev/null", path);
	char *line = NULL;
	size_t cap = 0;
	bool debug = false;
	char cols[32][8];
	int ncols = 0;
	struct re_cie *cie = NULL;  /* the CIE whose initial row comes next */
	struct re_fde *fde = NULL;  /* the FDE whose rows come next */
	while (getline(&line, &cap, f) > 0) {
		line[strcspn(line, "\n")] = '\0';
		if (!strncmp(line, "Contents of the ", 16)) {
			debug = strstr(line, ".debug_frame") != NULL;
			continue;
		}
		const char *c;
		if ((c = strstr(line, " CIE \""))) {
			d->cies = grow(d->cies, d->ncies, &d->cap_c, sizeof(*d->cies));
			cie = &d->cies[d->ncies++];
			memset(cie, 0, sizeof(*cie));
			cie->off = strtoull(line, NULL, 16);
			cie->debug = debug;
			const char *aug = c + 6, *q = strchr(aug, '"');
			cie->signal = q && memchr(aug, 'S', (size_t)(q - aug)) != NULL;
			fde = NULL;
			continue;
		}
		if ((c = strstr(line, " FDE cie="))) {
			d->fdes = grow(d->fdes, d->nfdes, &d->cap_f, sizeof(*d->fdes));
			fde = &d->fdes[d->nfdes++];
			memset(fde, 0, sizeof(*fde));
			unsigned long long cie_off, s, e;
			assert_int_equal(sscanf(c, " FDE cie=%llx pc=%llx..%llx", &cie_off, &s, &e), 3);
			fde->start = s, fde->end = e, fde->debug = debug, fde->row = d->nrows;
			fde->signal = false;
			for (size_t i = 0; i < d->ncies; i++)
				if (d->cies[i].off == cie_off && d->cies[i].debug == debug)
					fde->signal = d->cies[i].signal;
			cie = NULL;
			continue;
		}
		if (!strncmp(line, "   LOC ", 7)) {
			ncols = 0;
			char *save, *tok = strtok_r(line + 7, " ", &save);
			for (; tok && ncols < 32; tok = strtok_r(NULL, " ", &save))
				snprintf(cols[ncols++], sizeof(cols[0]), "%s", tok);
			continue;
		}
		if (!is_hex_row(line) || (!cie && !fde))
			continue;
		struct re_row r = {.loc = strtoull(line, NULL, 16)};
		const char *p = line + 17;
		char tok[32];
		for (int i = 0; i < ncols && next_cell(&p, tok, sizeof(tok)); i++) {
			if (!strcmp(cols[i], "CFA"))
				snprintf(r.cfa, sizeof(r.cfa), "%s", tok);
			else if (!strcmp(cols[i], "rbp"))
				snprintf(r.rbp, sizeof(r.rbp), "%s", tok);
			else if (!strcmp(cols[i], "ra"))
				snprintf(r.ra, sizeof(r.ra), "%s", tok);
		}
		if (cie) {
			cie->init = r;
			continue;
		}
		d->rows = grow(d->rows, d->nrows, &d->cap_r, sizeof(*d->rows));
		d->rows[d->nrows++] = r;
		fde->nrows++;
	}
	free(line);
	assert_int_equal(pclose(f), 0);
}

/* An FDE without instructions (or only DW_CFA_nop) has no rows in readelf's output: its one row is its CIE's
 * initial row. A second pass over the FDE headers, which name their CIE by offset. */
static void re_fill_empty(const char *path, struct re_dump *d)
{
	size_t empty = 0;
	for (size_t i = 0; i < d->nfdes; i++)
		empty += d->fdes[i].nrows == 0;
	if (!empty)
		return;
	FILE *f = run("readelf --debug-dump=frames-interp,no-follow-links '%s' 2>/dev/null", path);
	char *line = NULL;
	size_t cap = 0, i = 0;
	bool debug = false;
	struct re_row *extra = calloc(d->nfdes, sizeof(*extra));
	assert_non_null(extra);
	while (getline(&line, &cap, f) > 0) {
		if (!strncmp(line, "Contents of the ", 16))
			debug = strstr(line, ".debug_frame") != NULL;
		const char *c = strstr(line, " FDE cie=");
		if (!c)
			continue;
		assert_true(i < d->nfdes);
		unsigned long long cie_off = strtoull(c + 9, NULL, 16);
		if (d->fdes[i].nrows == 0)
			for (size_t k = 0; k < d->ncies; k++)
				if (d->cies[k].off == cie_off && d->cies[k].debug == debug) {
					extra[i] = d->cies[k].init;
					extra[i].loc = d->fdes[i].start;
				}
		i++;
	}
	free(line);
	pclose(f);
	for (i = 0; i < d->nfdes; i++) {
		if (d->fdes[i].nrows)
			continue;
		assert_true(extra[i].cfa[0] != '\0'); /* its CIE was found */
		d->rows = grow(d->rows, d->nrows, &d->cap_r, sizeof(*d->rows));
		d->fdes[i].row = d->nrows;
		d->fdes[i].nrows = 1;
		d->rows[d->nrows++] = extra[i];
	}
	free(extra);
}

/* ---- the expected row for readelf's cells ---- */

struct expect {
	int cfa, rbp;
	int cfa_off, rbp_off;
	char why[48]; /* UNSUP: which rule */
};

static bool cell_off(const char *cell, const char *prefix, long *off)
{
	size_t n = strlen(prefix);
	if (strncmp(cell, prefix, n) || (cell[n] != '+' && cell[n] != '-'))
		return false;
	char *end;
	*off = strtol(cell + n, &end, 10);
	return *end == '\0';
}

static struct expect expect_of(const struct re_row *r, bool signal, bool in_plt)
{
	struct expect e = {.cfa = UW_CFA_UNSUP, .rbp = UW_RBP_SAME};
	long off, rbp_n = 0;
	if (signal) {
		snprintf(e.why, sizeof(e.why), "signal frame");
		return e;
	}
	if (!strcmp(r->ra, "u")) {
		e.cfa = UW_CFA_END;
		return e;
	}
	if (strcmp(r->ra, "c-8")) {
		snprintf(e.why, sizeof(e.why), "ra %s", r->ra);
		return e;
	}
	if (cell_off(r->rbp, "c", &rbp_n)) {
		if (rbp_n % 8 || rbp_n / 8 < INT8_MIN || rbp_n / 8 > INT8_MAX) {
			snprintf(e.why, sizeof(e.why), "rbp c%+ld", rbp_n);
			return e;
		}
		e.rbp = UW_RBP_CFA;
		e.rbp_off = (int)(rbp_n / 8);
	} else if (r->rbp[0] && strcmp(r->rbp, "u") && strcmp(r->rbp, "s")) {
		snprintf(e.why, sizeof(e.why), "rbp %s", r->rbp);
		return e;
	}
	if (!strcmp(r->cfa, "exp")) {
		if (!in_plt || e.rbp != UW_RBP_SAME) {
			snprintf(e.why, sizeof(e.why), "CFA expression outside a PLT");
			e.rbp = UW_RBP_SAME;
			return e;
		}
		e.cfa = UW_CFA_PLT;
		e.cfa_off = 8; /* binutils' PLT expressions start DW_OP_breg7 (rsp): 8 */
		return e;
	}
	if (cell_off(r->cfa, "rsp", &off))
		e.cfa = UW_CFA_RSP;
	else if (cell_off(r->cfa, "rbp", &off))
		e.cfa = UW_CFA_RBP;
	if (e.cfa == UW_CFA_UNSUP || off < INT16_MIN || off > INT16_MAX) {
		char reg[16] = "";
		sscanf(r->cfa, "%15[a-z0-9]", reg);
		snprintf(e.why, sizeof(e.why), "CFA %s%s", reg, e.cfa == UW_CFA_UNSUP ? "+N" : " offset past s16");
		e.cfa = UW_CFA_UNSUP;
		e.rbp = UW_RBP_SAME;
		return e;
	}
	e.cfa_off = (int)off;
	return e;
}

static bool matches(const struct unwind_row *row, const struct expect *e)
{
	if (!row || UW_ROW_CFA(row) != e->cfa)
		return false;
	switch (e->cfa) {
	case UW_CFA_RSP:
	case UW_CFA_RBP:
		return row->cfa_off == e->cfa_off && UW_ROW_RBP(row) == e->rbp &&
		       (e->rbp != UW_RBP_CFA || row->rbp_off == e->rbp_off);
	case UW_CFA_PLT:
		return row->cfa_off == e->cfa_off && UW_ROW_RBP(row) == UW_RBP_SAME;
	default:
		return true;
	}
}

/* ---- address ranges ---- */

struct range {
	uint64_t start, end;
};

static int range_cmp(const void *a, const void *b)
{
	const struct range *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* The .plt* sections of path (readelf -SW); *plt0 (may be NULL) the address of .plt itself, 0 if none. */
static size_t plt_sections(const char *path, struct range *out, size_t cap, uint64_t *plt0)
{
	if (plt0)
		*plt0 = 0;
	FILE *f = run("readelf -SW '%s'", path);
	char line[512];
	size_t n = 0;
	while (fgets(line, sizeof(line), f)) {
		const char *b = strchr(line, ']');
		char name[64], type[32];
		unsigned long long addr, off, size;
		if (b && sscanf(b + 1, "%63s %31s %llx %llx %llx", name, type, &addr, &off, &size) == 5 &&
		    !strncmp(name, ".plt", 4) && n < cap) {
			out[n++] = (struct range){addr, addr + size};
			if (plt0 && !strcmp(name, ".plt"))
				*plt0 = addr;
		}
	}
	pclose(f);
	return n;
}

static bool in_ranges(const struct range *r, size_t n, uint64_t a)
{
	for (size_t i = 0; i < n; i++)
		if (a >= r[i].start && a < r[i].end)
			return true;
	return false;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The furthest end of the ranges r[0..n) (sorted by start) that start below a, by reach (reach[i]: the furthest end
 * of r[0..i]); 0 if none. */
static uint64_t reach_below(const struct range *r, const uint64_t *reach, size_t n, uint64_t a)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r[mid].start < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? reach[lo - 1] : 0;
}

/* ---- one file against readelf ---- */

struct tally {
	char why[48];
	size_t n;
};

struct stats {
	size_t rows, skipped, gaps, kinds[6];
	struct tally unsup[16];
	size_t nunsup;
};

static void tally(struct stats *s, const char *why)
{
	for (size_t i = 0; i < s->nunsup; i++)
		if (!strcmp(s->unsup[i].why, why)) {
			s->unsup[i].n++;
			return;
		}
	if (s->nunsup < ARRAY_SIZE(s->unsup)) {
		snprintf(s->unsup[s->nunsup].why, sizeof(s->unsup[0].why), "%s", why);
		s->unsup[s->nunsup++].n = 1;
	}
}

static const char *kind_name(int k)
{
	static const char *const names[] = {"NONE", "RSP", "RBP", "PLT", "END", "UNSUP"};
	return k >= 0 && k < 6 ? names[k] : "?";
}

/* Every readelf row of path at its first and last address; FDE ends in gaps; no table row unexplained. Prints
 * the counts. t is path's table. */
static void compare_file(const char *path, const struct unwind_table *t, struct stats *s)
{
	struct re_dump d;
	re_read(path, &d);
	re_fill_empty(path, &d);
	memset(s, 0, sizeof(*s));
	struct range plt[8];
	size_t nplt = plt_sections(path, plt, ARRAY_SIZE(plt), NULL);

	/* .eh_frame FDEs, sorted: .debug_frame rows under them are not used; nor are rows of an .eh_frame FDE
	 * under an earlier one (overlaps: none expected, counted as skipped). */
	struct range *eh = calloc(d.nfdes + 1, sizeof(*eh)), *all = calloc(d.nfdes + 1, sizeof(*all));
	assert_true(eh && all);
	size_t neh = 0, nall = 0;
	for (size_t i = 0; i < d.nfdes; i++) {
		if (d.fdes[i].end <= d.fdes[i].start)
			continue;
		if (!d.fdes[i].debug)
			eh[neh++] = (struct range){d.fdes[i].start, d.fdes[i].end};
		all[nall++] = (struct range){d.fdes[i].start, d.fdes[i].end};
	}
	qsort(eh, neh, sizeof(*eh), range_cmp);
	qsort(all, nall, sizeof(*all), range_cmp);
	uint64_t *eh_reach = calloc(neh + 1, sizeof(*eh_reach)); /* eh_reach[i]: the furthest end of eh[0..i] */
	assert_non_null(eh_reach);
	for (size_t i = 0; i < neh; i++)
		eh_reach[i] = i && eh_reach[i - 1] > eh[i].end ? eh_reach[i - 1] : eh[i].end;

	size_t bad = 0;
	for (size_t i = 0; i < d.nfdes; i++) {
		const struct re_fde *f = &d.fdes[i];
		for (size_t k = 0; k < f->nrows; k++) {
			const struct re_row *r = &d.rows[f->row + k];
			uint64_t last = (k + 1 < f->nrows ? d.rows[f->row + k + 1].loc : f->end) - 1;
			if (last < r->loc)
				continue; /* an empty row (two rows at one address): nothing to check */
			/* .eh_frame FDEs starting at or below loc (for .debug_frame rows), or below this FDE's start */
			uint64_t below = f->debug ? r->loc + 1 : f->start;
			if (reach_below(eh, eh_reach, neh, below) > r->loc) {
				s->skipped++;
				continue;
			}
			struct expect e = expect_of(r, f->signal, in_ranges(plt, nplt, r->loc));
			const struct unwind_row *a = unwind_table__find(t, r->loc), *b = unwind_table__find(t, last);
			if (!matches(a, &e) || !matches(b, &e)) {
				if (bad++ < 10)
					printf("# %s: row %#" PRIx64 "..%#" PRIx64 " readelf CFA %s rbp %s ra %s -> "
					       "want %s %d rbp %d/%d; got %s %d rbp %d/%d at start, %s at end\n",
					       path, r->loc, last, r->cfa, r->rbp[0] ? r->rbp : "-", r->ra,
					       kind_name(e.cfa), e.cfa_off, e.rbp, e.rbp_off,
					       a ? kind_name(UW_ROW_CFA(a)) : "NULL", a ? a->cfa_off : 0,
					       a ? UW_ROW_RBP(a) : 0, a ? a->rbp_off : 0,
					       b ? kind_name(UW_ROW_CFA(b)) : "NULL");
				continue;
			}
			s->rows++;
			s->kinds[e.cfa]++;
			if (e.cfa == UW_CFA_UNSUP)
				tally(s, e.why);
		}
	}

	/* Gaps: the end of every run of FDEs gets a NONE row; below the first FDE there is no row. */
	uint64_t run_end = 0;
	for (size_t i = 0; i < nall; i++) {
		if (i == 0 && all[0].start > 0 && unwind_table__find(t, all[0].start - 1) != NULL) {
			printf("# %s: a row below the first FDE (%#" PRIx64 ")\n", path, all[0].start);
			bad++;
		}
		if (all[i].end > run_end)
			run_end = all[i].end;
		if (i + 1 < nall && all[i + 1].start <= run_end)
			continue;
		const struct unwind_row *g = unwind_table__find(t, run_end);
		if (!g || UW_ROW_CFA(g) != UW_CFA_NONE || g->pc != run_end) {
			if (bad++ < 10)
				printf("# %s: no NONE row at the FDE end %#" PRIx64 "\n", path, run_end);
			continue;
		}
		s->gaps++;
	}

	/* Every table row starts at a readelf row or at an FDE end (merging only removes rows). */
	size_t nstarts = d.nrows + nall;
	uint64_t *starts = calloc(nstarts + 1, sizeof(*starts));
	assert_non_null(starts);
	for (size_t i = 0; i < d.nrows; i++)
		starts[i] = d.rows[i].loc;
	for (size_t i = 0; i < nall; i++)
		starts[d.nrows + i] = all[i].end;
	qsort(starts, nstarts, sizeof(*starts), u64_cmp);
	for (size_t i = 0; i < t->n; i++) {
		uint64_t pc = t->rows[i].pc;
		if (i && t->rows[i - 1].pc >= pc) {
			printf("# %s: rows not strictly increasing at %#" PRIx64 "\n", path, pc);
			bad++;
		}
		if (!bsearch(&pc, starts, nstarts, sizeof(*starts), u64_cmp) && bad++ < 10)
			printf("# %s: table row at %#" PRIx64 " starts at no readelf row\n", path, pc);
	}

	printf("# %s: %zu readelf rows compared (RSP %zu, RBP %zu, PLT %zu, END %zu, UNSUP %zu), %zu under "
	       ".eh_frame skipped, %zu FDE ends checked as NONE rows; table: %zu FDEs, %zu rows (%zu bytes), %zu "
	       "UNSUP%s\n",
	       path, s->rows, s->kinds[UW_CFA_RSP], s->kinds[UW_CFA_RBP], s->kinds[UW_CFA_PLT], s->kinds[UW_CFA_END],
	       s->kinds[UW_CFA_UNSUP], s->skipped, s->gaps, t->fdes, t->n, t->n * sizeof(*t->rows), t->unsupported,
	       t->from_debug_frame ? ", some from .debug_frame" : "");
	for (size_t i = 0; i < s->nunsup; i++)
		printf("#   unsupported: %s: %zu row%s\n", s->unsup[i].why, s->unsup[i].n,
		       s->unsup[i].n == 1 ? "" : "s");
	fflush(stdout);
	free(starts);
	free(eh_reach);
	free(eh);
	free(all);
	re_free(&d);
	assert_int_equal(bad, 0);
	assert_true(s->rows > 0);
}

static void check_file(const char *path, struct stats *s)
{
	struct unwind_table t;
	char err[256];
	int rc = unwind_table__from_file(path, &t, err, sizeof(err));
	if (rc)
		printf("# %s: %s\n", path, err);
	assert_int_equal(rc, 0);
	compare_file(path, &t, s);
	unwind_table__free(&t);
}

/* ---- PLT entries against their machine code ---- */

/* At every instruction of every .plt entry but PLT0, the BPF formula's CFA offset is 8 before the entry's push
 * has run and 16 after; the threshold also equals readelf's DW_OP_litN. Returns the entries checked. */
static size_t check_plt(const char *path)
{
	struct unwind_table t;
	char err[256];
	assert_int_equal(unwind_table__from_file(path, &t, err, sizeof(err)), 0);
	struct range plt[8];
	uint64_t plt0;
	plt_sections(path, plt, ARRAY_SIZE(plt), &plt0);
	assert_true(plt0 != 0);

	/* readelf's threshold: DW_OP_litN before DW_OP_ge in the PLT's CFA expression. */
	FILE *f = run("readelf --debug-dump=frames,no-follow-links '%s'"
		      " | grep -o 'DW_OP_lit[0-9]*; DW_OP_ge' | sort -u", path);
	int lit = -1, nlit = 0;
	while (fscanf(f, " DW_OP_lit%d; DW_OP_ge", &lit) == 1)
		nlit++;
	pclose(f);
	assert_int_equal(nlit, 1);

	f = run("objdump -d -j .plt --no-show-raw-insn '%s'", path);
	char line[512];
	uint64_t insn[4096];
	char push[4096];
	size_t n = 0;
	while (fgets(line, sizeof(line), f) && n < ARRAY_SIZE(insn)) {
		unsigned long long a;
		char mnem[32];
		if (sscanf(line, " %llx:\t%31s", &a, mnem) != 2)
			continue;
		insn[n] = a;
		push[n++] = !strcmp(mnem, "push");
	}
	pclose(f);
	size_t entries = 0, bad = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		if (!push[i] || (insn[i] & ~15ull) == plt0)
			continue;
		uint64_t entry = insn[i] & ~15ull, after = insn[i + 1];
		for (size_t k = 0; k < n; k++) {
			if ((insn[k] & ~15ull) != entry)
				continue;
			const struct unwind_row *r = unwind_table__find(&t, insn[k]);
			int want = insn[k] < after ? 8 : 16;
			int got = r && UW_ROW_CFA(r) == UW_CFA_PLT
					  ? r->cfa_off + ((int)(insn[k] & 15) >= r->rbp_off ? 8 : 0)
					  : -1;
			if (got != want || r->rbp_off != lit) { /* got -1: r is not a PLT row (or NULL) */
				if (bad++ < 5)
					printf("# %s: PLT instruction %#" PRIx64 ": CFA rsp+%d, want rsp+%d\n", path,
					       insn[k], got, want);
			}
		}
		entries++;
	}
	printf("# %s: %zu .plt entries checked at every instruction (threshold %d)\n", path, entries, lit);
	unwind_table__free(&t);
	assert_int_equal(bad, 0);
	return entries;
}

/* ---- fixtures ---- */

static const char fx_src[] =
	"__attribute__((noinline)) int fx_alpha(int x) { volatile int v[8]; v[0] = x; return v[0] * 3 + 1; }\n"
	"__attribute__((noinline)) int fx_beta(int x) { volatile int v[4]; v[1] = fx_alpha(x); return v[1] - 2; }\n";

/* .eh_frame gives mx_both rsp + 8 then rsp + 16 after its push; .debug_frame gives it rsp + 40 (which must lose)
 * and mx_dbg, which only it covers, rsp + 8, rsp + 32 after the sub, rsp + 8 after the add; mx_none has no CFI at
 * all (a gap); mx_last has .eh_frame again. */
static const char mx_src[] =
	"	.text\n"
	"	.globl mx_both, mx_dbg, mx_none, mx_last\n"
	"	.p2align 4\n"
	"mx_both:\n"
	"	.cfi_startproc\n"
	"	push %rbx\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	.cfi_offset %rbx, -16\n"
	"	mov %rdi, %rbx\n"
	"	pop %rbx\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	ret\n"
	"	.cfi_endproc\n"
	".Lmx_both_end:\n"
	"	.p2align 4\n"
	"mx_dbg:\n"
	"	sub $24, %rsp\n"
	"	add $24, %rsp\n"
	"	ret\n"
	".Lmx_dbg_end:\n"
	"	.p2align 4\n"
	"mx_none:\n"
	"	ret\n"
	"	.p2align 4\n"
	"mx_last:\n"
	"	.cfi_startproc\n"
	"	ret\n"
	"	.cfi_endproc\n"
	"	.section .debug_frame,\"\",@progbits\n"
	".Lcie:\n"
	"	.long .Lcie_end - .Lcie_start\n"
	".Lcie_start:\n"
	"	.long 0xffffffff\n"    /* CIE id */
	"	.byte 1\n"	       /* version */
	"	.asciz \"\"\n"	       /* augmentation */
	"	.uleb128 1\n"	       /* code alignment */
	"	.sleb128 -8\n"	       /* data alignment */
	"	.byte 16\n"	       /* return address column */
	"	.byte 0x0c, 7, 8\n"    /* DW_CFA_def_cfa: rsp + 8 */
	"	.byte 0x90, 1\n"       /* DW_CFA_offset: r16 at CFA - 8 */
	"	.p2align 3, 0\n"
	".Lcie_end:\n"
	"	.long .Lfde1_end - .Lfde1_start\n"
	".Lfde1_start:\n"
	"	.long .Lcie\n"
	"	.quad mx_both\n"
	"	.quad .Lmx_both_end - mx_both\n"
	"	.byte 0x0e, 40\n"      /* DW_CFA_def_cfa_offset 40 */
	"	.p2align 3, 0\n"
	".Lfde1_end:\n"
	"	.long .Lfde2_end - .Lfde2_start\n"
	".Lfde2_start:\n"
	"	.long .Lcie\n"
	"	.quad mx_dbg\n"
	"	.quad .Lmx_dbg_end - mx_dbg\n"
	"	.byte 0x44, 0x0e, 32\n" /* advance 4 (sub $24,%rsp is 4 bytes); DW_CFA_def_cfa_offset 32 */
	"	.byte 0x44, 0x0e, 8\n"	/* advance 4 (add); DW_CFA_def_cfa_offset 8 */
	"	.p2align 3, 0\n"
	".Lfde2_end:\n";

#define FX_FLAGS "-O2 -shared -fPIC -nostdlib"
#define NO_EH "-fno-asynchronous-unwind-tables -fno-unwind-tables"

/* Build the fixtures into a fresh temporary directory. 0 when built; 1 with skip_reason set when this host cannot
 * build them; -1 on an error. */
static int setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/loupe-unwindtest-XXXXXX");
	if (!mkdtemp(dir)) {
		dir[0] = '\0';
		return -1;
	}
	if (sh("(command -v gcc && command -v readelf && command -v objdump && command -v nm) >/dev/null") != 0) {
		snprintf(skip_reason, sizeof(skip_reason), "needs gcc and binutils (apt-get install gcc binutils)");
		return 1;
	}
	char p[128];
	snprintf(p, sizeof(p), "%s/fx.c", dir);
	FILE *f = fopen(p, "w");
	if (!f)
		return -1;
	fputs(fx_src, f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/mx.s", dir);
	if (!(f = fopen(p, "w")))
		return -1;
	fputs(mx_src, f);
	fclose(f);
	int rc = sh("cd %s && gcc " FX_FLAGS " " NO_EH " -o nocfi.so fx.c"
		    " && gcc " FX_FLAGS " " NO_EH " -g -o dbg.so fx.c"
		    " && gcc " FX_FLAGS " " NO_EH " -g -gz=zlib -o dbgz.so fx.c"
		    " && gcc " FX_FLAGS " -fasynchronous-unwind-tables -o eh.so fx.c"
		    " && gcc " FX_FLAGS " -fasynchronous-unwind-tables -Wl,-Ttext-segment=0x100000000 -o high.so fx.c"
		    " && gcc " FX_FLAGS " -o mixed.so mx.s"
		    " && echo 'not an ELF file' > notelf.so",
		    dir);
	if (rc) {
		snprintf(skip_reason, sizeof(skip_reason), "building the fixtures with gcc failed (exit %d)", rc);
		return 1;
	}
	return 0;
}

static void teardown(void)
{
	if (dir[0])
		sh("rm -rf %s", dir);
}

static uint64_t nm_addr(const char *file, const char *sym)
{
	FILE *f = run("nm '%s/%s'", dir, file);
	char line[512];
	uint64_t a = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;
		char type, name[256];
		if (sscanf(line, "%llx %c %255s", &v, &type, name) == 3 && !strcmp(name, sym))
			a = v;
	}
	pclose(f);
	assert_true(a != 0);
	return a;
}

static void fixture(const char *name, struct unwind_table *t)
{
	char p[128], err[256];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	int rc = unwind_table__from_file(p, t, err, sizeof(err));
	if (rc)
		printf("# %s: %s\n", p, err);
	assert_int_equal(rc, 0);
}

/* ---- tests ---- */

static void test_python(void **state)
{
	struct stats s;
	check_file(PYTHON, &s);
}

static void test_postgres(void **state)
{
	struct stats s;
	check_file(POSTGRES, &s);
	assert_true(s.kinds[UW_CFA_RBP] > 0); /* postgres keeps frame pointers in many functions: CFA on rbp */
}

static void test_libc(void **state)
{
	struct stats s;
	check_file(LIBC, &s);
	assert_true(s.kinds[UW_CFA_END] > 0); /* clone3's child, start_thread's caller */
}

static void test_libpython(void **state)
{
	struct stats s;
	check_file(LIBPYTHON, &s);
}

static void helper(char *p, size_t n, const char *name)
{
	snprintf(p, n, "%s/%s", helpers, name);
}

/* deepchain (PIE and not) and libdeepchain.so: all rows, and the rules the chain's functions must have. */
static void test_deepchain(void **state)
{
	static const char *const files[] = {"deepchain", "deepchain-nopie", "libdeepchain.so"};
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		char p[PATH_MAX + 32];
		helper(p, sizeof(p), files[i]);
		struct stats s;
		check_file(p, &s);
		assert_int_equal(s.kinds[UW_CFA_UNSUP], 0);
		assert_int_equal(s.kinds[UW_CFA_RBP], 0); /* built without frame pointers */
		assert_true(s.kinds[UW_CFA_END] == (i < 2)); /* _start, in the executables */
	}
	/* dc_main_c saves rbp (it puts a non-address in it): a UW_RBP_CFA row at CFA - 16. */
	char p[PATH_MAX + 32];
	helper(p, sizeof(p), "deepchain");
	FILE *f = run("nm '%s' | awk '$3 == \"dc_main_c\" {print $1}'", p);
	unsigned long long a = 0;
	assert_int_equal(fscanf(f, "%llx", &a), 1);
	pclose(f);
	struct unwind_table t;
	char err[256];
	assert_int_equal(unwind_table__from_file(p, &t, err, sizeof(err)), 0);
	bool saved = false;
	for (uint64_t pc = a; pc < a + 64; pc++) {
		const struct unwind_row *r = unwind_table__find(&t, pc);
		if (r && UW_ROW_RBP(r) == UW_RBP_CFA && r->rbp_off == -2 && UW_ROW_CFA(r) == UW_CFA_RSP)
			saved = true;
	}
	assert_true(saved);
	unwind_table__free(&t);
}

/* The PLT thresholds against each .plt entry's instructions. */
static void test_plt_threshold(void **state)
{
	char p[PATH_MAX + 32];
	helper(p, sizeof(p), "deepchain");
	assert_true(check_plt(p) >= 3); /* dc_lib_b, dc_lib_d, and libc's */
	helper(p, sizeof(p), "deepchain-nopie");
	assert_true(check_plt(p) >= 3);
	helper(p, sizeof(p), "libdeepchain.so");
	assert_true(check_plt(p) >= 2);
	static const char *const sys[] = {PYTHON, POSTGRES, LIBC};
	for (size_t i = 0; i < ARRAY_SIZE(sys); i++)
		if (access(sys[i], R_OK) == 0)
			assert_true(check_plt(sys[i]) > 0);
		else
			printf("# %s not installed: its PLT not checked\n", sys[i]);
}

/* Gap rows in a file built here: between fx_alpha and fx_beta (padding), and after the last FDE. */
static void test_gaps(void **state)
{
	char p[128];
	struct stats s;
	snprintf(p, sizeof(p), "%s/eh.so", dir);
	check_file(p, &s);
	assert_true(s.gaps >= 1);
	struct unwind_table t;
	fixture("mixed.so", &t);
	uint64_t none = nm_addr("mixed.so", "mx_none"), last = nm_addr("mixed.so", "mx_last");
	const struct unwind_row *r = unwind_table__find(&t, none);
	assert_non_null(r);
	assert_int_equal(UW_ROW_CFA(r), UW_CFA_NONE);
	assert_int_equal(UW_ROW_CFA(unwind_table__find(&t, last)), UW_CFA_RSP);
	assert_int_equal(UW_ROW_CFA(&t.rows[t.n - 1]), UW_CFA_NONE); /* after the last FDE */
	assert_null(unwind_table__find(&t, t.rows[0].pc - 1));	      /* below the first */
	unwind_table__free(&t);
}

/* .debug_frame alone (from gcc -g without unwind tables), and compressed: the same rows. */
static void test_debug_frame(void **state)
{
	char p[128];
	struct stats s;
	snprintf(p, sizeof(p), "%s/dbg.so", dir);
	check_file(p, &s);
	struct unwind_table t, z;
	fixture("dbg.so", &t);
	fixture("dbgz.so", &z);
	assert_true(t.from_debug_frame && z.from_debug_frame);
	assert_int_equal(sh("readelf -SW %s/dbgz.so | grep '\\.debug_frame' | grep -q ' C '", dir), 0);
	assert_int_equal(t.n, z.n);
	assert_memory_equal(t.rows, z.rows, t.n * sizeof(*t.rows));
	assert_true(t.n >= 4);
	unwind_table__free(&t);
	unwind_table__free(&z);
}

/* .debug_frame fills only what .eh_frame leaves out. */
static void test_debug_frame_fills(void **state)
{
	char p[128];
	struct stats s;
	snprintf(p, sizeof(p), "%s/mixed.so", dir);
	check_file(p, &s);
	struct unwind_table t;
	fixture("mixed.so", &t);
	uint64_t both = nm_addr("mixed.so", "mx_both"), dbg = nm_addr("mixed.so", "mx_dbg");
	const struct unwind_row *r = unwind_table__find(&t, both + 1);
	assert_int_equal(UW_ROW_CFA(r), UW_CFA_RSP);
	assert_int_equal(r->cfa_off, 16); /* .eh_frame's, not .debug_frame's 40 */
	const int want[] = {8, 8, 8, 8, 32, 32, 32, 32, 8};
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		r = unwind_table__find(&t, dbg + i);
		assert_int_equal(UW_ROW_CFA(r), UW_CFA_RSP);
		assert_int_equal(r->cfa_off, want[i]);
	}
	assert_true(t.from_debug_frame);
	unwind_table__free(&t);
}

/* No CFI at all: not an error, an empty table (the BPF side then uses frame pointers). */
static void test_no_cfi(void **state)
{
	/* ld leaves an empty .eh_frame: no CIE, no FDE */
	assert_int_equal(sh("readelf --debug-dump=frames %s/nocfi.so | grep -q 'CIE\\|FDE'", dir), 1);
	struct unwind_table t;
	fixture("nocfi.so", &t);
	assert_int_equal(t.n, 0);
	assert_null(t.rows);
	assert_int_equal(t.fdes, 0);
	assert_null(unwind_table__find(&t, nm_addr("nocfi.so", "fx_alpha")));
	unwind_table__free(&t);
}

static void test_errors(void **state)
{
	struct unwind_table t;
	char p[128], err[256];
	snprintf(p, sizeof(p), "%s/high.so", dir);
	assert_int_equal(unwind_table__from_file(p, &t, err, sizeof(err)), -ERANGE);
	assert_non_null(strstr(err, "high.so"));
	assert_null(strstr(err, dir)); /* a basename, never the path */
	assert_int_equal(t.n, 0);
	assert_null(t.rows);
	snprintf(p, sizeof(p), "%s/notelf.so", dir);
	assert_int_equal(unwind_table__from_file(p, &t, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "not an ELF file"));
	snprintf(p, sizeof(p), "%s/missing.so", dir);
	assert_int_equal(unwind_table__from_file(p, &t, err, sizeof(err)), -ENOENT);
	assert_int_equal(unwind_table__from_file(p, &t, NULL, 0), -ENOENT);
	assert_int_equal(unwind_table__from_elf(NULL, &t, err, sizeof(err)), -ENOEXEC);
}

/* The search: the last row with pc <= vaddr. */
static void test_find(void **state)
{
	struct unwind_row rows[] = {{.pc = 0x10, .kind = UW_CFA_RSP}, {.pc = 0x20, .kind = UW_CFA_RBP},
				    {.pc = 0x30, .kind = UW_CFA_NONE}};
	struct unwind_table t = {.rows = rows, .n = ARRAY_SIZE(rows)};
	assert_null(unwind_table__find(&t, 0));
	assert_null(unwind_table__find(&t, 0xf));
	assert_ptr_equal(unwind_table__find(&t, 0x10), &rows[0]);
	assert_ptr_equal(unwind_table__find(&t, 0x1f), &rows[0]);
	assert_ptr_equal(unwind_table__find(&t, 0x20), &rows[1]);
	assert_ptr_equal(unwind_table__find(&t, 0x30), &rows[2]);
	assert_ptr_equal(unwind_table__find(&t, 1ull << 40), &rows[2]);
	t.n = 1;
	assert_ptr_equal(unwind_table__find(&t, 0x10), &rows[0]);
	t.n = 0;
	assert_null(unwind_table__find(&t, 0x10));
	assert_null(unwind_table__find(NULL, 0x10));
}

enum {
	NEED_FX = 1,		/* fixtures (gcc, binutils) */
	NEED_PYTHON = 2,
	NEED_POSTGRES = 4,
	NEED_LIBC = 8,
	NEED_LIBPYTHON = 16,
	NEED_DEEPCHAIN = 32,	/* $(BUILD)/tests/deepchain* built */
};

int main(void)
{
	struct {
		struct CMUnitTest t;
		int needs;
	} all[] = {
		{cmocka_unit_test(test_find), 0},
		{cmocka_unit_test(test_python), NEED_FX | NEED_PYTHON},
		{cmocka_unit_test(test_postgres), NEED_FX | NEED_POSTGRES},
		{cmocka_unit_test(test_libc), NEED_FX | NEED_LIBC},
		{cmocka_unit_test(test_libpython), NEED_FX | NEED_LIBPYTHON},
		{cmocka_unit_test(test_deepchain), NEED_FX | NEED_DEEPCHAIN},
		{cmocka_unit_test(test_plt_threshold), NEED_FX | NEED_DEEPCHAIN},
		{cmocka_unit_test(test_gaps), NEED_FX},
		{cmocka_unit_test(test_debug_frame), NEED_FX},
		{cmocka_unit_test(test_debug_frame_fills), NEED_FX},
		{cmocka_unit_test(test_no_cfi), NEED_FX},
		{cmocka_unit_test(test_errors), NEED_FX},
	};
	struct CMUnitTest run[ARRAY_SIZE(all)];
	size_t n = 0;
	ssize_t len = readlink("/proc/self/exe", helpers, sizeof(helpers) - 1);
	if (len > 0) {
		helpers[len] = '\0';
		char *slash = strrchr(helpers, '/');
		if (slash)
			*slash = '\0';
	}
	int rc = setup();
	if (rc < 0) {
		printf("not ok - setup: cannot prepare the fixture directory under /tmp\n");
		teardown();
		return 1;
	}
	char dc[PATH_MAX + 32], dcn[PATH_MAX + 32], dcl[PATH_MAX + 32];
	helper(dc, sizeof(dc), "deepchain");
	helper(dcn, sizeof(dcn), "deepchain-nopie");
	helper(dcl, sizeof(dcl), "libdeepchain.so");
	int have = (rc == 0 ? NEED_FX : 0) | (access(PYTHON, R_OK) == 0 ? NEED_PYTHON : 0) |
		   (access(POSTGRES, R_OK) == 0 ? NEED_POSTGRES : 0) | (access(LIBC, R_OK) == 0 ? NEED_LIBC : 0) |
		   (access(LIBPYTHON, R_OK) == 0 ? NEED_LIBPYTHON : 0) |
		   (access(dc, R_OK) == 0 && access(dcn, R_OK) == 0 && access(dcl, R_OK) == 0 ? NEED_DEEPCHAIN : 0);
	/* cmocka 1.1's skip() prints "not ok ... # SKIP", which TAP readers count as a failure: a test that cannot
	 * run here is left out and reported as one TAP skip line, with the reason. */
	for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
		int missing = all[i].needs & ~have;
		if (!missing)
			run[n++] = all[i].t;
		else
			printf("ok - %s # SKIP %s\n", all[i].t.name,
			       missing & NEED_FX	    ? skip_reason
			       : missing & NEED_PYTHON	    ? PYTHON " is not installed (python3.11)"
			       : missing & NEED_POSTGRES    ? POSTGRES " is not installed (postgresql-15)"
			       : missing & NEED_LIBC	    ? LIBC " is not there"
			       : missing & NEED_LIBPYTHON   ? LIBPYTHON " is not installed (pyenv install 3.11.7)"
							    : "deepchain is not built beside this test (make tests)");
	}
	fflush(stdout);
	rc = _cmocka_run_group_tests("test_unwind_table", run, n, NULL, NULL);
	teardown();
	return rc;
}
