/* SPDX-License-Identifier: BSD-2-Clause */
/* The daemon's life: check the host, open and attach every feature of the collector table, serve HTTP, pump
 * ring buffers until SIGINT/SIGTERM (or a bounded session's end), then detach everything. */
#ifndef LOUPE_DAEMON_H
#define LOUPE_DAEMON_H
#include <stdbool.h>
#include <stdint.h>

struct loupe;
struct loupe_options;

/* A bounded session instead of the daemon (loupe profile): no HTTP server, a deadline, then finish(). */
struct run_session {
	unsigned seconds;
	/* Called about once a second while it runs (done false), and once at its end (done true). May be NULL. */
	void (*progress)(void *arg, uint64_t elapsed_ns, bool done);
	/* Called at the end, every feature still attached: write the result; 0 or -errno (it reports why). */
	int (*finish)(struct loupe *L, void *arg);
	void *arg;
};

/* Run until stopped (sess NULL: the daemon) or until the session's end. Takes the rules of opt (frees them).
 * The process exit status: 0, or 1 when something failed (logged). */
int daemon__run(const struct loupe_options *opt, const struct run_session *sess);

#endif
