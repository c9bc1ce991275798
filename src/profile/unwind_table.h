/* SPDX-License-Identifier: BSD-2-Clause */
/* The unwinding rules of one ELF file, compiled from its call frame information (.eh_frame, and .debug_frame where
 * it covers what .eh_frame does not) into the rows include/unwind.h describes, for the BPF unwinder.
 *
 * The CFI programs are run by elfutils' libdw (dwarf_cfi_addrframe: the rule at an address, and the address range
 * it holds for), FDE by FDE, row by row; this file only enumerates the FDEs and translates libdw's rules:
 *   CFA = rsp/rbp + N                  -> UW_CFA_RSP / UW_CFA_RBP
 *   the PLT expression (rsp + N, + 8 past the entry's push; binutils' .plt/.plt.sec FDEs) -> UW_CFA_PLT
 *   return address undefined           -> UW_CFA_END (the outermost frame: _start, a thread's start)
 *   return address not at CFA - 8, another register's CFA, other expressions, signal frames -> UW_CFA_UNSUP
 *   rbp saved at CFA + N               -> UW_RBP_CFA; same value or undefined -> UW_RBP_SAME
 * Addresses no FDE covers get a UW_CFA_NONE row (the unwinder uses the frame pointer there). Consecutive rows with
 * the same rule are merged.
 *
 * Costs (this VM, 2026-12-05; scripts/bench-unwind.sh prints them): see docs/profiling.md, "Native unwinding". */
#ifndef LOUPE_UNWIND_TABLE_H
#define LOUPE_UNWIND_TABLE_H
#include <gelf.h>
#include <libelf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "unwind.h"

struct unwind_table {
	struct unwind_row *rows; /* sorted by pc */
	size_t n;
	size_t fdes;	    /* FDEs read (both sections) */
	size_t unsupported; /* rows marked UW_CFA_UNSUP */
	size_t refused;	    /* FDEs not read: their instructions name a register past 255, or one this reader does not
			     * know (libdw would size every frame by it); their code is unwound by frame pointers.
			     * Set on failure too (the only field then). */
	bool from_debug_frame; /* some rows came from .debug_frame */
};

/* The rules of elf into *t (zeroed first): 0, or -errno with a reason in err: -ENOENT (no CFI at all: the file's
 * code is unwound by frame pointers), -ERANGE (addresses past 4 GiB), -EINVAL (CFI libdw cannot read), -ENOMEM. */
int unwind_table__from_elf(Elf *elf, struct unwind_table *t, char *err, size_t errlen);
/* The same for the file at path. */
int unwind_table__from_file(const char *path, struct unwind_table *t, char *err, size_t errlen);
void unwind_table__free(struct unwind_table *t);
/* The row that applies at vaddr (the last with pc <= vaddr), or NULL: the BPF unwinder's search. */
const struct unwind_row *unwind_table__find(const struct unwind_table *t, uint64_t vaddr);

#endif
