/* Symbolisation of sampled stacks in userspace (issue 5, point 3): user addresses through a snapshot of the
 * process's executable mappings and the ELF symbols of the mapped files, kernel addresses through /proc/kallsyms,
 * JIT-compiled code through perf map files (/tmp/perf-PID.map).
 *
 * User addresses
 *  - proc_maps__snapshot() reads /proc/PID/maps and keeps the executable mappings (start, end, file offset,
 *    dev, inode, path) and, at once, the symbol table of every mapped file. The snapshot owns copies of all it
 *    needs: it stays usable after the process exited, so a short-lived process's samples are still symbolised.
 *    Take it while the process lives (at exec, or at its first sample) and proc_maps__refresh() it when an
 *    address falls outside every mapping (sym_resolve_user() does so itself, at most every
 *    SYM_REFRESH_MIN_NS, only for addresses that can be user code, and never once the pid was reused: the
 *    process start time is checked). Measured under the reference workload: with a 100 ms limit and no address
 *    check, re-reading the maps of Python and PostgreSQL processes was a quarter of the daemon's CPU.
 *  - runtime address -> file offset (addr - start + pgoff) -> ELF virtual address through the PT_LOAD segment
 *    holding that offset (vaddr = off - p_offset + p_vaddr). This is right for PIE and non-PIE executables and
 *    for shared libraries alike, whatever the load bias, and for files mapped in several pieces.
 *  - Files are opened as /proc/PID/root/PATH (a containerised process's own file system), else through
 *    /proc/PID/map_files/START-END (a deleted or replaced file), else PATH as is; a path is used only if it
 *    names a regular file with the inode in the maps line, so a same-named file elsewhere (the host's, a newer
 *    version) never lends its symbols (/proc/PID/root/PATH is tried once more without that check: overlayfs
 *    may report other inode numbers).
 *  - Symbols (libelf): functions (STT_FUNC, STT_GNU_IFUNC) of .symtab, else of a separate debug file's .symtab,
 *    else of .dynsym (Debian's python3.11 and postgres are stripped: .dynsym only, so their static functions
 *    resolve to "python3.11+0x..." rather than to a wrong exported neighbour). Debug files are looked up by
 *    GNU build-id (DEBUG_ROOT/.build-id/xx/yyyy.debug) then by .gnu_debuglink (DIR/NAME, DIR/.debug/NAME,
 *    DEBUG_ROOT/DIR/NAME), and used only when their build-id matches (the debuglink CRC is not computed: it
 *    would read the whole file). Tables are sorted by address; a symbol covers [value, value + size), and one
 *    of size 0 reaches the next symbol or the end of its section. Several symbols at one address keep one name:
 *    global before weak before local, then the fewest leading underscores, then the shortest.
 *  - Tables are cached in a struct sym_cache by GNU build-id (files without one: by dev and inode), so processes
 *    mapping the same library, or copies of the same file, share one table; a (dev, inode) index spares
 *    reopening a file a snapshot already saw. Tables live as long as the cache: no eviction.
 *  - [vdso] is symbolised from loupe's own vDSO (one image per kernel, the same in every process).
 *  - C++ (and Rust) names are not demangled: they stay mangled ("_ZN3foo3barEv"); a pprof or flame-graph viewer
 *    may demangle them. Also not done: inlined frames (DWARF), MiniDebugInfo (.gnu_debugdata, a Fedora habit),
 *    the debuglink CRC.
 *
 * Kernel addresses: /proc/kallsyms text symbols (t T w W), sorted, binary search. kallsyms has no sizes: a
 * function reaches the next symbol (data symbols count as ends, never as answers), and the last one of a module
 * or of the core kernel reaches at most 64 KiB.
 * Module symbols have the module as their frame module, in brackets ("[nf_tables]"; the core kernel is
 * "[kernel]"). Without CAP_SYSLOG (or with kptr_restrict=2) every address reads 0: the table is then
 * "restricted" and every kernel frame is "[kernel]".
 *
 * JIT code: on a miss in an anonymous executable mapping (or one with no ELF symbols), the perf map
 * /proc/PID/root/tmp/perf-NSPID.map (else /tmp/perf-PID.map) is read, and read again when it grew (only the
 * new lines) or was replaced; a missing one is looked for again at most once a second. An address in no
 * mapping (even after the refresh) is looked up in a perf map already read, never by opening files: broken
 * unwinds make many such addresses. Lines are "START SIZE NAME" in hex, with or without "0x"; a later line for
 * the same start wins (the JIT reused the code).
 *
 * Unresolved frames are never empty:
 *   file mapping      "BASENAME+0xFILEOFFSET"  (libfoo.so.1+0x1a2b3: the offset in the file, the same
 *                                              whatever the load address, so frames of one function merge)
 *   anonymous         "[anon]+0xOFFSET"        (offset in the mapping; no perf map entry)
 *   [vdso] and others "[vdso]+0xOFFSET", "[stack]+0x..."  (the mapping's own bracketed name)
 *   no mapping        "[unknown]"
 *   kernel            "[kernel]": no address: a raw kernel address is what kptr_restrict hides (it gives away
 *                                   the KASLR base), means nothing on another host, and as a frame name would
 *                                   split one unknown frame into thousands.
 *
 * Privacy (DESIGN.md section 3): symbol names and file basenames are code identifiers and may appear in
 * profiles; full paths may not. Frame names and modules carry basenames only; sym_mapping.path is for opening
 * files and must never be exported.
 *
 * Costs (measured on this project's VM, Linux 6.18, 2 vCPU, gcc -O2, 2026-11-26). Method: a throw-away program
 * linked with this module; resolution: 10^6 random addresses spread over one library's executable mapping of
 * a snapshot of the program itself, CLOCK_MONOTONIC around the loop, median of 5 runs; loads: a fresh cache, one
 * sym_cache__elf() (or ksyms__load()) call, median of 5 (page cache warm):
 *   user address, table cached (mapping search + PT_LOAD translation + symbol search):  65-80 ns
 *     (the same for a miss: the "file+0xOFF" fallback is formatted by hand, snprintf() doubled it)
 *   kernel address (121 911 kallsyms entries):                                           130-150 ns
 *   loading symbols: libc.so.6 through its installed debug file's .symtab (3 706 functions)  2.6-3.9 ms
 *                    libpython3.11.so.1.0 .dynsym (1 472 functions)                          0.4-0.6 ms
 *                    /usr/bin/python3.11 .dynsym (1 473 functions)                           0.3-0.7 ms
 *                    postgres 15 .dynsym (9 552 functions)                                    5.3-6.7 ms
 *                    /proc/kallsyms (122k lines; ~45 ms of it is the kernel writing the text) 105-130 ms
 *   snapshot of a process with 10 executable mappings (libc, libpython, ...): 4.6-5.4 ms with a cold cache,
 *   ~80 us once its files' tables are cached (reading /proc/PID/maps dominates).
 * Memory: 16 bytes per function plus its name.
 *
 * Not thread-safe: one thread owns a cache and its snapshots. */
