// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/parsers/target_rules.c: --target parsing and its error messages, matching order, the default rules
 * against what real uvicorn and postgres processes look like, cgroup prefixes, and the /proc readers. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "parsers/target_rules.h"
#include "lib/util.h"

static int test_argc;
static char **test_argv;

static int rules_setup(void **state)
{
	struct target_rules *tr = malloc(sizeof(*tr));
	if (!tr)
		return -1;
	target_rules__init(tr);
	*state = tr;
	return 0;
}

static int rules_teardown(void **state)
{
	target_rules__free(*state);
	free(*state);
	return 0;
}

static int add(struct target_rules *tr, const char *spec)
{
	char err[256] = "";
	int rc = target_rules__add(tr, spec, err, sizeof(err));
	if (rc)
		print_message("# add '%s': %d %s\n", spec, rc, err);
	return rc;
}

static int match_comm(const struct target_rules *tr, const char *comm)
{
	struct proc_ident id = {.pid = 4242, .comm = comm};
	return target_rules__match(tr, &id);
}

static int match_cmdline(const struct target_rules *tr, const char *comm, const char *cmdline)
{
	struct proc_ident id = {.pid = 4242, .comm = comm, .cmdline = cmdline};
	return target_rules__match(tr, &id);
}

static int match_cgroup(const struct target_rules *tr, const char *cgroup)
{
	struct proc_ident id = {.pid = 4242, .comm = "x", .cgroup = cgroup};
	return target_rules__match(tr, &id);
}

/* ---- parsing ---- */

static void test_parse_valid(void **state)
{
	struct target_rules *tr = *state;

	assert_int_equal(add(tr, "api=cmdline:(uvicorn|gunicorn)"), 0);
	assert_int_equal(add(tr, "db=comm:^postgres$"), 0);
	assert_int_equal(add(tr, "cache=exe:/usr/bin/redis-server"), 0);
	assert_int_equal(add(tr, "one_off=pid:1234"), 0);
	assert_int_equal(add(tr, "k8s.pod-a=cgroup:/kubepods.slice/pod-a"), 0);
	assert_int_equal(add(tr, "_private=comm:x"), 0);
	assert_int_equal(add(tr, "a234567890123456789012345678901=comm:^y$"), 0); /* 31 characters, the longest */

	assert_int_equal(tr->nrules, 7);
	assert_int_equal(tr->nservices, 7);
	static const struct {
		enum selector_kind kind;
		const char *service, *arg;
	} want[] = {
		{SEL_CMDLINE, "api", "(uvicorn|gunicorn)"},
		{SEL_COMM, "db", "^postgres$"},
		{SEL_EXE, "cache", "/usr/bin/redis-server"},
		{SEL_PID, "one_off", "1234"},
		{SEL_CGROUP, "k8s.pod-a", "/kubepods.slice/pod-a"},
		{SEL_COMM, "_private", "x"},
	};
	for (int i = 0; i < 6; i++) {
		assert_int_equal(tr->rule[i].kind, want[i].kind);
		assert_int_equal(tr->rule[i].service, i + 1);
		assert_string_equal(target_rules__service(tr, i + 1), want[i].service);
		assert_string_equal(tr->rule[i].arg, want[i].arg);
	}
	assert_int_equal(tr->rule[3].pid, 1234);
	assert_string_equal(target_rules__service(tr, 0), "unknown");
	assert_string_equal(target_rules__service(tr, 7), "a234567890123456789012345678901");
	assert_string_equal(target_rules__service(tr, 8), "unknown");

	/* The regex argument may itself contain '=' and ':'. */
	assert_int_equal(add(tr, "x=cmdline:--port=8000 a:b"), 0);
	assert_string_equal(tr->rule[7].arg, "--port=8000 a:b");
	assert_int_equal(match_cmdline(tr, "python3", "uvicorn2 --port=8000 a:b"), 1); /* rule 1 first */
	assert_int_equal(match_cmdline(tr, "python3", "gunicorn_no --port=8000 a:b"), 1);
	assert_int_equal(match_cmdline(tr, "python3", "serve --port=8000 a:b"), 8);
}

