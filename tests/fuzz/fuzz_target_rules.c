// SPDX-License-Identifier: BSD-2-Clause
/* libFuzzer target for src/parsers/target_rules.c: the --target NAME=KIND:ARG selectors, matching processes
 * against them, the literal comm rules BPF applies at exec, and the /proc/PID/stat parser (proc_stat_parse(),
 * what proc_stat_read() runs on the file; a process chooses its comm, spaces and ')' included).
 * The input is lines; the first byte of each says what it is:
 *   'D'           add the default rules
 *   '+SPEC'       target_rules__add(SPEC)
 *   '?PID\tCOMM\tCMDLINE\tEXE\tCGROUP'   a process to match ("\x01" as a field: NULL, unreadable)
 *   '#STAT'       the text of a /proc/PID/stat ('\x01' stands for a newline); the byte after '#' picks which of
 *                 state, ppid, start may be NULL
 * Invariants: an accepted spec adds exactly one rule, of a valid service name, whose kind, argument (and pid) are the
 * spec's and which re-adds (as NAME=KIND:ARG printed back) to the same rule; a rejected one changes nothing and
 * says why; service names and ids round-trip; a match is the service of the first rule an independent check of
 * each selector accepts, 0 when none does; each literal comm rule is a plain name of at most 15 bytes whose match,
 * with only that comm known, is the service of the first literal rule with the same name; proc_stat_parse() finds
 * field 22 (and 4) counting from the last ')' and fills only what it is given. */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_file.h"
#include "parsers/target_rules.h"

static const char *const kind_name[] = {[SEL_COMM] = "comm", [SEL_CMDLINE] = "cmdline", [SEL_EXE] = "exe",
					[SEL_PID] = "pid", [SEL_CGROUP] = "cgroup"};

static void check_service_name(const char *s)
{
	size_t n = strlen(s);
	CHECK(n >= 1 && n < SERVICE_NAME_MAX);
	CHECK(isalpha((unsigned char)s[0]) || s[0] == '_');
	for (size_t i = 0; i < n; i++)
		CHECK(isalnum((unsigned char)s[i]) || strchr("_-.", s[i]));
}

static bool same_rule(const struct target_rule *a, const struct target_rule *b)
{
	return a->kind == b->kind && !strcmp(a->arg, b->arg) && a->pid == b->pid && a->has_re == b->has_re;
}

/* cgroup:PREFIX holds PATH when PATH is PREFIX (trailing slashes aside) or below it. */
static bool oracle_under(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);
	while (n > 1 && prefix[n - 1] == '/')
		n--;
	if (n == 1 && prefix[0] == '/')
		return path[0] == '/';
	return strlen(path) >= n && !memcmp(path, prefix, n) && (path[n] == '/' || !path[n]);
}

static bool oracle_rule(const struct target_rule *r, const struct proc_ident *id)
{
	switch (r->kind) {
	case SEL_PID: return id->pid == r->pid;
	case SEL_EXE: return id->exe && !strcmp(id->exe, r->arg);
	case SEL_CGROUP: return id->cgroup && oracle_under(id->cgroup, r->arg);
	case SEL_COMM:
	case SEL_CMDLINE: {
		const char *s = r->kind == SEL_COMM ? id->comm : id->cmdline;
		regex_t re;
		if (!s)
			return false;
		CHECK(regcomp(&re, r->arg, REG_EXTENDED | REG_NOSUB) == 0); /* it compiled when added */
		bool m = !regexec(&re, s, 0, NULL, 0);
		regfree(&re);
		return m;
	}
	}
	CHECK(!"rule kind");
	return false;
}