#ifndef LOUPE_SYMBOLIZE_H
#define LOUPE_SYMBOLIZE_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SYM_NAME_MAX 512	/* longest frame name kept in a struct sym_frame (longer ones are cut) */
#define SYM_REFRESH_MIN_NS 1000000000ull /* a snapshot is re-read on a miss at most every second */
/* Addresses that can be user code: at or above Debian's default vm.mmap_min_addr, below the top of the largest
 * (5-level) user address space. Others are garbage from frame-pointer walks through code built without frame
 * pointers (CPython, PostgreSQL) and never cause a re-read of the maps. */
#define SYM_USER_ADDR_MIN 0x10000ull
#define SYM_USER_ADDR_END (1ull << 56)
#define SYM_DEBUG_ROOT "/usr/lib/debug"

struct sym_cache;
struct sym_table;
struct proc_maps;
struct ksyms;
struct perf_map;

struct sym_cache_opts {
	const char *debug_root;		/* default SYM_DEBUG_ROOT */
	const char *kallsyms_path;	/* default "/proc/kallsyms" */
	/* When set, perf maps are read as PERF_MAP_DIR/perf-PID.map only (tests); by default
	 * /proc/PID/root/tmp/perf-NSPID.map, then /tmp/perf-PID.map. */
	const char *perf_map_dir;
};

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

enum sym_frame_kind {
	SYM_FRAME_ELF,		/* an ELF symbol */
	SYM_FRAME_PERF_MAP,	/* a perf map entry (JIT) */
	SYM_FRAME_KERNEL,	/* a kallsyms symbol */
	SYM_FRAME_UNRESOLVED,	/* the fallback name above */
};