static void test_parse_errors(void **state)
{
	static const struct {
		const char *spec;
		const char *reason; /* a piece of the message that tells the user what to fix */
	} cases[] = {
		{"api", "expected NAME=KIND:ARG"},
		{"apicomm:python", "expected NAME=KIND:ARG"},
		{"=comm:python", "service name"},
		{"9api=comm:python", "service name"},
		{"my api=comm:python", "service name"},
		{"api/v1=comm:python", "service name"},
		{"a2345678901234567890123456789012=comm:x", "1-31 of [A-Za-z0-9_.-], starting with a letter or '_'"},
		{"api=process:python", "selector must be comm:, cmdline:, exe:, pid: or cgroup:"},
		{"api=python", "selector must be"},
		{"api=COMM:python", "selector must be"},
		{"api=:python", "selector must be"},
		{"api=comm:", "empty comm selector"},
		{"api=cmdline:", "empty cmdline selector"},
		{"api=pid:", "empty pid selector"},
		{"api=comm:(uvicorn", "invalid regex"},
		{"api=cmdline:[a-", "invalid regex"},
		{"api=comm:*x", "invalid regex"},
		{"api=exe:usr/bin/python3", "exe must be an absolute path"},
		{"api=exe:./python3", "exe must be an absolute path"},
		{"api=cgroup:system.slice/api.service", "cgroup must be an absolute path"},
		{"api=pid:0", "pid must be a positive number"},
		{"api=pid:-5", "pid must be a positive number"},
		{"api=pid:abc", "pid must be a positive number"},
		{"api=pid:12x", "pid must be a positive number"},
		{"api=pid:99999999999999999999", "pid must be a positive number"},
		{"api=pid:5000000", "pid must be a positive number"}, /* above the kernel's PID_MAX_LIMIT */
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct target_rules tr;
		char err[256] = "";
		target_rules__init(&tr);
		int rc = target_rules__add(&tr, cases[i].spec, err, sizeof(err));
		if (rc != -EINVAL || !strstr(err, cases[i].reason) || !strstr(err, cases[i].spec))
			fail_msg("'%s': rc %d, message '%s'; want -EINVAL and '%s'", cases[i].spec, rc, err,
				 cases[i].reason);
		/* A refused spec leaves nothing behind. */
		assert_int_equal(tr.nrules, 0);
		assert_int_equal(tr.nservices, 0);
		target_rules__free(&tr);
	}
}

static void test_too_many(void **state)
{
	struct target_rules *tr = *state;
	char spec[64], err[256];

	/* Services: LOUPE_MAX_SERVICES distinct names fit, one more does not. */
	for (int i = 0; i < LOUPE_MAX_SERVICES; i++) {
		snprintf(spec, sizeof(spec), "svc%d=comm:^proc%d$", i, i);
		assert_int_equal(add(tr, spec), 0);
	}
	err[0] = '\0';
	assert_int_equal(target_rules__add(tr, "extra=comm:^extra$", err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "too many services"));
	assert_int_equal(tr->nrules, LOUPE_MAX_SERVICES);
	assert_int_equal(match_comm(tr, "extra"), 0);

	/* Rules: more rules for existing services fit up to TARGET_RULES_MAX. */
	for (int i = LOUPE_MAX_SERVICES; i < TARGET_RULES_MAX; i++) {
		snprintf(spec, sizeof(spec), "svc0=pid:%d", 1000 + i);
		assert_int_equal(add(tr, spec), 0);
	}
	assert_int_equal(tr->nrules, TARGET_RULES_MAX);
	err[0] = '\0';
	assert_int_equal(target_rules__add(tr, "svc1=pid:1", err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "too many targets"));
	assert_int_equal(tr->nrules, TARGET_RULES_MAX);
	assert_int_equal(tr->nservices, LOUPE_MAX_SERVICES);

	struct proc_ident id = {.pid = 1000 + TARGET_RULES_MAX - 1, .comm = "nothing"};
	assert_int_equal(target_rules__match(tr, &id), 1);
	id.pid = 1;
	assert_int_equal(target_rules__match(tr, &id), 0);
}

