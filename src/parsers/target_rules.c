// SPDX-License-Identifier: BSD-2-Clause
/* --target rules (src/parsers/target_rules.h): parsing and checking selectors, the default rules, matching a
 * process's identity (comm, cmdline, exe, pid, cgroup) read from /proc, and the literal comm rules applied in BPF. */
#include "parsers/target_rules.h"
#include "lib/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void target_rules__init(struct target_rules *tr)
{
	memset(tr, 0, sizeof(*tr));
}

void target_rules__free(struct target_rules *tr)
{
	if (!tr)
		return;
	for (int i = 0; i < tr->nrules; i++) {
		if (tr->rule[i].has_re)
			regfree(&tr->rule[i].re);
		free(tr->rule[i].arg);
	}
	tr->nrules = 0;
	tr->nservices = 0;
}

static bool valid_service_name(const char *s, size_t n)
{
	if (n == 0 || n >= SERVICE_NAME_MAX || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-' || s[i] == '.'))
			return false;
	return true;
}

static int service_id(struct target_rules *tr, const char *name, size_t n)
{
	for (int i = 1; i <= tr->nservices; i++)
		if (strlen(tr->service[i]) == n && !strncmp(tr->service[i], name, n))
			return i;
	if (tr->nservices >= LOUPE_MAX_SERVICES)
		return -E2BIG;
	tr->nservices++;
	memcpy(tr->service[tr->nservices], name, n);
	tr->service[tr->nservices][n] = '\0';
	return tr->nservices;
}

int target_rules__add(struct target_rules *tr, const char *spec, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		enum selector_kind kind;
	} kinds[] = {{"comm", SEL_COMM}, {"cmdline", SEL_CMDLINE}, {"exe", SEL_EXE}, {"pid", SEL_PID},
		     {"cgroup", SEL_CGROUP}};
	const char *eq = strchr(spec, '=');
	if (!eq) {
		snprintf(err, errlen, "bad target '%s': expected NAME=KIND:ARG (KIND is comm, cmdline, exe, pid or cgroup)",
			 spec);
		return -EINVAL;
	}
	if (!valid_service_name(spec, (size_t)(eq - spec))) {
		snprintf(err, errlen,
			 "bad target '%s': service name must be 1-31 of [A-Za-z0-9_.-], starting with a letter or '_'",
			 spec);
		return -EINVAL;
	}
	const char *colon = strchr(eq + 1, ':');
	int k = -1;
	for (size_t i = 0; colon && i < ARRAY_SIZE(kinds); i++)
		if ((size_t)(colon - eq - 1) == strlen(kinds[i].name) && !strncmp(eq + 1, kinds[i].name, strlen(kinds[i].name)))
			k = (int)i;
	if (k < 0) {
		snprintf(err, errlen, "bad target '%s': selector must be comm:, cmdline:, exe:, pid: or cgroup:", spec);
		return -EINVAL;
	}
	const char *arg = colon + 1;
	if (!*arg) {
		snprintf(err, errlen, "bad target '%s': empty %s selector", spec, kinds[k].name);
		return -EINVAL;
	}
	if (tr->nrules >= TARGET_RULES_MAX) {
		snprintf(err, errlen, "too many targets: at most %d --target rules", TARGET_RULES_MAX);
		return -E2BIG;
	}
	struct target_rule *r = &tr->rule[tr->nrules];
	memset(r, 0, sizeof(*r));
	r->kind = kinds[k].kind;
	switch (r->kind) {
	case SEL_PID: {
		char *end;
		errno = 0;
		long pid = strtol(arg, &end, 10);
		if (errno || *end || pid <= 0 || pid > 4194304) {
			snprintf(err, errlen, "bad target '%s': pid must be a positive number", spec);
			return -EINVAL;
		}
		r->pid = (pid_t)pid;
		break;
	}
	case SEL_EXE:
	case SEL_CGROUP:
		if (arg[0] != '/') {
			snprintf(err, errlen, "bad target '%s': %s must be an absolute path", spec, kinds[k].name);
			return -EINVAL;
		}
		break;
	case SEL_COMM:
	case SEL_CMDLINE: {
		int rc = regcomp(&r->re, arg, REG_EXTENDED | REG_NOSUB);
		if (rc) {
			char why[128];
			regerror(rc, &r->re, why, sizeof(why));
			snprintf(err, errlen, "bad target '%s': invalid regex: %s", spec, why);
			return -EINVAL;
		}
		r->has_re = true;
		break;
	}
	}
	r->arg = strdup(arg);
	if (!r->arg) {
		if (r->has_re)
			regfree(&r->re);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int svc = service_id(tr, spec, (size_t)(eq - spec));
	if (svc < 0) {
		if (r->has_re)
			regfree(&r->re);
		free(r->arg);
		snprintf(err, errlen, "too many services: at most %d", LOUPE_MAX_SERVICES);
		return svc;
	}
	r->service = svc;
	tr->nrules++;
	return 0;
}

int target_rules__add_defaults(struct target_rules *tr)
{
	char err[256];
	/* postgres first: a literal comm rule that leads can be applied in BPF at exec (exec_literals). The server
	 * of api is argv[0] (or the module/script run by python): a bare "(uvicorn|gunicorn|hypercorn)" would also
	 * match `grep uvicorn`, `pkill -f uvicorn` or `tail uvicorn.log`. */
	int rc = target_rules__add(tr, "postgres=comm:" DEFAULT_POSTGRES_REGEX, err, sizeof(err));
	return rc ? rc : target_rules__add(tr, "api=cmdline:" DEFAULT_API_REGEX, err, sizeof(err));
}

int target_rules__exec_literals(const struct target_rules *tr, char (*comm)[16], unsigned *service, int max)
{
	int n = 0;
	for (int i = 0; i < tr->nrules && n < max; i++) {
		const struct target_rule *r = &tr->rule[i];
		size_t len = r->kind == SEL_COMM ? strlen(r->arg) : 0;
		if (len < 3 || len - 2 > 15 || r->arg[0] != '^' || r->arg[len - 1] != '$')
			break;
		for (size_t j = 1; j < len - 1; j++)
			if (!(isalnum((unsigned char)r->arg[j]) || r->arg[j] == '_' || r->arg[j] == '-'))
				return n; /* '.' and the rest are regex syntax */
		memset(comm[n], 0, 16);
		memcpy(comm[n], r->arg + 1, len - 2);
		service[n] = (unsigned)r->service;
		n++;
	}
	return n;
}

static bool path_under(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);
	while (n > 1 && prefix[n - 1] == '/')
		n--;
	return !strncmp(path, prefix, n) && (path[n] == '\0' || path[n] == '/' || (n == 1 && prefix[0] == '/'));
}