static void add_spec(struct target_rules *tr, const char *spec)
{
	char err[256] = "";
	int before = tr->nrules, services = tr->nservices;
	/* glibc's regcomp() takes time and memory exponential in intervals and stacked repetitions ("a{99}",
	 * "a++++++"): an operator's own command line, not untrusted input. Keep the fuzzer on what target_rules.c
	 * does with a spec. */
	size_t reps = 0;
	for (const char *p = spec; *p; p++)
		reps += *p == '*' || *p == '+' || *p == '?' || *p == '{';
	if (strlen(spec) > 160 || strchr(spec, '{') || reps > 6)
		return;
	int rc = target_rules__add(tr, spec, err, sizeof(err));
	CHECK(rc == 0 || rc == -EINVAL || rc == -E2BIG || rc == -ENOMEM);
	if (rc) {
		CHECK(err[0] && memchr(err, '\0', sizeof(err)));
		CHECK(tr->nrules == before && tr->nservices == services);
		return;
	}
	CHECK(tr->nrules == before + 1);
	CHECK(tr->nservices == services || tr->nservices == services + 1);
	const struct target_rule *r = &tr->rule[before];
	CHECK(r->service >= 1 && r->service <= tr->nservices);
	const char *svc = target_rules__service(tr, r->service);
	check_service_name(svc);
	CHECK(target_rules__service_id(tr, svc) == r->service);
	/* The spec is NAME=KIND:ARG exactly. */
	size_t nl = strlen(svc), kl = strlen(kind_name[r->kind]);
	CHECK(!strncmp(spec, svc, nl) && spec[nl] == '=');
	CHECK(!strncmp(spec + nl + 1, kind_name[r->kind], kl) && spec[nl + 1 + kl] == ':');
	CHECK(!strcmp(spec + nl + 2 + kl, r->arg) && r->arg[0]);
	CHECK(r->has_re == (r->kind == SEL_COMM || r->kind == SEL_CMDLINE));
	if (r->kind == SEL_PID)
		CHECK(r->pid > 0 && r->pid <= 4194304 && r->arg[strspn(r->arg, " \t\n\v\f\r+0123456789")] == '\0');
	if (r->kind == SEL_EXE || r->kind == SEL_CGROUP)
		CHECK(r->arg[0] == '/');
	CHECK(target_rules__needs(tr, r->kind));

	/* Printed back, it is the same rule of the same service. */
	static struct target_rules again;
	char spec2[512];
	target_rules__init(&again);
	snprintf(spec2, sizeof(spec2), "%s=%s:%s", svc, kind_name[r->kind], r->arg);
	CHECK(target_rules__add(&again, spec2, err, sizeof(err)) == 0);
	CHECK(again.nrules == 1 && same_rule(&again.rule[0], r) && !strcmp(target_rules__service(&again, 1), svc));
	target_rules__free(&again);
}

/* Split s at tabs into up to n fields; "\x01" stands for NULL. */
static void fields(char *s, const char **f, int n)
{
	for (int i = 0; i < n; i++) {
		char *tab = s ? strchr(s, '\t') : NULL;
		if (tab)
			*tab = '\0';
		f[i] = s && strcmp(s, "\x01") ? s : NULL;
		s = tab ? tab + 1 : NULL;
	}
}

static void match(const struct target_rules *tr, char *line)
{
	const char *f[5];
	fields(line, f, 5);
	struct proc_ident id = {.pid = f[0] ? (pid_t)strtol(f[0], NULL, 10) : 0, .comm = f[1], .cmdline = f[2],
				.exe = f[3], .cgroup = f[4]};
	if ((id.cmdline && strlen(id.cmdline) > 256) || (id.comm && strlen(id.comm) > 64))
		return; /* glibc's regexec() with back-references is exponential in the subject */
	int s = target_rules__match(tr, &id), want = 0;
	for (int i = 0; i < tr->nrules && !want; i++)
		if (oracle_rule(&tr->rule[i], &id))
			want = tr->rule[i].service;
	CHECK(s == want);
	CHECK(s >= 0 && s <= tr->nservices);
}

static void literals(const struct target_rules *tr)
{
	char comm[TARGET_RULES_MAX][16];
	unsigned service[TARGET_RULES_MAX];
	memset(comm, 0x55, sizeof(comm));
	int n = target_rules__exec_literals(tr, comm, service, TARGET_RULES_MAX);
	CHECK(n >= 0 && n <= tr->nrules);
	for (int i = 0; i < n; i++) {
		const struct target_rule *r = &tr->rule[i];
		size_t len = strnlen(comm[i], 16);
		CHECK(len >= 1 && len <= 15);
		for (size_t j = len; j < 16; j++)
			CHECK(comm[i][j] == '\0'); /* BPF compares all 16 bytes */
		CHECK(r->kind == SEL_COMM && r->arg[0] == '^' && strlen(r->arg) == len + 2);
		CHECK(!memcmp(r->arg + 1, comm[i], len) && r->arg[len + 1] == '$');
		CHECK(service[i] == (unsigned)r->service);
		int first = i;
		for (int j = 0; j < i; j++)
			if (!strcmp(comm[j], comm[i])) {
				first = j;
				break;
			}
		struct proc_ident id = {.pid = -1, .comm = comm[i]};
		CHECK(target_rules__match(tr, &id) == (int)service[first]);
	}
}

