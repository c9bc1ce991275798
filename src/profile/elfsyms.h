/* SPDX-License-Identifier: BSD-2-Clause */
/* ELF function tables (libelf): the functions of one file, sorted by address, and its PT_LOAD segments, which
 * turn a file offset into the ELF virtual address symbols are given in.
 *
 * Functions are STT_FUNC and STT_GNU_IFUNC symbols of .symtab, else of a separate debug file's .symtab (found by
 * debugfile.h), else of .dynsym (Debian's python3.11 and postgres are stripped: .dynsym only, so their static
 * functions resolve to nothing here rather than to a wrong exported neighbour). A symbol covers
 * [value, value + size), and one of size 0 reaches the next symbol or the end of its section. Several symbols at
 * one address keep one name: global before weak before local, then the fewest leading underscores, then the
 * shortest. C++ (and Rust) names stay mangled; inlined frames (DWARF) are not read.
 *
 * Costs (symbolize.h has the method): a lookup, with the mapping search and the PT_LOAD translation, 65-80 ns;
 * loading libc.so.6 through its debug file's .symtab (3 706 functions) 2.6-3.9 ms, libpython3.11.so.1.0
 * .dynsym (1 472) 0.4-0.6 ms, postgres 15 .dynsym (9 552) 5.3-6.7 ms. Memory: 16 bytes per function plus its
 * name. */
#ifndef LOUPE_ELFSYMS_H
#define LOUPE_ELFSYMS_H
#include <gelf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SYM_BUILD_ID_MAX 64	/* bytes of a GNU build-id kept (SHA-1 ids are 20) */

struct sym_table;

/* The table of e: segments from e, functions from dbg's .symtab when dbg is not NULL (the table is then "from
 * a debug file"), else from e's .symtab, else from its .dynsym (none: an empty table). id[0..id_len) is e's
 * build-id (elf_build_id()). 0 or -errno. */
int sym_table__read(Elf *e, Elf *dbg, const unsigned char *id, size_t id_len, struct sym_table **out);
void sym_table__free(struct sym_table *t);
/* true when t's build-id is id[0..len) (never for len 0). */
bool sym_table__has_build_id(const struct sym_table *t, const unsigned char *id, size_t len);

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

/* e's GNU build-id (NT_GNU_BUILD_ID note) into id[0..cap): its length, 0 when it has none. */
size_t elf_build_id(Elf *e, unsigned char *id, size_t cap);
/* e's first section of type type, named name (NULL: any name), or NULL. */
Elf_Scn *elf_find_section(Elf *e, Elf64_Word type, const char *name);

#endif
