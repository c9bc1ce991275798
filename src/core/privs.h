/* SPDX-License-Identifier: BSD-2-Clause */
/* Least privilege (docs/privileges.md). loupe needs its capabilities mostly to start: loading programs, creating
 * maps and attaching hooks. Once every feature is attached, privs__drop() keeps only what the running daemon still
 * uses, each for a reason it names, drops every other capability (effective, permitted, inheritable, ambient and,
 * when it may, the bounding set), optionally switches to an unprivileged user, and sets no_new_privs. It runs
 * before any other thread starts: capabilities are per thread, and threads created later inherit the reduced set. */
#ifndef LOUPE_PRIVS_H
#define LOUPE_PRIVS_H
#include <stdbool.h>
#include <stddef.h>

struct loupe;
struct buf;

/* What the rest of the daemon's life needs, from its options and what started. */
struct privs_needs {
	bool sessions;	     /* on-demand CPU profiling sessions (the HTTP server): perf events opened later */
	bool kernel_symbols; /* CPU or off-CPU profiles: /proc/kallsyms is read (and re-read) for kernel frames */
	bool stats_windows;  /* --bpf-stats sampled with bpf_enable_stats() working: windows opened every 20 s */
};

/* Drop to what needs asks for; user (a name or a numeric uid, may be NULL) switches to that user keeping those
 * capabilities (only when running as root). 0, or -errno with err filled (the daemon then stops: running with
 * more privileges than it says would be worse). */
int privs__drop(const struct privs_needs *needs, const char *user, char *err, size_t errlen);

/* ,"privileges":{...} for /status: uid, no_new_privs, the capabilities kept with their reasons. */
void privs__status_json(struct buf *b);

#endif