static void stat_parse(const char *line)
{
	unsigned which = line[0] ? (unsigned char)line[0] : 0;
	char *text = strdup(line[0] ? line + 1 : line);
	CHECK(text);
	for (char *p = text; *p; p++)
		if (*p == '\x01')
			*p = '\n';
	char state = 'x';
	pid_t ppid = -12345;
	unsigned long long start = 12345;
	int rc = proc_stat_parse(text, which & 1 ? &state : NULL, which & 2 ? &ppid : NULL, which & 4 ? &start : NULL);
	CHECK(rc == 0 || rc == -EINVAL);
	/* Independently: the fields after the last ')', one space before each. */
	const char *p = strrchr(text, ')');
	int spaces = 0;
	const char *f4 = NULL, *f22 = NULL;
	for (const char *q = p; q && *q && !f22; q++)
		if (*q == ' ' && ++spaces) {
			if (spaces == 2)
				f4 = q + 1;
			if (spaces == 20)
				f22 = q + 1;
		}
	CHECK((rc == 0) == (f22 != NULL));
	if (which & 1)
		CHECK(state == (p && p[1] == ' ' ? p[2] : '?'));
	if (which & 2)
		CHECK(ppid == (f4 ? (pid_t)strtol(f4, NULL, 10) : -12345));
	if (which & 4)
		CHECK(start == (f22 ? strtoull(f22, NULL, 10) : 12345));
	free(text);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("LOUPE_FUZZ_SEEDS");
	if (!dir)
		return 0;
	static const char *const seeds[] = {
		"D\n?123\tpostgres\tpostgres: checkpointer\t/usr/lib/postgresql/15/bin/postgres\t/system.slice/x\n"
		"?7\tpython3\t/usr/bin/python3 -m uvicorn app:app\t/usr/bin/python3.11\t/user.slice\n"
		"?8\tgrep\tgrep uvicorn\t\x01\t\x01\n",
		"+api=cmdline:uvicorn|gunicorn\n+db=comm:^postgres$\n+db=comm:^pg-bouncer$\n+web=exe:/usr/sbin/nginx\n"
		"+k=cgroup:/kubepods/\n+one=pid:42\n+db=comm:^postgres$\n"
		"?42\tpostgres\tx\t/usr/sbin/nginx\t/kubepods/pod1\n?9\tpg-bouncer\t\x01\t\x01\t/kubepods\n",
		"+1bad=comm:x\n+a=kind:x\n+a=pid:0\n+a=pid:99999999\n+a=exe:rel\n+a=comm:(\n+a=comm:\n+=comm:x\nnoeq\n"
		"+a_.-b=cgroup:/\n?1\t\x01\t\x01\t\x01\t/any\n",
		"#\x07" "1234 (my (odd) comm) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10\n"
		"#\x07" "5 (a) Z 0\n#\x01" "no paren at all\n",
	};
	char name[16];
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		snprintf(name, sizeof(name), "%02zu", i);
		seed_bytes(dir, name, seeds[i], strlen(seeds[i]));
	}
	char *stat = NULL;
	size_t n = 0;
	uint8_t *b = slurp("/proc/self/stat", 1024, &n);
	if (b && (stat = malloc(n + 3))) {
		stat[0] = '#';
		stat[1] = 7;
		memcpy(stat + 2, b, n);
		for (size_t i = 2; i < n + 2; i++)
			if (stat[i] == '\n')
				stat[i] = '\x01';
		seed_bytes(dir, "self-stat", stat, n + 2);
	}
	free(stat);
	free(b);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct target_rules tr;
	char *text = malloc(size + 1);
	CHECK(text);
	memcpy(text, data, size);
	text[size] = '\0';
	target_rules__init(&tr);
	for (char *line = text, *nl; line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		switch (line[0]) {
		case 'D': {
			int before = tr.nrules, rc = target_rules__add_defaults(&tr);
			CHECK(rc == 0 || rc == -E2BIG);
			if (!rc)
				CHECK(tr.nrules == before + 2);
			break;
		}
		case '+': add_spec(&tr, line + 1); break;
		case '?': match(&tr, line + 1); break;
		case '#': stat_parse(line + 1); break;
		}
	}
	literals(&tr);
	for (int s = 1; s <= tr.nservices; s++)
		CHECK(target_rules__service_id(&tr, target_rules__service(&tr, s)) == s);
	CHECK(!strcmp(target_rules__service(&tr, 0), "unknown"));
	target_rules__free(&tr);
	free(text);
	return 0;
}
