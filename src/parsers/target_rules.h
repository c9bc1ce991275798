/* SPDX-License-Identifier: BSD-2-Clause */
/* Target selection: which processes belong to which service. Pure (no BPF), so it is unit-tested directly.
 * Syntax (DESIGN.md section 4): NAME=comm:REGEX | cmdline:REGEX | exe:PATH | pid:N | cgroup:PATH. */
#ifndef LOUPE_TARGET_RULES_H
#define LOUPE_TARGET_RULES_H
#include <regex.h>
#include <stdbool.h>
#include <sys/types.h>

#include "targets.h"

#define SERVICE_NAME_MAX 32
#define TARGET_RULES_MAX 32

/* Default rules (used when no --target is given). */
#define DEFAULT_API_REGEX "^([^ ]*/)?(python[0-9.]* ([^ ]+ )*(-m )?)?([^ ]*/)?(uvicorn|gunicorn|hypercorn)([: ]|$)"
#define DEFAULT_POSTGRES_REGEX "^postgres$"

enum selector_kind { SEL_COMM, SEL_CMDLINE, SEL_EXE, SEL_PID, SEL_CGROUP };

struct target_rule {
	int service; /* 1-based service id */
	enum selector_kind kind;
	char *arg; /* regex source, path */
	pid_t pid;
	unsigned long long pid_start; /* pid rules, when pinned: start time (ticks) of the process meant */
	bool pid_pinned;
	regex_t re;
	bool has_re;
};

struct target_rules {
	struct target_rule rule[TARGET_RULES_MAX];
	int nrules;
	char service[LOUPE_MAX_SERVICES + 1][SERVICE_NAME_MAX]; /* [1..nservices] */
	int nservices;
};

/* What a process looks like to the selectors; strings may be NULL when unreadable. */
struct proc_ident {
	pid_t pid;
	const char *comm;
	const char *cmdline; /* argv joined by spaces */
	const char *exe;
	const char *cgroup; /* cgroup v2 path ("0::" line) */
	unsigned long long start_ticks; /* /proc/PID/stat starttime, 0 = unknown */
};

void target_rules__init(struct target_rules *tr);
void target_rules__free(struct target_rules *tr);
/* Add one "NAME=KIND:ARG" spec. On error returns -EINVAL (or -E2BIG, -ENOMEM) and writes a one-line reason. */
int target_rules__add(struct target_rules *tr, const char *spec, char *err, size_t errlen);
/* The defaults used when no --target is given. */
int target_rules__add_defaults(struct target_rules *tr);
/* Pin every pid rule to the process that has that pid now (its start time), so that a later process reusing
 * the pid never matches. Returns how many pid rules name no live process (those never match). */
int target_rules__pin_pids(struct target_rules *tr);
/* The leading rules of the form comm:^literal$ (plain name, at most 15 bytes), in order, up to max: BPF can
 * apply them itself at exec without changing which rule matches first. Returns how many were written. */
int target_rules__exec_literals(const struct target_rules *tr, char (*comm)[16], unsigned *service, int max);
/* Service id (1-based) of the first rule that matches, or 0. */
int target_rules__match(const struct target_rules *tr, const struct proc_ident *id);
/* Rules that need a field, so callers read only what is needed. */
bool target_rules__needs(const struct target_rules *tr, enum selector_kind kind);
const char *target_rules__service(const struct target_rules *tr, int service);
/* The id (1..nservices) of the service named name, or -ENOENT. */
int target_rules__service_id(const struct target_rules *tr, const char *name);

/* /proc reader: fills id from /proc/PID with storage in the caller's buffers. Returns 0 or -errno (-ENOENT when
 * the process is gone). start_ticks receives /proc/PID/stat field 22 (clock ticks since boot). */
struct proc_ident_buf {
	char comm[32];
	char exe[4096];
	char *cmdline;
	char *cgroup;
};
int proc_ident__read(pid_t pid, const struct target_rules *tr, struct proc_ident *id, struct proc_ident_buf *b);
void proc_ident_buf__free(struct proc_ident_buf *b);
int proc_start_ticks(pid_t pid, unsigned long long *ticks);
/* State letter (R, S, Z...), parent pid and start time from /proc/PID/stat, each optional (NULL); 0 or -errno
 * (-ENOENT when gone). */
int proc_stat_read(pid_t pid, char *state, pid_t *ppid, unsigned long long *start_ticks);
/* The same from the text of a /proc/PID/stat file: 0, or -EINVAL when it has no field 22. */
int proc_stat_parse(const char *text, char *state, pid_t *ppid, unsigned long long *start_ticks);

#endif
