/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Full user stacks: native frames unwound in BPF from .eh_frame / .debug_frame rules compiled in userspace, and
 * CPython frames walked from the sampled thread's state. Shared by bpf/profiler.bpf.c, src/profile/unwind_table.c
 * (the rules of one ELF file), src/profile/pyruntime.c (interpreters: detection, layouts, code objects) and
 * src/collectors/profiler.c (which loads both into the maps below). x86-64 only, like the rest of the BPF side.
 *
 * Native unwinding: every file mapped executable by a profiled process gets a table of rows, sorted by pc (the
 * ELF virtual address where the row starts to apply; it applies up to the next row's pc). All tables live in one
 * array (unwind_rows), each file's rows contiguous; a process's executable mappings, sorted by start, say which
 * rows cover them (unwind_procs, by tgid). One step, from (ip, sp, bp):
 *   vaddr = ip - map.bias (ip - 1 for a return address, so that a call at a function's end finds its own row);
 *   row   = the last row of the mapping's table with pc <= vaddr;
 *   CFA   = sp + cfa_off * 8 (UW_CFA_RSP), bp + cfa_off * 8 (UW_CFA_RBP), or sp + cfa_off * 8 + 8 when
 *           (ip & 15) >= rbp_off (UW_CFA_PLT: the expression every PLT entry's FDE carries);
 *   ra    = *(CFA - 8); bp = *(CFA + rbp_off * 8) when UW_RBP_CFA, else unchanged; sp = CFA.
 * UW_CFA_END marks the outermost frame (the return address is undefined: _start, clone3's child). UW_CFA_NONE (no
 * rule covers the address: a gap between FDEs, or a file without CFI) and an ip in no known mapping fall back to
 * the frame pointer (CFA = bp + 16, ra = *(bp + 8), bp = *bp): code built with frame pointers and without CFI
 * (JIT-compiled code) still unwinds. UW_CFA_UNSUP (a rule this unwinder does not evaluate) ends the stack. */
#ifndef LOUPE_UNWIND_H
#define LOUPE_UNWIND_H
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define UNWIND_PROC_MAPS 128	      /* executable mappings per process with rules */
#define UNWIND_ROWS_DEFAULT (1u << 21) /* rows in unwind_rows: 16 MiB */
#define UNWIND_PROC_SLOTS 512	      /* distinct mapping sets (unwind_procs: 4 KiB each) */

enum unwind_cfa_kind {
	UW_CFA_NONE = 0,  /* no rule: use the frame pointer */
	UW_CFA_RSP = 1,	  /* CFA = rsp + cfa_off * 8 */
	UW_CFA_RBP = 2,	  /* CFA = rbp + cfa_off * 8 */
	UW_CFA_PLT = 3,	  /* CFA = rsp + cfa_off * 8 + ((rip & 15) >= rbp_off ? 8 : 0) */
	UW_CFA_END = 4,	  /* outermost frame: stop here, the stack is complete */
	UW_CFA_UNSUP = 5, /* a rule not evaluated here (other registers, other expressions): stop, incomplete */
};

enum unwind_rbp_kind {
	UW_RBP_SAME = 0, /* rbp unchanged (same value, or undefined: not used by the caller) */
	UW_RBP_CFA = 1,	 /* saved at CFA + rbp_off * 8 */
};

/* One rule row: 8 bytes. */
struct unwind_row {
	__u32 pc;      /* ELF virtual address where the row starts (files are < 4 GiB) */
	__s16 cfa_off; /* in units of 8 bytes (x86-64 frames are 8-byte aligned: up to +-256 KiB) */
	__u8 kind;     /* enum unwind_cfa_kind in bits 0-3, enum unwind_rbp_kind in bits 4-7 */
	__s8 rbp_off;  /* UW_RBP_CFA: in units of 8 bytes; UW_CFA_PLT: the threshold on rip & 15 */
};
#define UW_ROW_CFA(r) ((r)->kind & 0xf)
#define UW_ROW_RBP(r) ((r)->kind >> 4)

/* One executable mapping of a process: the rows of its file are unwind_rows[row_first .. row_first + row_count). */
struct unwind_map {
	__u64 start, end; /* runtime addresses */
	__u64 bias;	  /* ELF virtual address = runtime address - bias */
	__u32 row_first, row_count; /* row_count 0: no rules (frame pointer) */
};

/* CPython of a process (struct unwind_proc.py_version != 0): where _PyRuntime is, and which layout. */
struct unwind_proc {
	__u32 nmaps;	  /* maps[0 .. nmaps), sorted by start, not overlapping */
	__u32 py_layout;  /* 0: not CPython (or a version loupe cannot read); else an index into py_layouts */
	__u64 py_runtime; /* runtime address of _PyRuntime */
	struct unwind_map maps[UNWIND_PROC_MAPS];
};

/* CPython's structures as the BPF walker needs them, one entry per minor version (src/profile/pyruntime.c holds
 * the table and how each offset was obtained). All offsets in bytes; PY_OFF_NONE when the version has no such
 * field. The walk: interpreter = *(runtime + interpreters_head); tstate = *(interpreter + threads_head), then
 * *(tstate + tstate_next) until *(tstate + tstate_thread_id) is the thread's pthread_t (its fs base); frame =
 * *(*(tstate + tstate_cframe) + cframe_current_frame) when tstate_cframe is set, else *(tstate + tstate_frame);
 * then per frame: code = *(frame + frame_code), instr = *(frame + frame_instr), frame = *(frame + frame_previous).
 * Frames whose owner byte (frame_owner) is PY_OWNED_BY_CSTACK are the interpreter's entry shims (3.12+): not
 * Python code, they mark where a native _PyEval_EvalFrameDefault call begins. */
#define PY_OFF_NONE 0xffff
enum py_entry_kind {
	PY_ENTRY_EACH = 0,   /* 3.10: every frame is its own _PyEval_EvalFrameDefault call */
	PY_ENTRY_FLAG = 1,   /* 3.11: a frame whose is_entry byte (frame_owner) is set began a call */
	PY_ENTRY_CSTACK = 2, /* 3.12+: a shim frame owned by the C stack sits below each call's first frame */
};
#define PY_OWNED_BY_CSTACK 3 /* enum _frameowner: FRAME_OWNED_BY_CSTACK, 3.12 and 3.13 */

struct py_layout {
	__u32 version; /* 0x030b for 3.11 */
	__u32 entry;   /* enum py_entry_kind */
	__u16 runtime_interpreters_head;
	__u16 interp_threads_head;
	__u16 tstate_next;
	__u16 tstate_thread_id;
	__u16 tstate_cframe;	    /* 3.11, 3.12: tstate->cframe */
	__u16 cframe_current_frame; /* 3.11, 3.12: cframe->current_frame */
	__u16 tstate_frame;	    /* 3.10: tstate->frame; 3.13: tstate->current_frame */
	__u16 frame_code;	    /* f_code (3.10-3.12), f_executable (3.13) */
	__u16 frame_previous;	    /* f_back (3.10), previous */
	__u16 frame_instr;	    /* f_lasti (3.10, an int), prev_instr (3.11, 3.12), instr_ptr (3.13) */
	__u16 frame_owner;	    /* is_entry (3.11), owner (3.12+) */
	/* Code objects and strings (read by userspace, from /proc/PID/mem). */
	__u16 code_name, code_qualname, code_filename, code_firstlineno, code_linetable, code_adaptive;
	__u16 unicode_state, unicode_ascii_data, unicode_compact_data;
	__u16 pad;
};
#define PY_LAYOUTS_MAX 8

#define PY_FRAMES_MAX 64 /* Python frames per stack */

/* One Python frame of a record: the code object, and where in it (f_lasti for 3.10, else the instruction
 * pointer); userspace resolves both through /proc/PID/mem. */
struct prof_pyframe {
	__u64 code;
	__u64 instr;
};

#endif