int target_rules__match(const struct target_rules *tr, const struct proc_ident *id)
{
	for (int i = 0; i < tr->nrules; i++) {
		const struct target_rule *r = &tr->rule[i];
		bool m = false;
		switch (r->kind) {
		case SEL_PID: m = id->pid == r->pid && (!r->pid_pinned || r->pid_start == id->start_ticks); break;
		case SEL_COMM: m = id->comm && !regexec(&r->re, id->comm, 0, NULL, 0); break;
		case SEL_CMDLINE: m = id->cmdline && !regexec(&r->re, id->cmdline, 0, NULL, 0); break;
		case SEL_EXE: m = id->exe && !strcmp(id->exe, r->arg); break;
		case SEL_CGROUP: m = id->cgroup && path_under(id->cgroup, r->arg); break;
		}
		if (m)
			return r->service;
	}
	return 0;
}

bool target_rules__needs(const struct target_rules *tr, enum selector_kind kind)
{
	for (int i = 0; i < tr->nrules; i++)
		if (tr->rule[i].kind == kind)
			return true;
	return false;
}

const char *target_rules__service(const struct target_rules *tr, int service)
{
	return service >= 1 && service <= tr->nservices ? tr->service[service] : "unknown";
}

void proc_ident_buf__free(struct proc_ident_buf *b)
{
	free(b->cmdline);
	free(b->cgroup);
	b->cmdline = b->cgroup = NULL;
}

