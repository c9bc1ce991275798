// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/profile/pyruntime.c against live interpreters: each CPython on this machine (pyenv's 3.10-3.13,
 * each skipped, saying why, when absent, and Debian's stripped python3.11, which has no DWARF: its walk is what
 * shows the 3.11 layout fits it) runs tests/unit/py/nest.py, which holds three threads still in known frame chains
 * (functions and a method; a coroutine chain on asyncio's loop; names stored as latin-1, UCS-2 and UCS-4) and prints
 * the interpreter's own account of them (sys._current_frames(), f_back, f_lineno, f_lasti) and &_PyRuntime
 * (ctypes). The process is detected (version, layout, runtime address, the file defining _PyRuntime), each thread
 * walked by its threading.get_ident() and every frame named: the chains must equal that account frame for frame
 * (qualname, file basename, first line, current line, instruction offset), and their top frames the "def" and
 * "# @..." lines of nest.py itself, read here. Also: CPython 3.9 is detected and named unreadable, a process that
 * is not CPython gives layout 0 without an error, and strings, line tables and the cache on code objects built by
 * hand in this process's own memory. Needs ptrace access to its children's memory (/proc/PID/mem: same user). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"
#include "profile/pyruntime.h"

#define NEST "tests/unit/py/nest.py"
#define CHAINS 3
#define TRUTH_FRAMES 64

/* ---- nest.py's own lines ---- */

static char *script;	/* nest.py's text */
static char skip_nest[160];

/* The line of nest.py holding "def NAME(" (marker 0) or "# @NAME" followed by a space, ':' or its end; 0 if none. */
static unsigned script_line(const char *name, int marker)
{
	char want[96];
	snprintf(want, sizeof(want), marker ? "# @%s" : "def %s(", name);
	unsigned ln = 1;
	for (const char *l = script; *l; ln++) {
		const char *nl = strchr(l, '\n'), *end = nl ? nl : l + strlen(l), *p = strstr(l, want);
		if (p && p < end) {
			char after = p[strlen(want)];
			if (!marker || after == ' ' || after == ':' || after == '\n' || after == '\0')
				return ln;
		}
		if (!nl)
			break;
		l = nl + 1;
	}
	return 0;
}

/* ---- The interpreter's account ---- */

struct truth_frame {
	char qualname[PY_NAME_MAX], file[PY_NAME_MAX];
	unsigned first, line;
	int lasti; /* f_lasti: the instruction's offset in bytes */
};

struct truth {
	uint32_t hexversion;
	uint64_t runtime;
	struct {
		char name[16];
		uint64_t ident;
		int n;
		struct truth_frame f[TRUTH_FRAMES];
	} chain[CHAINS];
};

static pid_t child = -1;

static void kill_child(void)
{
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	child = -1;
}

static int child_teardown(void **state)
{
	kill_child();
	return 0;
}

static void parse_record(char *l, struct truth *t)
{
	char *f[8];
	int n = 0;
	for (char *s = strtok(l, "\t"); s && n < 8; s = strtok(NULL, "\t"))
		f[n++] = s;
	if (n == 2 && !strcmp(f[0], "hexversion"))
		t->hexversion = (uint32_t)strtoul(f[1], NULL, 16);
	else if (n == 2 && !strcmp(f[0], "runtime"))
		t->runtime = strtoull(f[1], NULL, 16);
	for (int c = 0; c < CHAINS && n >= 3; c++) {
		if (!t->chain[c].name[0] && !strcmp(f[0], "ident")) {
			snprintf(t->chain[c].name, sizeof(t->chain[c].name), "%s", f[1]);
			t->chain[c].ident = strtoull(f[2], NULL, 10);
			return;
		}
		if (n == 7 && !strcmp(f[0], "frame") && !strcmp(t->chain[c].name, f[1]) &&
		    t->chain[c].n < TRUTH_FRAMES) {
			struct truth_frame *tf = &t->chain[c].f[t->chain[c].n++];
			snprintf(tf->qualname, sizeof(tf->qualname), "%s", f[2]);
			snprintf(tf->file, sizeof(tf->file), "%s", f[3]);
			tf->first = (unsigned)atoi(f[4]);
			tf->line = (unsigned)atoi(f[5]);
			tf->lasti = atoi(f[6]);
			return;
		}
	}
}

/* Start py on nest.py and read its account until "ready" (30 s at most). */
static void start(const char *py, struct truth *t)
{
	int out[2];
	memset(t, 0, sizeof(*t));
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	child = fork();
	assert_true(child >= 0);
	if (!child) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives a test that crashed */
		int null = open("/dev/null", O_RDONLY);
		dup2(null, 0);
		dup2(out[1], 1);
		execl(py, py, "-I", "-B", NEST, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	static char buf[1 << 16];
	size_t len = 0;
	bool ready = false;
	uint64_t deadline = now_ns(CLOCK_MONOTONIC) + 30 * NSEC_PER_SEC;
	while (!ready && len < sizeof(buf) - 1) {
		struct pollfd pfd = {.fd = out[0], .events = POLLIN};
		uint64_t now = now_ns(CLOCK_MONOTONIC);
		if (now >= deadline || poll(&pfd, 1, (int)((deadline - now) / NSEC_PER_MSEC)) <= 0)
			break;
		ssize_t r = read(out[0], buf + len, sizeof(buf) - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		buf[len] = '\0';
		ready = strstr(buf, "\nready\n") != NULL;
	}
	close(out[0]);
	if (!ready)
		print_message("# %s printed: %.*s\n", py, (int)len, buf);
	assert_true(ready);
	for (char *l = buf, *nl; l && *l; l = nl) {
		nl = strchr(l, '\n');
		if (nl)
			*nl++ = '\0';
		parse_record(l, t);
	}
}

/* ---- Live interpreters ---- */

struct interp {
	const char *label;   /* the test's name */
	const char *pattern; /* glob(3) of the interpreter */
	unsigned minor;
	const char *file;    /* the file defining _PyRuntime */
	char path[256];	     /* found */
};

static struct interp interps[] = {
	{"python3.10 (pyenv)", "/root/.pyenv/versions/3.10.*/bin/python3.10", 10, "libpython3.10.so.1.0"},
	{"python3.11 (pyenv)", "/root/.pyenv/versions/3.11.*/bin/python3.11", 11, "libpython3.11.so.1.0"},
	{"python3.12 (pyenv)", "/root/.pyenv/versions/3.12.*/bin/python3.12", 12, "libpython3.12.so.1.0"},
	{"python3.13 (pyenv)", "/root/.pyenv/versions/3.13.*/bin/python3.13", 13, "libpython3.13.so.1.0"},
	{"python3.11 (Debian, stripped, non-PIE)", "/usr/bin/python3.11", 11, "python3.11"},
};
static struct interp py39 = {"python3.9 (pyenv)", "/root/.pyenv/versions/3.9.*/bin/python3.9", 9,
			     "libpython3.9.so.1.0"};

static bool find_interp(struct interp *in)
{
	glob_t g;
	bool ok = !glob(in->pattern, 0, NULL, &g) && g.gl_pathc > 0 && access(g.gl_pathv[g.gl_pathc - 1], X_OK) == 0;
	if (ok)
		snprintf(in->path, sizeof(in->path), "%s", g.gl_pathv[g.gl_pathc - 1]);
	globfree(&g);
	return ok;
}

static const struct py_layout *layout_of(uint32_t version)
{
	size_t n;
	const struct py_layout *L = pyruntime__layouts(&n);
	for (size_t i = 0; i < n; i++)
		if (L[i].version == version)
			return &L[i];
	fail_msg("no layout for %#x", version);
	return NULL;
}

/* nest.py's names in UTF-8: stored by CPython as UCS-4 (U+20000), UCS-2 and latin-1 strings. */
#define WIDE "\xf0\xa0\x80\x80_wide"
#define LAMBDA "\xce\xbb_\xe4\xb8\xad"
#define UNI "\xc3\x9cn\xc3\xaf"

/* A frame the test knows from nest.py's text: its qualname (3.11+) or name (3.10), def line, "# @" line. */
struct want {
	const char *qualname, *name, *def, *marker;
};

static void expect_top(const struct truth *t, int c, const struct want *w, int n, unsigned minor)
{
	assert_true(t->chain[c].n >= n);
	for (int i = 0; i < n; i++) {
		const struct truth_frame *tf = &t->chain[c].f[i];
		assert_string_equal(tf->qualname, minor >= 11 ? w[i].qualname : w[i].name);
		assert_string_equal(tf->file, "nest.py");
		assert_int_equal(tf->first, w[i].def ? script_line(w[i].def, 0) : 1);
		assert_int_equal(tf->line, script_line(w[i].marker, 1));
	}
}

static void test_interpreter(void **state)
{
	const struct interp *in = *state;
	struct truth t;
	start(in->path, &t);

	/* Detection. */
	struct py_proc p;
	assert_int_equal(pyruntime__detect(child, &p), 1);
	print_message("# %s: %s defines _PyRuntime at %#" PRIx64 ", version %s (%#x), layout %d\n", in->path, p.file,
		      p.runtime, p.version, p.hexversion, p.layout);
	char ver[8];
	snprintf(ver, sizeof(ver), "3.%u", in->minor);
	assert_string_equal(p.version, ver);
	assert_string_equal(p.file, in->file);
	assert_true(p.layout > 0);
	size_t nl;
	const struct py_layout *L = &pyruntime__layouts(&nl)[p.layout - 1];
	assert_int_equal(L->version, 0x0300 | in->minor);
	assert_int_equal(p.hexversion, in->minor >= 11 ? t.hexversion : (3u << 24 | in->minor << 16));
	assert_int_equal(p.hexversion >> 16, t.hexversion >> 16);
	if (t.runtime)
		assert_int_equal(p.runtime, t.runtime);
	else
		print_message("# %s: no ctypes, the runtime address is not compared\n", in->path);

	/* The chains as nest.py's text has them, and as the interpreter reports them. */
	static const struct want main_top[] = {
		{"inner", "inner", "inner", "inner"},
		{"middle", "middle", "middle", "middle"},
		{"Nest.method", "method", "method", "method"},
		{"outer", "outer", "outer", "outer"},
		{"<module>", "<module>", NULL, "module"},
	};
	static const struct want async_top[] = {
		{"inner_c", "inner_c", "inner_c", "inner_c"},
		{"middle_c", "middle_c", "middle_c", "middle_c"},
		{"outer_c", "outer_c", "outer_c", "outer_c"},
	};
	static const struct want wide_top[] = {
		{WIDE, WIDE, WIDE, "wide"},
		{UNI "." LAMBDA, LAMBDA, LAMBDA, "wide_method"},
	};
	assert_string_equal(t.chain[0].name, "main");
	assert_string_equal(t.chain[1].name, "async");
	assert_string_equal(t.chain[2].name, "wide");
	expect_top(&t, 0, main_top, 5, in->minor);
	assert_int_equal(t.chain[0].n, 5);
	expect_top(&t, 1, async_top, 3, in->minor);
	expect_top(&t, 2, wide_top, 2, in->minor);
	for (int c = 1; c < CHAINS; c++) {
		const struct truth_frame *last = &t.chain[c].f[t.chain[c].n - 1];
		assert_string_equal(last->qualname, in->minor >= 11 ? "Thread._bootstrap" : "_bootstrap");
		assert_string_equal(last->file, "threading.py");
	}

	/* The walk and the names: frame for frame. */
	struct py_codes *codes = pyruntime__codes_new();
	assert_non_null(codes);
	for (int c = 0; c < CHAINS; c++) {
		struct prof_pyframe fr[PY_FRAMES_MAX];
		uint64_t entry;
		int n = pyruntime__walk(child, t.chain[c].ident, &p, fr, PY_FRAMES_MAX, &entry);
		if (n != t.chain[c].n)
			print_message("# %s chain %s: walked %d frames, the interpreter reports %d\n", in->path,
				      t.chain[c].name, n, t.chain[c].n);
		assert_int_equal(n, t.chain[c].n);
		for (int i = 0; i < n; i++) {
			struct py_code_info ci;
			const struct truth_frame *tf = &t.chain[c].f[i];
			assert_int_equal(pyruntime__code_at(codes, child, L, fr[i].code, fr[i].instr, &ci), 0);
			if (strcmp(ci.qualname, tf->qualname) || strcmp(ci.file, tf->file) ||
			    ci.first_line != tf->first || ci.line != tf->line || !ci.line_decoded)
				print_message("# %s chain %s frame %d: %s %s:%u line %u (decoded %d), the "
					      "interpreter says %s %s:%u line %u\n", in->path, t.chain[c].name, i,
					      ci.qualname, ci.file, ci.first_line, ci.line, ci.line_decoded,
					      tf->qualname, tf->file, tf->first, tf->line);
			assert_string_equal(ci.qualname, tf->qualname);
			assert_string_equal(ci.file, tf->file);
			assert_int_equal(ci.first_line, tf->first);
			assert_int_equal(ci.line, tf->line);
			assert_int_equal(ci.line_decoded, 1);
			/* The instruction is the interpreter's: f_lasti is 3.10's int in bytes, else its pointer's
			 * offset from co_code_adaptive. */
			int64_t lasti = L->code_adaptive == PY_OFF_NONE
						? (int64_t)(int32_t)fr[i].instr * 2
						: (int64_t)(fr[i].instr - fr[i].code - L->code_adaptive);
			assert_int_equal(lasti, tf->lasti);
			/* module: the file's basename without ".py"; nothing of a directory anywhere */
			size_t fl = strlen(ci.file);
			assert_true(fl > 3 && !strcmp(ci.file + fl - 3, ".py"));
			assert_int_equal(strlen(ci.module), fl - 3);
			assert_memory_equal(ci.module, ci.file, fl - 3);
			assert_null(strchr(ci.file, '/'));
			assert_null(strchr(ci.module, '/'));
			char name[sizeof(ci.name)];
			snprintf(name, sizeof(name), "%s.%s", ci.module, ci.qualname);
			assert_string_equal(ci.name, name);
			/* The profiler's cached form agrees. */
			const struct py_code_info *cached = pyruntime__code(codes, child, L, fr[i].code);
			assert_non_null(cached);
			assert_string_equal(cached->name, name);
			assert_int_equal(cached->first_line, tf->first);
		}
		/* Where _PyEval_EvalFrameDefault calls begin: each frame on 3.10; else the module (run by
		 * PyEval_EvalCode), and not the functions it called (Python-to-Python calls run in the caller's
		 * loop); the outermost frame of every chain. */
		assert_true(entry & (1ull << (n - 1)));
		if (c == 0)
			assert_int_equal(entry, in->minor == 10 ? 0x1f : 0x10);
		if (in->minor == 10)
			assert_int_equal(entry, (1ull << n) - 1);
	}
	struct prof_pyframe fr[PY_FRAMES_MAX];
	uint64_t entry = 1;
	assert_int_equal(pyruntime__walk(child, 12345, &p, fr, PY_FRAMES_MAX, &entry), -ESRCH);
	assert_int_equal(entry, 0);
	assert_int_equal(pyruntime__walk(child, t.chain[0].ident, &p, fr, 2, NULL), 2);

	/* The process gone: its code objects cannot be read any more, and are named so. */
	pid_t pid = child;
	kill_child();
	struct py_code_info ci;
	pyruntime__codes_drop_pid(codes, pid);
	assert_true(pyruntime__code_at(codes, pid, L, fr[0].code, fr[0].instr, &ci) < 0);
	assert_string_equal(ci.qualname, "[py:unreadable]");
	assert_string_equal(ci.name, "[py:unreadable]");
	assert_string_equal(ci.file, "");
	assert_null(pyruntime__code(codes, pid, L, fr[0].code));
	pyruntime__codes_free(codes);
}

/* CPython 3.9: found, and named as a version loupe does not read. */
static void test_py39(void **state)
{
	struct truth t;
	start(py39.path, &t);
	struct py_proc p;
	assert_int_equal(pyruntime__detect(child, &p), 1);
	assert_int_equal(p.layout, 0);
	assert_string_equal(p.version, "3.9");
	assert_string_equal(p.file, py39.file);
	assert_string_equal(p.why, "CPython 3.9: no layout for this version (loupe reads 3.10-3.13)");
	struct prof_pyframe fr[4];
	assert_int_equal(pyruntime__walk(child, t.chain[0].ident, &p, fr, 4, NULL), -EINVAL);
}

/* ---- Processes that are not CPython ---- */

static void test_not_python(void **state)
{
	struct py_proc p;
	memset(&p, 0x55, sizeof(p));
	assert_int_equal(pyruntime__detect(getpid(), &p), 0);
	assert_int_equal(p.layout, 0);
	assert_string_equal(p.version, "");
	assert_string_equal(p.why, "");
	assert_int_equal(p.runtime, 0);

	pid_t gone = fork();
	assert_true(gone >= 0);
	if (!gone)
		_exit(0);
	assert_int_equal(waitpid(gone, NULL, 0), gone);
	assert_int_equal(pyruntime__detect(gone, &p), -ESRCH);

	struct prof_pyframe fr[4];
	struct py_proc none = {0}, bad = {.layout = 99};
	assert_int_equal(pyruntime__walk(getpid(), 0, &none, fr, 4, NULL), -EINVAL);
	assert_int_equal(pyruntime__walk(getpid(), 0, &bad, fr, 4, NULL), -EINVAL);
}

/* Every layout's frame fields lie where the BPF program reads them (a walk with a layout that does not answers
 * -EINVAL; one on a runtime that cannot be read, -EIO or -EFAULT). */
static void test_layout_heads(void **state)
{
	size_t n;
	pyruntime__layouts(&n);
	assert_true(n >= 4 && n < PY_LAYOUTS_MAX);
	for (size_t i = 0; i < n; i++) {
		struct py_proc p = {.layout = (int)i + 1, .runtime = 16};
		struct prof_pyframe fr[4];
		int rc = pyruntime__walk(getpid(), 0, &p, fr, 4, NULL);
		assert_true(rc == -EIO || rc == -EFAULT);
	}
}

/* ---- Code objects built by hand, in this process ---- */

/* A compact str: PyASCIIObject (or PyCompactUnicodeObject) then the characters, kind chosen as CPython would. */
struct fake_str {
	_Alignas(8) unsigned char b[80 + 4 * 1200];
};

static uint64_t mk_str(struct fake_str *s, const struct py_layout *L, const char *utf8)
{
	uint32_t cp[1200];
	size_t n = 0;
	for (const unsigned char *u = (const unsigned char *)utf8; *u && n < 1200; n++) {
		int k = *u < 0x80 ? 0 : *u < 0xe0 ? 1 : *u < 0xf0 ? 2 : 3;
		cp[n] = k ? *u & (0x3f >> k) : *u;
		for (int i = 1; i <= k; i++)
			cp[n] = cp[n] << 6 | (u[i] & 0x3f);
		u += k + 1;
	}
	unsigned kind = 1, ascii = 1;
	for (size_t i = 0; i < n; i++) {
		ascii &= cp[i] < 0x80;
		kind = cp[i] > 0xffff ? 4 : cp[i] > 0xff && kind < 2 ? 2 : kind;
	}
	memset(s, 0, sizeof(*s));
	int64_t len = (int64_t)n;
	uint32_t state = kind << 2 | 1 << 5 | ascii << 6;
	memcpy(s->b + 16, &len, 8);
	memcpy(s->b + L->unicode_state, &state, 4);
	unsigned char *d = s->b + (ascii ? L->unicode_ascii_data : L->unicode_compact_data);
	for (size_t i = 0; i < n; i++)
		for (unsigned k = 0; k < kind; k++)
			d[i * kind + k] = (unsigned char)(cp[i] >> (8 * k));
	return (uint64_t)(uintptr_t)s->b;
}

struct fake_bytes {
	_Alignas(8) unsigned char b[32 + 256];
};

static uint64_t mk_bytes(struct fake_bytes *b, const unsigned char *data, size_t n)
{
	memset(b, 0, sizeof(*b));
	int64_t len = (int64_t)n;
	memcpy(b->b + 16, &len, 8);
	memcpy(b->b + 32, data, n);
	return (uint64_t)(uintptr_t)b->b;
}

struct fake_code {
	_Alignas(8) unsigned char b[512];
};

static uint64_t mk_code(struct fake_code *c, const struct py_layout *L, uint64_t qual, uint64_t file, int32_t first,
			uint64_t lines, int64_t units)
{
	memset(c, 0, sizeof(*c));
	memcpy(c->b + 16, &units, 8);
	memcpy(c->b + L->code_name, &qual, 8);
	if (L->code_qualname != PY_OFF_NONE)
		memcpy(c->b + L->code_qualname, &qual, 8);
	memcpy(c->b + L->code_filename, &file, 8);
	memcpy(c->b + L->code_firstlineno, &first, 4);
	memcpy(c->b + L->code_linetable, &lines, 8);
	return (uint64_t)(uintptr_t)c->b;
}

static struct fake_str q, f;
static struct fake_bytes lt;
static struct fake_code co;

/* name of a code object named qualname in file, through layout L. */
static int name_of(struct py_codes *c, const struct py_layout *L, const char *qualname, const char *file,
		   struct py_code_info *ci)
{
	uint64_t code = mk_code(&co, L, mk_str(&q, L, qualname), mk_str(&f, L, file), 7, 0, 0);
	pyruntime__codes_drop_pid(c, getpid());
	return pyruntime__code_at(c, getpid(), L, code, 0, ci);
}

static void test_strings(void **state)
{
	static const uint32_t versions[] = {0x030a, 0x030b, 0x030c, 0x030d};
	struct py_codes *c = pyruntime__codes_new();
	struct py_code_info ci;
	for (size_t v = 0; v < ARRAY_SIZE(versions); v++) {
		const struct py_layout *L = layout_of(versions[v]);
		/* ASCII, latin-1, UCS-2, UCS-4: as UTF-8 */
		assert_int_equal(name_of(c, L, "Klass.method", "/srv/app/secret/views.py", &ci), 0);
		assert_string_equal(ci.qualname, "Klass.method");
		assert_string_equal(ci.file, "views.py");
		assert_string_equal(ci.module, "views");
		assert_string_equal(ci.name, "views.Klass.method");
		assert_int_equal(ci.first_line, 7);
		assert_int_equal(ci.line, 7);
		assert_int_equal(ci.line_decoded, 0); /* no line table */
		assert_int_equal(name_of(c, L, "\xc3\x9cn\xc3\xaf.caf\xc3\xa9", "/x/m\xc3\xbc.py", &ci), 0);
		assert_string_equal(ci.qualname, "\xc3\x9cn\xc3\xaf.caf\xc3\xa9");
		assert_string_equal(ci.name, "m\xc3\xbc.\xc3\x9cn\xc3\xaf.caf\xc3\xa9");
		assert_int_equal(name_of(c, L, "\xce\xbb_\xe4\xb8\xad", "a.py", &ci), 0);
		assert_string_equal(ci.qualname, "\xce\xbb_\xe4\xb8\xad");
		assert_int_equal(name_of(c, L, "\xf0\xa0\x80\x80_w\xc3\xa9", "<frozen importlib._bootstrap>", &ci), 0);
		assert_string_equal(ci.qualname, "\xf0\xa0\x80\x80_w\xc3\xa9");
		assert_string_equal(ci.file, "<frozen importlib._bootstrap>");
		assert_string_equal(ci.module, "<frozen importlib._bootstrap>");
		/* ';' (folded stacks' separator) and control characters */
		assert_int_equal(name_of(c, L, "a;b\nc\x7f" "d", "x;y.py", &ci), 0);
		assert_string_equal(ci.qualname, "a:b?c?d");
		assert_string_equal(ci.file, "x:y.py");
		/* Long names: cut to PY_NAME_MAX bytes with "...", at a character boundary */
		char longname[400];
		memset(longname, 'a', 300);
		longname[300] = '\0';
		assert_int_equal(name_of(c, L, longname, "a.py", &ci), 0);
		assert_int_equal(strlen(ci.qualname), PY_NAME_MAX - 1);
		assert_string_equal(ci.qualname + PY_NAME_MAX - 4, "...");
		assert_int_equal(strspn(ci.qualname, "a"), PY_NAME_MAX - 4);
		longname[0] = '\0';
		for (int i = 0; i < 100; i++)
			strcat(longname, "\xe4\xb8\xad");
		assert_int_equal(name_of(c, L, longname, "a.py", &ci), 0);
		assert_int_equal(strlen(ci.qualname), 41 * 3 + 3);
		assert_string_equal(ci.qualname + 41 * 3, "...");
		/* A long path: its basename all the same, and none of its directories */
		char path[1100] = "";
		for (int i = 0; i < 60; i++)
			strcat(path, "/private_dir_name");
		strcat(path, "/handler.py");
		assert_int_equal(name_of(c, L, "f", path, &ci), 0);
		assert_string_equal(ci.file, "handler.py");
		assert_string_equal(ci.module, "handler");
		assert_null(strstr(ci.name, "private"));
		/* A str that is not compact, a qualname pointer to nowhere: unreadable, named so */
		uint64_t code = mk_code(&co, L, mk_str(&q, L, "x"), mk_str(&f, L, "a.py"), 1, 0, 0);
		q.b[L->unicode_state] &= (unsigned char)~(1 << 5);
		pyruntime__codes_drop_pid(c, getpid());
		assert_true(pyruntime__code_at(c, getpid(), L, code, 0, &ci) < 0);
		assert_string_equal(ci.qualname, "[py:unreadable]");
		assert_null(pyruntime__code(c, getpid(), L, code));
		assert_true(pyruntime__code_at(c, getpid(), L, 16, 0, &ci) < 0);
		assert_string_equal(ci.name, "[py:unreadable]");
	}
	pyruntime__codes_free(c);
}

/* 3.11+'s location table (Objects/locations.md), first line 10; code units -> line (0: none). */
static void test_lines_311(void **state)
{
	static const unsigned char table[] = {
		0x80 | 13 << 3 | 1, 6,		  /* no columns, 2 units, line +3: 13 */
		0x80 | 0 << 3 | 0, 5,		  /* short form, 1 unit: 13 */
		0x80 | 12 << 3 | 2, 1, 4,	  /* one line, +2, 3 units: 15 */
		0x80 | 15 << 3 | 0,		  /* no location, 1 unit */
		0x80 | 14 << 3 | 0, 9, 0, 1, 2,	  /* long form, line -4: 11 */
		0x80 | 13 << 3 | 0, 64 | 8, 3,	  /* no columns, line +100 (a 2-byte varint): 111 */
	};
	static const int lines[] = {13, 13, 13, 15, 15, 15, 0, 11, 111};
	struct py_codes *c = pyruntime__codes_new();
	for (uint32_t v = 0x030b; v <= 0x030d; v++) {
		const struct py_layout *L = layout_of(v);
		uint64_t code = mk_code(&co, L, mk_str(&q, L, "f"), mk_str(&f, L, "m.py"), 10,
					mk_bytes(&lt, table, sizeof(table)), ARRAY_SIZE(lines));
		uint64_t start = code + L->code_adaptive;
		pyruntime__codes_drop_pid(c, getpid());
		struct py_code_info ci;
		for (size_t u = 0; u < ARRAY_SIZE(lines); u++) {
			assert_int_equal(pyruntime__code_at(c, getpid(), L, code, start + 2 * u, &ci), 0);
			assert_int_equal(ci.line, lines[u] ? (unsigned)lines[u] : 10);
			assert_int_equal(ci.line_decoded, lines[u] != 0);
		}
		/* before the first instruction: the first line, as CPython says; past the code: not decoded */
		assert_int_equal(pyruntime__code_at(c, getpid(), L, code, start - 2, &ci), 0);
		assert_true(ci.line == 10 && ci.line_decoded);
		assert_int_equal(pyruntime__code_at(c, getpid(), L, code, start + 2 * ARRAY_SIZE(lines), &ci), 0);
		assert_true(ci.line == 10 && !ci.line_decoded);
		assert_int_equal(pyruntime__code_at(c, getpid(), L, code, 0, &ci), 0);
		assert_true(ci.line == 10 && !ci.line_decoded);
	}
	pyruntime__codes_free(c);
}

/* 3.10's (start delta, line delta) pairs, first line 20; f_lasti -> line (0: none). */
static void test_lines_310(void **state)
{
	static const unsigned char table[] = {6, 1, 4, 0x80, 2, 0, 8, 0xfd, 0, 5, 4, 2};
	static const struct {
		int32_t lasti;
		unsigned line;
	} at[] = {{0, 21}, {2, 21}, {3, 0}, {4, 0}, {5, 21}, {6, 18}, {9, 18}, {10, 25}, {11, 25}, {12, 0}, {-1, 20}};
	const struct py_layout *L = layout_of(0x030a);
	struct py_codes *c = pyruntime__codes_new();
	uint64_t code = mk_code(&co, L, mk_str(&q, L, "f"), mk_str(&f, L, "m.py"), 20,
				mk_bytes(&lt, table, sizeof(table)), 0);
	for (size_t i = 0; i < ARRAY_SIZE(at); i++) {
		struct py_code_info ci;
		assert_int_equal(pyruntime__code_at(c, getpid(), L, code, (uint32_t)at[i].lasti, &ci), 0);
		assert_int_equal(ci.line, at[i].line ? at[i].line : 20);
		assert_int_equal(ci.line_decoded, at[i].line != 0);
	}
	pyruntime__codes_free(c);
}

/* Names are cached by (pid, code address) until the pid is dropped; dropping one pid keeps every other's. */
static void test_cache(void **state)
{
	const struct py_layout *L = layout_of(0x030c);
	struct py_codes *c = pyruntime__codes_new();
	struct py_code_info ci;
	static struct fake_code more[64];
	static struct fake_str names[64], file;
	uint64_t code = mk_code(&co, L, mk_str(&q, L, "before"), mk_str(&f, L, "m.py"), 3, 0, 0);
	for (int i = 0; i < 64; i++) {
		char nm[16];
		snprintf(nm, sizeof(nm), "g%d", i);
		mk_code(&more[i], L, mk_str(&names[i], L, nm), mk_str(&file, L, "m.py"), i + 1, 0, 0);
	}
	/* A child shares these objects at the same addresses: its entries sit among this process's. */
	pid_t kid = fork();
	assert_true(kid >= 0);
	if (!kid) {
		pause();
		_exit(0);
	}
	for (int i = 0; i < 64; i++) {
		uint64_t g = (uint64_t)(uintptr_t)more[i].b;
		assert_non_null(pyruntime__code(c, getpid(), L, g));
		assert_non_null(pyruntime__code(c, kid, L, g));
	}
	assert_int_equal(pyruntime__code_at(c, getpid(), L, code, 0, &ci), 0);
	assert_string_equal(ci.qualname, "before");
	mk_str(&q, L, "after");
	assert_int_equal(pyruntime__code_at(c, getpid(), L, code, 0, &ci), 0);
	assert_string_equal(ci.qualname, "before");
	assert_string_equal(pyruntime__code(c, getpid(), L, code)->qualname, "before");
	pyruntime__codes_drop_pid(c, getpid());
	assert_int_equal(pyruntime__code_at(c, getpid(), L, code, 0, &ci), 0);
	assert_string_equal(ci.qualname, "after");
	/* The child gone: its names come from the cache only, all still there. */
	kill(kid, SIGKILL);
	assert_int_equal(waitpid(kid, NULL, 0), kid);
	for (int i = 0; i < 64; i++) {
		char nm[16];
		snprintf(nm, sizeof(nm), "g%d", i);
		const struct py_code_info *g = pyruntime__code(c, kid, L, (uint64_t)(uintptr_t)more[i].b);
		assert_non_null(g);
		assert_string_equal(g->qualname, nm);
		assert_int_equal(g->first_line, i + 1);
	}
	pyruntime__codes_drop_pid(c, kid);
	assert_null(pyruntime__code(c, kid, L, (uint64_t)(uintptr_t)more[0].b));
	pyruntime__codes_trim(c); /* not full: nothing forgotten */
	assert_string_equal(pyruntime__code(c, getpid(), L, code)->qualname, "after");
	pyruntime__codes_free(c);
}

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_not_python), cmocka_unit_test(test_layout_heads), cmocka_unit_test(test_strings),
		cmocka_unit_test(test_lines_311),  cmocka_unit_test(test_lines_310),	cmocka_unit_test(test_cache),
	};
	struct CMUnitTest run[ARRAY_SIZE(fixed) + ARRAY_SIZE(interps) + 1];
	size_t n = 0;
	for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
		run[n++] = fixed[i];
	if (read_file(NEST, &script) < 0)
		snprintf(skip_nest, sizeof(skip_nest), "%s not found: run from the repository's top directory", NEST);
	/* cmocka 1.1's skip() prints "not ok ... # SKIP", which TAP readers count as a failure: a test that cannot
	 * run here is left out and reported as one TAP skip line, with the reason. */
	for (size_t i = 0; i <= ARRAY_SIZE(interps); i++) {
		struct interp *in = i < ARRAY_SIZE(interps) ? &interps[i] : &py39;
		if (skip_nest[0] || !find_interp(in)) {
			printf("ok - %s # SKIP %s\n", in->label, skip_nest[0] ? skip_nest : "not installed here");
			continue;
		}
		run[n++] = (struct CMUnitTest){.name = in->label,
					       .test_func = in == &py39 ? test_py39 : test_interpreter,
					       .teardown_func = child_teardown,
					       .initial_state = in};
	}
	fflush(stdout);
	int rc = _cmocka_run_group_tests("test_pyruntime", run, n, NULL, NULL);
	kill_child();
	free(script);
	return rc;
}
