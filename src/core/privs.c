// SPDX-License-Identifier: BSD-2-Clause
/* Least privilege after attach (src/core/privs.h), with libcap-ng. Which capability each feature needs was
 * measured (tests/bpf/test_privileges.py; docs/privileges.md): after attach, reading new targets' /proc entries
 * and binaries needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, on-demand CPU sessions CAP_PERFMON, kernel frame names
 * CAP_SYSLOG and re-opening BPF statistics windows CAP_SYS_ADMIN. Everything else done later (map reads and
 * updates, ring buffers, program statistics, links) goes through file descriptors the daemon already holds, which
 * the kernel does not check capabilities on again. */
#include "core/privs.h"
#include "lib/log.h"
#include "lib/util.h"

#include <cap-ng.h>
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define MAX_KEPT 8

static struct {
	bool dropped;
	unsigned nkept;
	struct kept {
		unsigned cap;
		const char *why;
	} kept[MAX_KEPT];
} state;

static bool held(unsigned cap)
{
	return capng_have_capability(CAPNG_EFFECTIVE, cap);
}

static void keep(unsigned cap, const char *why)
{
	for (unsigned i = 0; i < state.nkept; i++)
		if (state.kept[i].cap == cap)
			return; /* kept already, for the first reason */
	if (state.nkept < MAX_KEPT && held(cap))
		state.kept[state.nkept++] = (struct kept){cap, why};
}

/* user as a name or a numeric uid: 0, or -errno with err filled. */
static int lookup_user(const char *user, uid_t *uid, gid_t *gid, char *err, size_t errlen)
{
	errno = 0;
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		char *end;
		errno = 0;
		unsigned long n = strtoul(user, &end, 10);
		if (*user >= '0' && *user <= '9' && !*end && !errno && n < 4294967295UL) {
			*uid = (uid_t)n;
			*gid = (gid_t)n; /* a bare uid: its group of the same number, as in a container */
			return 0;
		}
		snprintf(err, errlen, "--user %s: no such user", user);
		return -ENOENT;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

int privs__drop(const struct privs_needs *needs, const char *user, char *err, size_t errlen)
{
	if (capng_get_caps_process()) {
		snprintf(err, errlen, "cannot read this process's capabilities: %s", strerror(errno));
		return -EPERM;
	}
	state.nkept = 0;
	keep(CAP_SYS_PTRACE, "reads the maps, memory, root and exe entries of new targets under proc (ptrace access)");
	keep(CAP_DAC_READ_SEARCH, "opens those entries and the targets' binaries whatever their owner");
	if (needs->sessions) {
		keep(CAP_PERFMON, "on-demand CPU profiling sessions open per-CPU perf events");
		if (!held(CAP_PERFMON))
			keep(CAP_SYS_ADMIN, "on-demand CPU profiling sessions open per-CPU perf events (no CAP_PERFMON)");
	}
	if (needs->kernel_symbols)
		keep(CAP_SYSLOG, "reads kernel symbol addresses (kallsyms) to name kernel frames in profiles");
	if (needs->stats_windows)
		keep(CAP_SYS_ADMIN, "opens a kernel BPF statistics window every 20 s (bpf_enable_stats(); "
				    "--bpf-stats always or off does without)");

	bool setpcap = held(CAP_SETPCAP);
	uid_t uid = 0;
	gid_t gid = 0;
	int rc;
	if (user && (rc = lookup_user(user, &uid, &gid, err, errlen)))
		return rc;
	if (user && geteuid() != 0) {
		snprintf(err, errlen, "--user %s: loupe must start as root to switch users (it runs as uid %u)", user,
			 (unsigned)geteuid());
		return -EPERM;
	}

	capng_clear(CAPNG_SELECT_BOTH);
	for (unsigned i = 0; i < state.nkept; i++) {
		capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, state.kept[i].cap);
		capng_update(CAPNG_ADD, CAPNG_BOUNDING_SET, state.kept[i].cap);
	}
	if (user) {
		/* setresgid, no supplementary groups, setresuid, keeping the selected capabilities across the change. */
		rc = capng_change_id((int)uid, (int)gid, CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING);
		if (rc) {
			snprintf(err, errlen, "--user %s: cannot switch to uid %u gid %u (libcap-ng error %d)", user,
				 (unsigned)uid, (unsigned)gid, rc);
			return -EPERM;
		}
	} else {
		/* The bounding set can shrink only with CAP_SETPCAP (root has it; a user with ambient capabilities
		 * usually not): then it stays as it was, which matters only to a program loupe would execute (none,
		 * and no_new_privs below). The inheritable set is emptied, which empties the ambient set with it. */
		rc = capng_apply(setpcap ? CAPNG_SELECT_BOTH : CAPNG_SELECT_CAPS);
		if (rc) {
			snprintf(err, errlen, "cannot drop capabilities (libcap-ng error %d: %s)", rc, strerror(errno));
			return -EPERM;
		}
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		snprintf(err, errlen, "cannot set no_new_privs: %s", strerror(errno));
		return -errno;
	}
	state.dropped = true;

	char names[256] = "";
	size_t off = 0;
	for (unsigned i = 0; i < state.nkept && off < sizeof(names); i++)
		off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? "," : "",
					capng_capability_to_name(state.kept[i].cap));
	log_info("privileges_dropped", "running as uid %u with %s; no_new_privs set", (unsigned)getuid(),
		 state.nkept ? names : "no capability");
	return 0;
}

void privs__status_json(struct buf *b)
{
	buf__printf(b, ",\"privileges\":{\"uid\":%u,\"gid\":%u,\"dropped\":%s,\"no_new_privs\":%s,\"kept\":{",
		    (unsigned)getuid(), (unsigned)getgid(), state.dropped ? "true" : "false",
		    prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? "true" : "false");
	for (unsigned i = 0; i < state.nkept && state.dropped; i++)
		buf__printf(b, "%s\"cap_%s\":\"%s\"", i ? "," : "", capng_capability_to_name(state.kept[i].cap),
			    state.kept[i].why);
	buf__puts(b, "}}");
}
