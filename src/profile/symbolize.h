/* SPDX-License-Identifier: BSD-2-Clause */
/* Symbolisation of sampled stacks in userspace (issue 5, point 3): user addresses through a snapshot of the
 * process's executable mappings and the ELF symbols of the mapped files, kernel addresses through /proc/kallsyms,
 * JIT-compiled code through perf map files (/tmp/perf-PID.map). This header is the front: it resolves an address
 * to a frame, and includes the modules it combines, each of whose headers says what it promises:
 *   symcache.h   the cache that owns what is loaded (tables by build-id, names, kallsyms, perf maps)
 *   procmaps.h   /proc/PID/maps snapshots, kept after the process exits, and address translation
 *   elfsyms.h    ELF function tables (.symtab, .dynsym) and PT_LOAD segments
 *   debugfile.h  separate debug files, by build-id and .gnu_debuglink
 *   kallsyms.h   kernel symbols
 *   perfmap.h    perf map files of JIT compilers
 *
 * User addresses: the mapping holding the address (re-reading the maps on a miss, procmaps.h), then the ELF
 * symbol of its file. On a miss in an anonymous executable mapping (or one with no ELF symbols), the perf map
 * /proc/PID/root/tmp/perf-NSPID.map (else /tmp/perf-PID.map) is read, and read again when it grew or was
 * replaced; a missing one is looked for again at most once a second. An address in no mapping (even after the
 * refresh) is looked up in a perf map already read, never by opening files: broken unwinds make many such
 * addresses.
 *
 * Kernel addresses: kallsyms (kallsyms.h), read at the first kernel address. Module symbols have the module as
 * their frame module, in brackets ("[nf_tables]"; the core kernel is "[kernel]").
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
 * profiles; full paths may not. Frame names and modules carry basenames only.
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

#include "profile/elfsyms.h"
#include "profile/kallsyms.h"
#include "profile/perfmap.h"
#include "profile/procmaps.h"
#include "profile/symcache.h"

#define SYM_NAME_MAX 512	/* longest frame name kept in a struct sym_frame (longer ones are cut) */

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

/* Resolve a user address of m's process into f. Returns 1 when a symbol was found, 0 when f holds the
 * unresolved fallback name. Stacks hold return addresses: pass addr - 1 for every frame but the innermost, or a
 * call that ends its function is charged to the next one (perf and pprof do the same). m may be NULL (the
 * frame is then "[unknown]"). */
int sym_resolve_user(struct sym_cache *c, struct proc_maps *m, uint64_t addr, struct sym_frame *f);
/* Resolve a kernel address (kallsyms is read at the first call). Returns 1 or 0 as above. */
int sym_resolve_kernel(struct sym_cache *c, uint64_t addr, struct sym_frame *f);

#endif
