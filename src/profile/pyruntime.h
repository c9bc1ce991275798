/* SPDX-License-Identifier: BSD-2-Clause */
/* CPython interpreters, for the BPF walker of their frames (include/unwind.h): which versions loupe reads and their
 * structures' layouts (one table, pyruntime.c, every offset from the DWARF of that version's libpython), whether a
 * mapped file or a running process is an interpreter (it defines _PyRuntime) and which version, a reference walk
 * of a thread's frames in userspace (the BPF program's algorithm, for tests and debugging), and the names of code
 * objects, read from the process's memory.
 *
 * Names: a frame is "module.qualname" (module: the source file's basename without ".py"; qualname: co_qualname,
 * "Class.method", or co_name on 3.10, which has none), with the file's basename and the function's first line
 * (co_firstlineno) for pprof. Never a full path (DESIGN.md section 3). Strings are read as compact str objects
 * (ASCII, latin-1, UCS-2, UCS-4) and written as UTF-8, cut to PY_NAME_MAX bytes with "..." at the end; ';' becomes
 * ':' and control characters '?' (folded stacks use ';' between frames).
 *
 * Lines (pyruntime__code_at()): the current line is decoded from co_linetable for every version read: 3.10's
 * (start delta, line delta) byte pairs at f_lasti * 2, 3.11+'s location table at the instruction pointer's offset
 * from co_code_adaptive (prev_instr for 3.11 and 3.12, instr_ptr for 3.13), as CPython's own PyCode_Addr2Line()
 * does. line_decoded says whether it was: when not (the table could not be read, is longer than PY_LINETABLE_MAX,
 * the instruction lies outside the code, or its entry has no line), line is first_line.
 *
 * Code objects are cached by (pid, address): a code object freed and its memory reused for another one while the
 * process runs would keep the old name (module functions live as long as their module; lambdas and exec'd code may
 * not). Memory is read with pread(2) on /proc/PID/mem: same user and ptrace access (root here). */
#ifndef LOUPE_PYRUNTIME_H
#define LOUPE_PYRUNTIME_H
#include <gelf.h>
#include <libelf.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "unwind.h"

#define PY_NAME_MAX 128	     /* bytes of a qualname, module or file name kept (longer ones are cut, "..." at the end) */
#define PY_LINETABLE_MAX 65536 /* bytes of a code object's line table read to decode lines */
#define PY_THREADS_MAX 64    /* thread states a walk looks through (the BPF program's bound) */
#define PY_WALK_HEAD 104     /* bytes of a frame read at once, as the BPF program reads them (its PY_FRAME_HEAD) */

/* What a mapped ELF file says about CPython. */
struct py_file {
	int layout;	       /* 1-based index into pyruntime__layouts(); 0: not one loupe reads (see why) */
	uint64_t runtime_vaddr; /* _PyRuntime's ELF virtual address (add the load bias) */
	char version[8];       /* "3.11" */
	char why[96];	       /* when layout is 0: e.g. "CPython 3.9: no layout for this version" */
};

/* What a running process says about CPython (pyruntime__detect()). */
struct py_proc {
	int layout;	     /* 1-based index into pyruntime__layouts(); 0: none (not CPython, or see why) */
	uint64_t runtime;    /* runtime address of _PyRuntime in the process */
	uint32_t hexversion; /* PY_VERSION_HEX from Py_Version (3.11+), else major and minor only (0x030a0000) */
	char version[8];     /* "3.11"; "" when not CPython or unknown */
	char file[64];	     /* basename of the file defining _PyRuntime ("python3.11", "libpython3.12.so.1.0") */
	char why[96];	     /* CPython with layout 0: why ("CPython 3.9: no layout for this version ...") */
};

struct py_code_info {
	char name[2 * PY_NAME_MAX + 2]; /* "module.qualname" */
	char qualname[PY_NAME_MAX];	/* "Class.method"; co_name on 3.10; "[py:unreadable]" when unreadable */
	char module[PY_NAME_MAX];	/* basename of co_filename without ".py" */
	char file[PY_NAME_MAX];		/* basename of co_filename */
	uint32_t first_line;		/* co_firstlineno */
	uint32_t line;			/* pyruntime__code_at() only: the current line, else first_line */
	int line_decoded;		/* 1: line decoded from the line table; 0: line is first_line */
};