int proc_ident__read(pid_t pid, const struct target_rules *tr, struct proc_ident *id, struct proc_ident_buf *b)
{
	char path[64];
	memset(id, 0, sizeof(*id));
	id->pid = pid;
	proc_ident_buf__free(b);

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	int err = read_line(path, b->comm, sizeof(b->comm));
	if (err)
		return err == -ENOENT || err == -ESRCH ? -ENOENT : err;
	id->comm = b->comm;

	if (target_rules__needs(tr, SEL_CMDLINE)) {
		snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
		long n = read_file(path, &b->cmdline);
		if (n >= 0) {
			for (long i = 0; i < n; i++)
				if (b->cmdline[i] == '\0')
					b->cmdline[i] = ' ';
			while (n > 0 && b->cmdline[n - 1] == ' ')
				b->cmdline[--n] = '\0';
			id->cmdline = b->cmdline;
		}
	}
	if (target_rules__needs(tr, SEL_EXE)) {
		snprintf(path, sizeof(path), "/proc/%d/exe", pid);
		ssize_t n = readlink(path, b->exe, sizeof(b->exe) - 1);
		if (n > 0) {
			b->exe[n] = '\0';
			id->exe = b->exe;
		}
	}
	if (target_rules__needs(tr, SEL_CGROUP)) {
		snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
		char *text = NULL;
		if (read_file(path, &text) >= 0) {
			for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
				if (!strncmp(line, "0::", 3)) {
					b->cgroup = strdup(line + 3);
					break;
				}
			}
			free(text);
			id->cgroup = b->cgroup;
		}
	}
	return 0;
}

int target_rules__pin_pids(struct target_rules *tr)
{
	int missing = 0;
	for (int i = 0; i < tr->nrules; i++) {
		struct target_rule *r = &tr->rule[i];
		if (r->kind != SEL_PID)
			continue;
		r->pid_pinned = true;
		if (proc_start_ticks(r->pid, &r->pid_start)) {
			r->pid_start = ~0ull; /* no process has a start time this large: matches nothing */
			missing++;
		}
	}
	return missing;
}

int proc_start_ticks(pid_t pid, unsigned long long *ticks)
{
	return proc_stat_read(pid, NULL, NULL, ticks);
}

int proc_stat_read(pid_t pid, char *state, pid_t *ppid, unsigned long long *start_ticks)
{
	char path[64], *text = NULL;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	long n = read_file(path, &text);
	if (n < 0)
		return n == -ESRCH ? -ENOENT : (int)n;
	int err = proc_stat_parse(text, state, ppid, start_ticks);
	free(text);
	return err;
}

int proc_stat_parse(const char *text, char *state, pid_t *ppid, unsigned long long *start_ticks)
{
	/* comm (field 2) may contain spaces and parentheses: fields resume after the last ')'. */
	const char *p = strrchr(text, ')');
	int field = 2;
	if (state)
		*state = p && p[1] == ' ' ? p[2] : '?';
	for (; p && *p; p++) {
		if (*p != ' ')
			continue;
		field++;
		if (field == 4 && ppid)
			*ppid = (pid_t)strtol(p + 1, NULL, 10);
		if (field == 22) {
			if (start_ticks)
				*start_ticks = strtoull(p + 1, NULL, 10);
			return 0;
		}
	}
	return -EINVAL;
}

int target_rules__service_id(const struct target_rules *tr, const char *name)
{
	for (int s = 1; s <= tr->nservices; s++)
		if (!strcmp(target_rules__service(tr, s), name))
			return s;
	return -ENOENT;
}
