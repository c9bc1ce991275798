/* SPDX-License-Identifier: BSD-2-Clause */
/* Separate debug files: where distributions put the .symtab they strip from binaries (Debian's *-dbgsym
 * packages, Fedora's *-debuginfo), found the way gdb finds them.
 *
 * Looked up by GNU build-id (DEBUG_ROOT/.build-id/xx/yyyy.debug), then by .gnu_debuglink (DIR/NAME,
 * DIR/.debug/NAME, DEBUG_ROOT/DIR/NAME), each first under the process's root directory (a container's own file
 * system) and then on the host. A candidate is used only when it has a .symtab and its build-id matches the
 * binary's (when both have one); the debuglink CRC is not computed: it would read the whole file. Not done:
 * MiniDebugInfo (.gnu_debugdata, a Fedora habit). */
#ifndef LOUPE_DEBUGFILE_H
#define LOUPE_DEBUGFILE_H
#include <gelf.h>
#include <stddef.h>

struct debug_file;

/* The debug file of the ELF e, read from root + path (root "" for the host; path NULL: no debuglink search),
 * whose build-id is id[0..id_len), under the debug directory debug_root (SYM_DEBUG_ROOT by default). NULL when
 * none is found (or out of memory). */
struct debug_file *debug_file__find(Elf *e, const char *debug_root, const char *root, const char *path,
				    const unsigned char *id, size_t id_len);
/* Its ELF handle, with a .symtab; valid until debug_file__close(). */
Elf *debug_file__elf(const struct debug_file *d);
void debug_file__close(struct debug_file *d);

#endif
