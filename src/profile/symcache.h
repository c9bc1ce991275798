/* SPDX-License-Identifier: BSD-2-Clause */
/* The symbol cache: everything symbolisation loads once and keeps, shared by all the snapshots of one owner.
 *
 *  - ELF function tables (elfsyms.h) by GNU build-id, so processes mapping the same library, or copies of the
 *    same file, share one table (files without a build-id get a table each), and a (dev, inode) index that
 *    spares reopening a file a snapshot already saw. Tables live as long as the cache: no eviction.
 *  - [vdso]: loupe's own vDSO (the kernel maps one image into every process), read from memory.
 *  - mapping names (basenames, "[vdso]", ...), interned so frames may point at them across refreshes.
 *  - the kernel's table (kallsyms.h), read at the first kernel address.
 *  - the perf map (perfmap.h) of each process that had JIT code.
 *
 * Not thread-safe: one thread owns a cache and its snapshots. */
#ifndef LOUPE_SYMCACHE_H
#define LOUPE_SYMCACHE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "profile/elfsyms.h"
#include "profile/kallsyms.h"
#include "profile/perfmap.h"

#define SYM_DEBUG_ROOT "/usr/lib/debug"

struct sym_cache;

struct sym_cache_opts {
	const char *debug_root;		/* default SYM_DEBUG_ROOT */
	const char *kallsyms_path;	/* default "/proc/kallsyms" */
	/* When set, perf maps are read as PERF_MAP_DIR/perf-PID.map only (tests); by default
	 * /proc/PID/root/tmp/perf-NSPID.map, then /tmp/perf-PID.map. */
	const char *perf_map_dir;
};

struct sym_cache_stats {
	size_t tables;		/* ELF symbol tables held (one per build-id) */
	size_t symbols;		/* functions in them */
	size_t elf_loads;	/* ELF files opened and read */
	size_t debug_files;	/* tables read from separate debug files */
	size_t perf_map_reads;	/* perf map (re)reads */
};

/* Cache: opts may be NULL (defaults); the strings are copied. NULL on allocation failure. */
struct sym_cache *sym_cache__new(const struct sym_cache_opts *opts);
void sym_cache__free(struct sym_cache *c);
void sym_cache__stats(const struct sym_cache *c, struct sym_cache_stats *st);

/* The symbol table of the ELF file at path (opened as is), loaded or found in the cache by build-id.
 * NULL with *err = -errno (-ENOEXEC: not an ELF). err may be NULL. */
const struct sym_table *sym_cache__elf(struct sym_cache *c, const char *path, int *err);
/* The same for the file open as fd, read from root + path (root "" for the host: the debug file search looks
 * under root first); 0 or -errno (-ENOEXEC: not an ELF). */
int sym_cache__load_fd(struct sym_cache *c, int fd, const char *root, const char *path,
		       const struct sym_table **out);
/* The table a file (device maj:min, inode ino) was given by sym_cache__remember_file(): 1 with *t set (NULL:
 * not an ELF, not to be tried again), 0 when the file is not known. */
int sym_cache__file_table(const struct sym_cache *c, unsigned maj, unsigned min, uint64_t ino,
			  const struct sym_table **t);
void sym_cache__remember_file(struct sym_cache *c, unsigned maj, unsigned min, uint64_t ino,
			      const struct sym_table *t);
/* The table of loupe's own vDSO, or NULL (read once). */
const struct sym_table *sym_cache__vdso(struct sym_cache *c);
/* s, interned for the cache's life; NULL when out of memory. */
const char *sym_cache__intern(struct sym_cache *c, const char *s);

/* The kernel's table, kallsyms read at the first call; NULL when it could not be read. */
const struct ksyms *sym_cache__ksyms(struct sym_cache *c);
/* Read kallsyms again (after modules were loaded). 0 or -errno; the old table is kept on failure. */
int sym_cache__reload_kernel(struct sym_cache *c);

/* The perf map of process pid (nspid: its pid in its own namespace; live: /proc/PID may be read), read again if
 * it grew. A missing file is looked for again only after a second; with probe false only a map already known
 * is used. NULL when none. */
struct perf_map *sym_cache__perf_map(struct sym_cache *c, pid_t pid, pid_t nspid, bool live, bool probe);
/* Forget the perf map state of pid (call it when the process exited and its samples were symbolised). */
void sym_cache__drop_pid(struct sym_cache *c, pid_t pid);

#endif
