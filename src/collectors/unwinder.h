/* SPDX-License-Identifier: BSD-2-Clause */
/* The profiler's unwinding state in the kernel: the rules of every file profiled processes map (unwind_rows), each
 * process's mappings and CPython (unwind_procs, unwind_slot) and the interpreters' layouts (py_layouts), as
 * include/unwind.h describes them. The profiler tells it about a process when it first sees one and when the BPF
 * side found an address outside the mappings it knows; it loads what is missing.
 *
 * Files are compiled once (src/profile/unwind_table.c), keyed by device and inode, and their rows stay for
 * loupe's life: the pool (UNWIND_ROWS_DEFAULT rows) is filled in order and never compacted; when it is full, a
 * new file's code falls back to frame pointers and unwinder__stats() says how many files that was. Processes with
 * identical mappings (PostgreSQL's backends, forked from one postmaster) share one slot of unwind_procs.
 *
 * Not thread-safe: the profiler's poll owns it. */
#ifndef LOUPE_UNWINDER_H
#define LOUPE_UNWINDER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/util.h"
#include "profile/procmaps.h"

struct unwinder;

struct unwinder_stats {
	uint64_t rows_used, rows_max;	   /* in unwind_rows */
	uint64_t files, files_failed;	   /* files compiled; files whose rules could not be read (no CFI...) */
	uint64_t files_pool_full;	   /* files left to frame pointers: no room in the pool */
	uint64_t fdes_refused;		   /* FDEs left to frame pointers: registers libdw would size frames by */
	uint64_t procs, slots;		   /* processes with rules loaded; distinct mapping sets */
	uint64_t py_procs, py_unreadable;  /* CPython processes walked; CPython processes of a version not read */
	uint64_t load_ns;		   /* time spent compiling and loading rules, in total */
	char py_unreadable_why[160];	   /* the last one's reason, e.g. "CPython 3.9: no layout for this version" */
};

/* fds of the profiler object's maps unwind_rows, unwind_procs, unwind_slot and py_layouts (the layouts are written
 * at once). NULL with errno set. */
struct unwinder *unwinder__new(int rows_fd, uint32_t rows_max, int procs_fd, int slot_fd, int layouts_fd);
void unwinder__free(struct unwinder *u);

/* Compile new files only for the next ns (the caller holds the daemon's lock: a scrape or a session waits while a
 * file is compiled, ~10-100 ms each); files left over are compiled by later calls. */
void unwinder__budget(struct unwinder *u, uint64_t ns);
/* Load the rules of m's files and its CPython, and point the BPF side at them for m's process. 0, -EAGAIN when
 * files were left for later (the process is unwound with what is loaded: call again), or -errno (the process then
 * keeps frame-pointer stacks). Called again for the same process (its mappings changed), it replaces what it had. */
int unwinder__add(struct unwinder *u, const struct proc_maps *m);
/* The process is gone (or its snapshot dropped): forget it. */
void unwinder__forget(struct unwinder *u, pid_t pid);
/* Forget processes that exited (at most once every few seconds; call it from the poll). */
void unwinder__sweep(struct unwinder *u);
/* Whether pid runs a CPython loupe walks, and its layout (NULL otherwise). */
const struct py_layout *unwinder__py_layout(const struct unwinder *u, pid_t pid);
void unwinder__stats(const struct unwinder *u, struct unwinder_stats *st);

#endif