/* ---- matching ---- */

static void test_match_order(void **state)
{
	struct target_rules *tr = *state;

	assert_int_equal(add(tr, "exact=comm:^worker$"), 0);
	assert_int_equal(add(tr, "loose=comm:worker"), 0);
	assert_int_equal(add(tr, "web=comm:^nginx$"), 0);
	assert_int_equal(add(tr, "loose=pid:777"), 0);
	assert_int_equal(add(tr, "web=comm:^caddy$"), 0);

	/* Several rules for one name share one id. */
	assert_int_equal(tr->nrules, 5);
	assert_int_equal(tr->nservices, 3);
	assert_int_equal(tr->rule[3].service, tr->rule[1].service);
	assert_int_equal(tr->rule[4].service, tr->rule[2].service);

	assert_int_equal(match_comm(tr, "worker"), 1);    /* both match: the first wins */
	assert_int_equal(match_comm(tr, "worker-2"), 2);  /* only the loose one */
	assert_int_equal(match_comm(tr, "nginx"), 3);
	assert_int_equal(match_comm(tr, "caddy"), 3);
	assert_int_equal(match_comm(tr, "caddy2"), 0);
	assert_int_equal(match_comm(tr, "httpd"), 0);
	struct proc_ident id = {.pid = 777, .comm = "httpd"};
	assert_int_equal(target_rules__match(tr, &id), 2);
	/* A field that could not be read matches nothing. */
	struct proc_ident none = {.pid = 1};
	assert_int_equal(target_rules__match(tr, &none), 0);
}

static void test_defaults(void **state)
{
	struct target_rules *tr = *state;

	assert_int_equal(target_rules__add_defaults(tr), 0);
	assert_int_equal(tr->nservices, 2);
	assert_string_equal(target_rules__service(tr, 1), "postgres"); /* first: applied in BPF at exec */
	assert_string_equal(target_rules__service(tr, 2), "api");
	assert_true(target_rules__needs(tr, SEL_CMDLINE));
	assert_true(target_rules__needs(tr, SEL_COMM));
	assert_false(target_rules__needs(tr, SEL_EXE));
	assert_false(target_rules__needs(tr, SEL_CGROUP));
	assert_false(target_rules__needs(tr, SEL_PID));

	static const struct {
		const char *comm, *cmdline;
		int want;
	} cases[] = {
		/* The reference workload, as /proc shows it (argv joined by spaces). */
		{"python3", "/usr/bin/python3 -m uvicorn app:app --port 18080", 2},
		{"uvicorn", "/opt/venv/bin/python3 /opt/venv/bin/uvicorn main:app --host 0.0.0.0", 2},
		{"gunicorn", "gunicorn: worker [app:app]", 2},
		{"python3", "/usr/bin/python3 /usr/local/bin/hypercorn app:app", 2},
		/* Debian's postgres: every backend and auxiliary process keeps comm "postgres" while its
		 * process title (cmdline) changes. */
		{"postgres", "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main", 1},
		{"postgres", "postgres: 15/main: checkpointer ", 1},
		{"postgres", "postgres: 15/main: app appdb 127.0.0.1(51234) idle", 1},
		/* Not targets. */
		{"postgresql", "postgresql", 0},
		{"pg_ctl", "/usr/lib/postgresql/15/bin/pg_ctl start", 0},
		{"psql", "psql -h 127.0.0.1 appdb", 0},
		{"python3", "/usr/bin/python3 -m http.server 8000", 0},
		{"bash", "bash", 0},
		/* Tools that only mention the server's name. */
		{"grep", "grep uvicorn", 0},
		{"pkill", "pkill -f uvicorn", 0},
		{"tail", "tail -f /var/log/uvicorn.log", 0},
		{"python3", "/usr/bin/python3 -m uvicornish app:app", 0},
		/* A hypothetical title set through prctl(PR_SET_NAME) would no longer be "postgres". */
		{"postgres: check", "postgres: checkpointer", 0},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int got = match_cmdline(tr, cases[i].comm, cases[i].cmdline);
		if (got != cases[i].want)
			fail_msg("comm '%s' cmdline '%s': service %d, want %d", cases[i].comm, cases[i].cmdline, got,
				 cases[i].want);
	}
}

