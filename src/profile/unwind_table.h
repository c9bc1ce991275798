/* SPDX-License-Identifier: BSD-2-Clause */
/* Unwind tables: the call frame information (CFI) of one ELF file compiled into the rows of include/unwind.h,
 * which bpf/profiler.bpf.c walks to unwind native stacks built without frame pointers (Debian's python3.11 and
 * postgres, libc, libpython).
 *
 * Rules come from elfutils libdw, never from an interpreter of CFA programs of loupe's own: FDEs are listed with
 * dwarf_next_cfi() (each FDE's initial location decoded per its CIE's 'R' pointer encoding: absolute or
 * pc-relative), then each FDE's range is walked row by row, dwarf_cfi_addrframe() at each row's start and
 * dwarf_frame_info() for where it ends. .eh_frame is read first; .debug_frame (when the file has one) fills only
 * addresses no .eh_frame FDE covers. Where FDEs overlap, the one starting first keeps its range up to its end.
 * Each row is translated (anything else is UW_CFA_UNSUP: the BPF walk stops there, the stack is incomplete):
 *   CFA  rsp + off -> UW_CFA_RSP, rbp + off -> UW_CFA_RBP (off must fit s16); the PLT expression binutils gives
 *        .plt and .plt.sec (breg7 off; breg16 0; lit15; and; litN; ge; lit3; shl; plus) -> UW_CFA_PLT with
 *        cfa_off = off and rbp_off = N; other registers and other expressions: UW_CFA_UNSUP;
 *   ra   (DWARF register 16) undefined -> UW_CFA_END (_start, a thread's first frame); else it must be saved at
 *        CFA - 8;
 *   rbp  same value or undefined (the x86-64 ABI's default) -> UW_RBP_SAME; saved at CFA + N -> UW_RBP_CFA with
 *        rbp_off = N / 8 (N a multiple of 8, N / 8 within s8); value, register and expression rules: UNSUP;
 *   a signal frame (CIE augmentation 'S': __restore_rt) -> UW_CFA_UNSUP.
 * Consecutive rows with identical rules are merged. Addresses between FDEs get a UW_CFA_NONE row at the end of
 * the FDE before them (so does the end of the last FDE); addresses below the first FDE have no row at all
 * (unwind_table__find() returns NULL): both mean "no rule, use the frame pointer" to the BPF side.
 *
 * A file with no CFI (no .eh_frame with FDEs, no .debug_frame) is not an error: 0 and an empty table (n 0, rows
 * NULL), which the BPF side treats as "frame pointers" (unwind.h: row_count 0). A .debug_frame libdw cannot read
 * is skipped (the .eh_frame rows are kept); an FDE libdw cannot evaluate becomes one UW_CFA_UNSUP row. Errors:
 * -ENOEXEC (not an ELF file, no section headers), -ENOTSUP (not x86-64 ELF64, or an FDE pointer encoding other
 * than absolute/pc-relative), -EINVAL (malformed CFI), -ERANGE (an address above 4 GiB: rows hold u32 pcs),
 * -ENOMEM, or the -errno of open(). err gets a one-line reason; it names a file by its basename only (DESIGN.md
 * section 3: no paths in logs).
 *
 * Costs (measured on this project's VM, Linux 6.18, 2 vCPU, gcc -O2, elfutils 0.188, 2026-12-05). Method: a
 * throw-away program linked with this module, libdw's x86-64 backend loaded by a first call on /bin/true, then
 * unwind_table__from_file() 7 times per file with CLOCK_MONOTONIC around each call, median (page cache warm);
 * rows after merging (UW_CFA_NONE gap rows included), 8 bytes each; peak RSS growth of a fresh process building
 * one table (getrusage; the mapped CFI sections and libdw's FDE cache included):
 *   file                              FDEs    rows    bytes    build time (min-max)    peak RSS
 *   /usr/bin/python3.11 (Debian)      10 221  64 575  516 600  30-39 ms, median 31 ms  +3.7 MiB
 *   postgres 15 (Debian)              17 108  73 460  587 680  46-50 ms, median 47 ms  +5.3 MiB
 *   libc.so.6 (Debian 12)              3 713  28 274  226 192  11-12 ms, median 11 ms  +1.5 MiB
 *   libpython3.11.so.1.0 (pyenv)       5 359  63 583  508 664  26-28 ms, median 26 ms  +2.9 MiB
 * About three quarters of the time is libdw's (dwarf_cfi_addrframe() runs the CIE's and the FDE's instructions
 * again for every row; callgrind, postgres). UW_CFA_UNSUP rows in these files (tests/unit/test_unwind_table.c
 * prints them): python3.11 5 and libpython 4 (CFA rsp + 49 744 to 65 616: 48-64 KiB stack buffers, past s16),
 * libc 8 (__restore_rt's signal frame; __longjmp, __longjmp_cancel and ____longjmp_chk: CFA on rdi; setcontext:
 * CFA on rdx; __libc_vfork: ra in rdi; buffered_vfprintf: CFA past s16), postgres none.
 * unwind_table__find() is a binary search over the rows. Not thread-safe (libdw's error state is per thread,
 * but a table is built by one thread and then read-only). */
#ifndef LOUPE_UNWIND_TABLE_H
#define LOUPE_UNWIND_TABLE_H
#include <gelf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "unwind.h"

/* The rows of one file, sorted by pc (strictly increasing). */
struct unwind_table {
	struct unwind_row *rows;
	size_t n;
	size_t fdes;	    /* FDEs with a non-empty range, .eh_frame and .debug_frame */
	size_t unsupported; /* rows marked UW_CFA_UNSUP */
	bool from_debug_frame; /* some rows came from .debug_frame */
};

/* The table of elf (opened by the caller, and still its to elf_end()). *t is overwritten (left empty on error).
 * 0 or -errno, err (errlen bytes, may be NULL) then saying why. */
int unwind_table__from_elf(Elf *elf, struct unwind_table *t, char *err, size_t errlen);
/* The same for the file at path. */
int unwind_table__from_file(const char *path, struct unwind_table *t, char *err, size_t errlen);
void unwind_table__free(struct unwind_table *t);
/* The last row with pc <= vaddr (vaddr an ELF virtual address), NULL if none: the BPF program's search. */
const struct unwind_row *unwind_table__find(const struct unwind_table *t, uint64_t vaddr);

#endif