/* A resolved frame. name and module are never NULL nor empty. They point into the frame itself or into the
 * cache's tables: valid until the frame is reused, the cache is freed or sym_cache__reload_kernel() runs. */
struct sym_frame {
	const char *name;
	const char *module;	/* basename, "[kernel]", "[nf_tables]", "[anon]", "[vdso]", "[unknown]" */
	uint64_t offset;	/* address - symbol start; for unresolved frames the offset in the name (or 0) */
	enum sym_frame_kind kind;
	char buf[SYM_NAME_MAX];
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
/* The table's GNU build-id in lower-case hex into hex (at least 41 bytes for SHA-1 ids); its length in bytes,
 * 0 when the file has none. */
size_t sym_table__build_id(const struct sym_table *t, char *hex, size_t n);
size_t sym_table__count(const struct sym_table *t);
/* 1 when the functions came from a separate debug file. */
int sym_table__from_debug_file(const struct sym_table *t);
/* Name of the function containing ELF virtual address vaddr, and vaddr's offset in it; NULL if none. */
const char *sym_table__find(const struct sym_table *t, uint64_t vaddr, uint64_t *offset);
/* ELF virtual address of file offset off through the PT_LOAD segments; 0 or -ENOENT (no segment holds it). */
int sym_table__vaddr(const struct sym_table *t, uint64_t off, uint64_t *vaddr);

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
size_t proc_maps__count(const struct proc_maps *m);
const struct sym_mapping *proc_maps__mapping(const struct proc_maps *m, size_t i);
/* The mapping holding addr, or NULL. */
const struct sym_mapping *proc_maps__find(const struct proc_maps *m, uint64_t addr);
/* addr inside mapping mp -> offset in its file and, when the file's PT_LOAD segments are known, ELF virtual
 * address. Returns 1 with both set, 0 with only *file_off set, -ERANGE if addr is outside mp. */
int sym_mapping__translate(const struct sym_mapping *mp, uint64_t addr, uint64_t *file_off, uint64_t *vaddr);

/* Resolve a user address of m's process into f. Returns 1 when a symbol was found, 0 when f holds the
 * unresolved fallback name. Stacks hold return addresses: pass addr - 1 for every frame but the innermost, or a
 * call that ends its function is charged to the next one (perf and pprof do the same). m may be NULL (the
 * frame is then "[unknown]"). */
int sym_resolve_user(struct sym_cache *c, struct proc_maps *m, uint64_t addr, struct sym_frame *f);
/* Forget the perf map state of pid (call it when the process exited and its samples were symbolised). */
void sym_cache__drop_pid(struct sym_cache *c, pid_t pid);
/* Resolve a kernel address (kallsyms is read at the first call). Returns 1 or 0 as above. */
int sym_resolve_kernel(struct sym_cache *c, uint64_t addr, struct sym_frame *f);
/* Read kallsyms again (after modules were loaded). 0 or -errno; the old table is kept on failure. */
int sym_cache__reload_kernel(struct sym_cache *c);

/* kallsyms on its own. */
struct ksyms *ksyms__load(const char *path, int *err);
struct ksyms *ksyms__parse(const char *text, size_t n);	/* NULL on allocation failure */
void ksyms__free(struct ksyms *ks);
size_t ksyms__count(const struct ksyms *ks);
/* 1 when every address read 0 (kptr_restrict, no CAP_SYSLOG): nothing can be resolved. */
int ksyms__restricted(const struct ksyms *ks);
/* Name of the kernel function holding addr, its module ("[kernel]" or "[mod]") and addr's offset in it. */
const char *ksyms__find(const struct ksyms *ks, uint64_t addr, const char **module, uint64_t *offset);

/* perf map files on their own. perf_map__load() returns NULL with *err = -errno. */
struct perf_map *perf_map__load(const char *path, int *err);
/* Read the file again if it grew (only the new lines) or was replaced; 1 if it changed, 0 if not, -errno. */
int perf_map__update(struct perf_map *pm);
void perf_map__free(struct perf_map *pm);
size_t perf_map__count(const struct perf_map *pm);
const char *perf_map__find(const struct perf_map *pm, uint64_t addr, uint64_t *offset);

#endif