struct py_codes;

/* The layouts, in order; a layout's id is its index + 1. */
const struct py_layout *pyruntime__layouts(size_t *n);
/* Whether e (a file mapped by a process; name: its basename) is a CPython interpreter or libpython: 1 with *out
 * filled (out->layout 0 when its version is not one loupe reads), 0 when it is not one. */
int pyruntime__inspect(Elf *e, const char *name, struct py_file *out);

/* Whether process pid runs CPython: the executable or library of its mappings that defines _PyRuntime (.dynsym,
 * else .symtab), files opened as /proc/PID/root/PATH first (containers; the inode must be the mapped one), then
 * /proc/PID/map_files/, then PATH. The runtime address adds the file's load bias (its executable mapping's start
 * against the ELF virtual address of that file offset through its PT_LOAD segments: PIE, non-PIE and shared
 * libraries alike); the version is Py_Version read from the process's memory (3.11+), else from the file, else
 * the file's name (python3.10, libpython3.10.so.1.0). 1 with *out filled (out->layout 0 and out->why set when the
 * version is not one loupe reads), 0 when no mapped file defines _PyRuntime (out->layout 0, why ""), or -errno
 * (-ESRCH: no such process). Opens every mapped file of a process that is not CPython: call it once per process. */
int pyruntime__detect(pid_t pid, struct py_proc *out);
/* The same with pid's /proc/PID/maps text given (NUL-terminated; modified): the file mappings it names are opened
 * and read as pyruntime__detect() does, Py_Version from pid's memory. -ENOMEM, else as pyruntime__detect(). */
int pyruntime__detect_maps(pid_t pid, char *maps, struct py_proc *out);

/* The reference walk of include/unwind.h from userspace (/proc/PID/mem), as the BPF program does it: the thread
 * state whose thread_id is thread_key (the thread's pthread_t: its fs base on glibc x86-64, and what
 * threading.get_ident() returns), then its frames, innermost first, into out[0 .. max) (at most PY_FRAMES_MAX):
 * code object address and instruction (f_lasti on 3.10, an int; else the instruction pointer). Frames owned by the
 * C stack (3.12+ shims) are not recorded. *entry_mask (may be NULL): bit i set when out[i] is the first frame of a
 * _PyEval_EvalFrameDefault call, as prof_rec.py_entry. Like the BPF program, a frame that cannot be read ends the
 * walk (its frames so far are returned). The number of frames, or -ESRCH (no thread state has that key), -EINVAL
 * (p has no layout, or the layout's frame fields do not lie aligned in the first PY_WALK_HEAD bytes as the BPF
 * program needs), -errno (/proc/PID/mem or _PyRuntime unreadable). */
int pyruntime__walk(pid_t pid, uint64_t thread_key, const struct py_proc *p, struct prof_pyframe *out, int max,
		    uint64_t *entry_mask);

struct py_codes *pyruntime__codes_new(void);
void pyruntime__codes_free(struct py_codes *c);
/* Forget pid's code objects and its open /proc/PID/mem (its process exited, or its pid was reused). */
void pyruntime__codes_drop_pid(struct py_codes *c, pid_t pid);
/* The names of code object code of process pid (layout L), or NULL when its memory cannot be read. The pointer
 * stays valid until pyruntime__codes_trim() or pyruntime__codes_drop_pid(): call those between stacks, never
 * while one is being built. line is first_line here (line_decoded 0). */
const struct py_code_info *pyruntime__code(struct py_codes *c, pid_t pid, const struct py_layout *L, uint64_t code);
/* The same copied into *out, with the line of instruction instr (a struct prof_pyframe's): 0, or -errno with out
 * holding the placeholder "[py:unreadable]" (qualname and name; module and file empty) when the code object
 * cannot be read. A full cache (until the next trim) still answers, without keeping the entry. */
int pyruntime__code_at(struct py_codes *c, pid_t pid, const struct py_layout *L, uint64_t code, uint64_t instr,
		       struct py_code_info *out);
/* Make room in a full cache (forgets every entry then). */
void pyruntime__codes_trim(struct py_codes *c);

#endif