static void test_exe_and_pid(void **state)
{
	struct target_rules *tr = *state;

	assert_int_equal(add(tr, "py=exe:/usr/bin/python3.11"), 0);
	assert_int_equal(add(tr, "init=pid:1"), 0);
	assert_true(target_rules__needs(tr, SEL_EXE));
	assert_false(target_rules__needs(tr, SEL_COMM));

	struct proc_ident id = {.pid = 50, .comm = "python3", .exe = "/usr/bin/python3.11"};
	assert_int_equal(target_rules__match(tr, &id), 1);
	id.exe = "/usr/bin/python3.11-dbg"; /* exact path, not a prefix */
	assert_int_equal(target_rules__match(tr, &id), 0);
	id.exe = "/usr/bin/python3";
	assert_int_equal(target_rules__match(tr, &id), 0);
	id.pid = 1;
	assert_int_equal(target_rules__match(tr, &id), 2);
}

/* Leading comm:^literal$ rules can be applied in BPF at exec; the first other rule ends the list, so the
 * first-match order never changes. */
static void test_exec_literals(void **state)
{
	struct target_rules *tr = *state;
	char comm[8][16];
	unsigned svc[8];

	assert_int_equal(add(tr, "db=comm:^postgres$"), 0);
	assert_int_equal(add(tr, "cache=comm:^redis-server$"), 0);
	assert_int_equal(add(tr, "x=comm:^a.b$"), 0); /* '.' is regex syntax: not a literal, ends the list */
	assert_int_equal(add(tr, "y=comm:^later$"), 0);
	assert_int_equal(target_rules__exec_literals(tr, comm, svc, 8), 2);
	assert_string_equal(comm[0], "postgres");
	assert_int_equal(svc[0], 1);
	assert_string_equal(comm[1], "redis-server");
	assert_int_equal(svc[1], 2);
	assert_int_equal(target_rules__exec_literals(tr, comm, svc, 1), 1);

	struct target_rules other;
	target_rules__init(&other);
	char err[256];
	assert_int_equal(target_rules__add(&other, "api=cmdline:uvicorn", err, sizeof(err)), 0);
	assert_int_equal(target_rules__add(&other, "db=comm:^postgres$", err, sizeof(err)), 0);
	assert_int_equal(target_rules__exec_literals(&other, comm, svc, 8), 0); /* a cmdline rule comes first */
	target_rules__free(&other);
	target_rules__init(&other);
	assert_int_equal(target_rules__add(&other, "long=comm:^abcdefghijklmnop$", err, sizeof(err)), 0); /* 16 > 15 */
	assert_int_equal(target_rules__add(&other, "part=comm:postgres", err, sizeof(err)), 0);
	assert_int_equal(target_rules__exec_literals(&other, comm, svc, 8), 0);
	target_rules__free(&other);
}

/* A pid rule means the process that has the pid when loupe starts, never a later one that reuses it. */
static void test_pid_pinned_to_start_time(void **state)
{
	struct target_rules *tr = *state;
	char spec[64];
	unsigned long long self_start;

	assert_int_equal(proc_start_ticks(getpid(), &self_start), 0);
	snprintf(spec, sizeof(spec), "me=pid:%d", getpid());
	assert_int_equal(add(tr, spec), 0);
	assert_int_equal(add(tr, "gone=pid:4194303"), 0); /* above any default pid_max: no such process */
	assert_int_equal(target_rules__pin_pids(tr), 1);

	struct proc_ident id = {.pid = getpid(), .comm = "x", .start_ticks = self_start};
	assert_int_equal(target_rules__match(tr, &id), 1);
	id.start_ticks = self_start + 1; /* same pid, another process */
	assert_int_equal(target_rules__match(tr, &id), 0);
	id.pid = 4194303;
	for (unsigned long long st = 0; st < 3; st++) {
		id.start_ticks = st;
		assert_int_equal(target_rules__match(tr, &id), 0);
	}
}

