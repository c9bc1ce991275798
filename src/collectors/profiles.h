/* SPDX-License-Identifier: BSD-2-Clause */
/* What the profiler collector (src/collectors/profiler.c) serves to its readers, the HTTP endpoints
 * (src/server/httpd.c) and `loupe profile` (src/cli/profile_cmd.c): the continuous profile of the last minutes and
 * on-demand sessions. Errors are -errno with a one-line reason in err; the reader decides what they mean to it
 * (the HTTP server: -EINVAL is 400, -ENODEV, -EBUSY and -ESHUTDOWN are 503, anything else 500). */
#ifndef LOUPE_PROFILES_H
#define LOUPE_PROFILES_H
#include <stddef.h>

#include "lib/util.h"
#include "profile/profile.h"

struct loupe;

enum profile_format { PROFILE_FORMAT_PPROF, PROFILE_FORMAT_SVG, PROFILE_FORMAT_FOLDED };

struct profile_request {
	enum profile_kind kind;
	enum profile_format format;
	unsigned window_s;	/* the continuous profile of the last window_s seconds (rounded up to minutes) */
	const char *service;	/* NULL: every service */
	const char *focus;	/* NULL, or an extended regular expression: only the stacks with a frame it matches
				 * (pprof's -focus); a bad one is -EINVAL */
};

/* Build the continuous profile asked for into out (content type in *ctype): 0, or -errno with err set:
 * -ENODEV (the profiler or the off-CPU part is not running), -EINVAL (no such service), -ENOMEM. */
int profiler__profile(struct loupe *L, const struct profile_request *q, struct buf *out, const char **ctype,
		      char *err, size_t errlen);

/* Records the BPF side could not send since the profiler started (ring buffer full: the reader fell behind, or no
 * task storage for a blocked thread): what a profile is missing. 0 when the profiler is not running. */
uint64_t profiler__lost_records(struct loupe *L);

/* Start an on-demand session of seconds at hz: its id (>= 0), or -errno with err set (as above, and -EBUSY when
 * every session slot is taken, -EIO when no perf event could be attached). done(arg) is called from the main loop
 * when the result is ready; then take it. */
int profiler__session_start(struct loupe *L, const struct profile_request *q, unsigned seconds, unsigned hz,
			    void (*done)(void *arg), void *arg, char *err, size_t errlen);

/* The finished session's result into out (out NULL: discard the session, finished or not): 0, or -errno with err
 * set: -ENOENT (no such session), -ESHUTDOWN (loupe stopped before it finished), or the error that ended it. */
int profiler__session_take(struct loupe *L, int id, struct buf *out, const char **ctype, char *err, size_t errlen);

#endif
