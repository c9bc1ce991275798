/* SPDX-License-Identifier: BSD-2-Clause */
/* Snapshots of /proc/PID/maps: a process's executable mappings, with the symbol table of every mapped file, kept
 * after the process exited.
 *
 * proc_maps__snapshot() reads /proc/PID/maps and keeps the executable mappings (start, end, file offset, dev,
 * inode, path) and, at once, the symbol table of every mapped file (from the cache, symcache.h). The snapshot
 * owns copies of all it needs: it stays usable after the process exited, so a short-lived process's samples are
 * still symbolised. Take it while the process lives (at exec, or at its first sample) and proc_maps__refresh()
 * it when an address falls outside every mapping (proc_maps__lookup() does so itself, at most every
 * SYM_REFRESH_MIN_NS, only for addresses that can be user code, and never once the pid was reused: the process
 * start time is checked). Measured under the reference workload: with a 100 ms limit and no address check,
 * re-reading the maps of Python and PostgreSQL processes was a quarter of the daemon's CPU.
 *
 * Addresses: runtime address -> file offset (addr - start + pgoff) -> ELF virtual address through the PT_LOAD
 * segment holding that offset (vaddr = off - p_offset + p_vaddr). This is right for PIE and non-PIE executables
 * and for shared libraries alike, whatever the load bias, and for files mapped in several pieces.
 *
 * Files are opened as /proc/PID/root/PATH (a containerised process's own file system), else through
 * /proc/PID/map_files/START-END (a deleted or replaced file), else PATH as is; a path is used only if it names a
 * regular file with the inode in the maps line, so a same-named file elsewhere (the host's, a newer version)
 * never lends its symbols (/proc/PID/root/PATH is tried once more without that check: overlayfs may report other
 * inode numbers). [vdso] gets loupe's own vDSO's symbols.
 *
 * Privacy (DESIGN.md section 3): sym_mapping.name is a basename and may be exported; sym_mapping.path is for
 * opening files and must never be.
 *
 * Cost: a snapshot of a process with 10 executable mappings (libc, libpython, ...) takes 4.6-5.4 ms with a cold
 * cache, ~80 us once its files' tables are cached (reading /proc/PID/maps dominates). */
#ifndef LOUPE_PROCMAPS_H
#define LOUPE_PROCMAPS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/util.h"
#include "profile/symcache.h"

#define SYM_REFRESH_MIN_NS NSEC_PER_SEC	/* a snapshot is re-read on a miss at most every second */
/* Addresses that can be user code: at or above Debian's default vm.mmap_min_addr, below the top of the largest
 * (5-level) user address space. Others are garbage from frame-pointer walks through code built without frame
 * pointers (CPython, PostgreSQL) and never cause a re-read of the maps. */
#define SYM_USER_ADDR_MIN 0x10000ull
#define SYM_USER_ADDR_END (1ull << 56)

struct proc_maps;

enum sym_mapping_kind {
	SYM_MAP_FILE,	/* a file: path set */
	SYM_MAP_ANON,	/* anonymous (JIT code, or any code written at run time) */
	SYM_MAP_VDSO,	/* [vdso] */
	SYM_MAP_OTHER,	/* another bracketed name: [vsyscall], [stack], ... */
};

/* One executable mapping of a snapshot; read-only for callers. */
struct sym_mapping {
	uint64_t start, end, pgoff;
	uint64_t inode;
	unsigned dev_major, dev_minor;
	enum sym_mapping_kind kind;
	const char *path;		/* as in /proc/PID/maps, " (deleted)" removed: never export it */
	const char *name;		/* basename of path, or "[anon]", "[vdso]", ...: exportable */
	const struct sym_table *table;	/* ELF symbols, or NULL (not an ELF, unreadable, anonymous) */
};

/* Snapshot of pid's executable mappings, with their symbol tables loaded into c (which must outlive it).
 * NULL with *err = -errno (-ESRCH: no such process). err may be NULL. */
struct proc_maps *proc_maps__snapshot(struct sym_cache *c, pid_t pid, int *err);
/* The same from the text of a maps file (tests, or maps captured earlier); files are opened by path only
 * (no /proc/PID/root), refresh does nothing. */
struct proc_maps *proc_maps__parse(struct sym_cache *c, pid_t pid, const char *text, int *err);
/* Read /proc/PID/maps again (new libraries, new JIT regions). 0, or -ESRCH when the process is gone or its
 * pid now belongs to another process: the snapshot is then kept as it was and never read again. */
int proc_maps__refresh(struct proc_maps *m);
void proc_maps__free(struct proc_maps *m);
pid_t proc_maps__pid(const struct proc_maps *m);
/* The pid in the process's own pid namespace: what a JIT inside a container names its perf map after. */
pid_t proc_maps__nspid(const struct proc_maps *m);
/* 1 while /proc/PID may still be read for this snapshot (a snapshot, and its process not gone). */
int proc_maps__live(const struct proc_maps *m);
size_t proc_maps__count(const struct proc_maps *m);
const struct sym_mapping *proc_maps__mapping(const struct proc_maps *m, size_t i);
/* The mapping holding addr, or NULL. */
const struct sym_mapping *proc_maps__find(const struct proc_maps *m, uint64_t addr);
/* The same, but on a miss for an address that can be user code, re-read the maps first (at most every
 * SYM_REFRESH_MIN_NS). */
const struct sym_mapping *proc_maps__lookup(struct proc_maps *m, uint64_t addr);
/* Open a mapped file for reading: a regular file only (O_NONBLOCK: a FIFO planted at the path must not hang the
 * agent), and with ino set, only that inode (the same path may name another file on the host, or a newer version).
 * An fd, or -errno (-ENOENT: not the file the process mapped). */
int proc_open_mapped(const char *path, uint64_t ino);
/* The file a live process pid maps at [start, end) from path (inode ino), tried in order: the process's own view of
 * the path, /proc/PID/root/PATH (containers; needs ptrace access, CAP_SYS_PTRACE for other users' processes); the
 * mapped file itself through /proc/PID/map_files (deleted or replaced files; needs CAP_SYS_ADMIN, which loupe
 * usually does not keep); the process's view without the inode check (overlayfs may show other inode numbers).
 * An fd, or -errno. */
int proc_open_mapping(pid_t pid, uint64_t start, uint64_t end, const char *path, uint64_t ino);
/* addr inside mapping mp -> offset in its file and, when the file's PT_LOAD segments are known, ELF virtual
 * address. Returns 1 with both set, 0 with only *file_off set, -ERANGE if addr is outside mp. */
int sym_mapping__translate(const struct sym_mapping *mp, uint64_t addr, uint64_t *file_off, uint64_t *vaddr);

#endif