static void test_cgroup_prefix(void **state)
{
	struct target_rules *tr = *state;

	assert_int_equal(add(tr, "a=cgroup:/a/b"), 0);
	assert_int_equal(add(tr, "svc=cgroup:/system.slice/api.service/"), 0);
	assert_int_equal(match_cgroup(tr, "/a/b"), 1);
	assert_int_equal(match_cgroup(tr, "/a/b/c"), 1);
	assert_int_equal(match_cgroup(tr, "/a/b/c/d"), 1);
	assert_int_equal(match_cgroup(tr, "/a/bc"), 0);
	assert_int_equal(match_cgroup(tr, "/a"), 0);
	assert_int_equal(match_cgroup(tr, "/x/a/b"), 0);
	assert_int_equal(match_cgroup(tr, ""), 0);
	/* A trailing slash in the rule means the same directory. */
	assert_int_equal(match_cgroup(tr, "/system.slice/api.service"), 2);
	assert_int_equal(match_cgroup(tr, "/system.slice/api.service/worker"), 2);
	assert_int_equal(match_cgroup(tr, "/system.slice/api.services"), 0);

	/* "/" is the root: every process is under it. */
	struct target_rules root;
	target_rules__init(&root);
	assert_int_equal(add(&root, "all=cgroup:/"), 0);
	assert_int_equal(match_cgroup(&root, "/"), 1);
	assert_int_equal(match_cgroup(&root, "/user.slice/session-1.scope"), 1);
	target_rules__free(&root);
}

/* ---- /proc readers ---- */

/* Field 22 (starttime) of /proc/PID/stat, parsed here independently of the module. */
static unsigned long long stat_field22(pid_t pid)
{
	char path[64], *text = NULL;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	text = calloc(1, 4096);
	assert_non_null(text);
	assert_true(fread(text, 1, 4095, f) > 0);
	fclose(f);
	char *p = strrchr(text, ')'); /* comm is field 2, in parentheses, and may contain both */
	assert_non_null(p);
	char *save = NULL, *tok = strtok_r(p + 1, " ", &save);
	for (int field = 3; field < 22 && tok; field++)
		tok = strtok_r(NULL, " ", &save);
	assert_non_null(tok);
	unsigned long long v = strtoull(tok, NULL, 10);
	free(text);
	return v;
}

/* A pid that existed and is gone: fork, reap. */
static pid_t dead_pid(void)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	return pid;
}

static void test_proc_ident_self(void **state)
{
	struct target_rules *tr = *state;
	struct proc_ident id;
	struct proc_ident_buf b = {0};
	char exe[PATH_MAX], cmdline[4096] = "";

	/* Ground truth this test sets or knows: the thread name, argv, the binary's path. */
	assert_int_equal(prctl(PR_SET_NAME, "loupe-ut-self"), 0);
	for (int i = 0; i < test_argc; i++)
		snprintf(cmdline + strlen(cmdline), sizeof(cmdline) - strlen(cmdline), "%s%s", i ? " " : "",
			 test_argv[i]);
	assert_non_null(realpath(test_argv[0], exe));

	/* Only comm is needed: the other fields are not read. */
	assert_int_equal(add(tr, "self=comm:^loupe-ut-self$"), 0);
	assert_int_equal(proc_ident__read(getpid(), tr, &id, &b), 0);
	assert_int_equal(id.pid, getpid());
	assert_string_equal(id.comm, "loupe-ut-self");
	assert_null(id.cmdline);
	assert_null(id.exe);
	assert_null(id.cgroup);
	assert_int_equal(target_rules__match(tr, &id), 1);

	/* Now every kind. */
	assert_int_equal(add(tr, "x=cmdline:^$"), 0);
	assert_int_equal(add(tr, "x=exe:/nonexistent"), 0);
	assert_int_equal(add(tr, "x=cgroup:/nonexistent"), 0);
	assert_int_equal(proc_ident__read(getpid(), tr, &id, &b), 0);
	assert_string_equal(id.comm, "loupe-ut-self");
	assert_non_null(id.cmdline);
	assert_string_equal(id.cmdline, cmdline);
	assert_non_null(id.exe);
	assert_string_equal(id.exe, exe);
	/* cgroup v2: the "0::" line of /proc/self/cgroup, an absolute path */
	assert_non_null(id.cgroup);
	assert_int_equal(id.cgroup[0], '/');
	assert_null(strchr(id.cgroup, '\n'));

	/* The reader and the matcher agree on the process's own cgroup. */
	char spec[4200];
	snprintf(spec, sizeof(spec), "mine=cgroup:%s", id.cgroup);
	assert_int_equal(add(tr, spec), 0);
	struct proc_ident by_cgroup = {.pid = 1, .comm = "other", .cgroup = id.cgroup};
	assert_int_equal(target_rules__match(tr, &by_cgroup), 3);
	proc_ident_buf__free(&b);
	proc_ident_buf__free(&b); /* idempotent */
}

static void test_proc_ident_gone(void **state)
{
	struct target_rules *tr = *state;
	struct proc_ident id;
	struct proc_ident_buf b = {0};
	unsigned long long ticks = 12345;

	assert_int_equal(target_rules__add_defaults(tr), 0);
	pid_t pid = dead_pid();
	assert_int_equal(proc_ident__read(pid, tr, &id, &b), -ENOENT);
	assert_int_equal(proc_start_ticks(pid, &ticks), -ENOENT);
	assert_int_equal(ticks, 12345); /* untouched */
	proc_ident_buf__free(&b);
}

static void test_start_ticks(void **state)
{
	unsigned long long self = 0, child_ticks = 0;

	assert_int_equal(proc_start_ticks(getpid(), &self), 0);
	assert_true(self > 0);
	assert_int_equal(self, stat_field22(getpid()));

	/* proc_stat_read: this process is running, and its parent is getppid() */
	char st = 0;
	pid_t ppid = 0;
	unsigned long long start = 0;
	assert_int_equal(proc_stat_read(getpid(), &st, &ppid, &start), 0);
	assert_int_equal(st, 'R');
	assert_int_equal(ppid, getppid());
	assert_int_equal(start, self);

	/* A child whose comm has spaces and parentheses, the case that breaks naive stat parsers. */
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_NAME, "a) b (c) 1 2 3");
		char c = 'r';
		if (write(ready[1], &c, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	char c;
	assert_int_equal(read(ready[0], &c, 1), 1);
	int rc = proc_start_ticks(pid, &child_ticks);
	unsigned long long want = stat_field22(pid);
	char comm[64] = "";
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	int comm_rc = read_line(path, comm, sizeof(comm));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(ready[0]);
	close(ready[1]);

	assert_int_equal(comm_rc, 0);
	assert_string_equal(comm, "a) b (c) 1 2 3");
	assert_int_equal(rc, 0);
	assert_int_equal(child_ticks, want);
	assert_true(child_ticks >= self);
}

int main(int argc, char **argv)
{
	test_argc = argc;
	test_argv = argv;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_parse_valid, rules_setup, rules_teardown),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test_setup_teardown(test_too_many, rules_setup, rules_teardown),
		cmocka_unit_test_setup_teardown(test_match_order, rules_setup, rules_teardown),
		cmocka_unit_test_setup_teardown(test_defaults, rules_setup, rules_teardown),
		cmocka_unit_test_setup_teardown(test_pid_pinned_to_start_time, rules_setup, rules_teardown),
		cmocka_unit_test_setup_teardown(test_exec_literals, rules_setup, rules_teardown),
		cmocka_unit_test_setup_teardown(test_exe_and_pid, rules_setup, rules_teardown),
		cmocka_unit_test_setup_teardown(test_cgroup_prefix, rules_setup, rules_teardown),
		cmocka_unit_test_setup_teardown(test_proc_ident_self, rules_setup, rules_teardown),
		cmocka_unit_test_setup_teardown(test_proc_ident_gone, rules_setup, rules_teardown),
		cmocka_unit_test(test_start_ticks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
