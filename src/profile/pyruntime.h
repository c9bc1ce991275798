/* SPDX-License-Identifier: BSD-2-Clause */
/* CPython interpreters, for the BPF walker of their frames (include/unwind.h): which versions loupe reads and their
 * structures' layouts (one table, pyruntime.c, every offset from the DWARF of that version's libpython), whether a
 * mapped file is an interpreter (it defines _PyRuntime) and which version, and the names of code objects, read
 * from the process's memory.
 *
 * Names: a frame is "module.qualname" (module: the source file's basename without ".py"; qualname: co_qualname,
 * "Class.method", or co_name on 3.10, which has none), with the file's basename and the function's first line
 * (co_firstlineno) for pprof. Never a full path (DESIGN.md section 3). Code objects are cached by (pid, address):
 * a code object freed and its memory reused for another one while the process runs would keep the old name (module
 * functions live as long as their module; lambdas and exec'd code may not). */
#ifndef LOUPE_PYRUNTIME_H
#define LOUPE_PYRUNTIME_H
#include <gelf.h>
#include <libelf.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "unwind.h"

#define PY_NAME_MAX 128 /* bytes of a qualname, module or file name kept (longer ones are cut, "..." at the end) */

/* What a mapped ELF file says about CPython. */
struct py_file {
	int layout;	       /* 1-based index into pyruntime__layouts(); 0: not one loupe reads (see why) */
	uint64_t runtime_vaddr; /* _PyRuntime's ELF virtual address (add the load bias) */
	char version[8];       /* "3.11" */
	char why[96];	       /* when layout is 0: e.g. "CPython 3.9: no layout for this version" */
};

struct py_code_info {
	char name[2 * PY_NAME_MAX + 2]; /* "module.qualname" */
	char qualname[PY_NAME_MAX];
	char module[PY_NAME_MAX];
	char file[PY_NAME_MAX];
	uint32_t first_line;
};

struct py_codes;

/* The layouts, in order; a layout's id is its index + 1. */
const struct py_layout *pyruntime__layouts(size_t *n);
/* Whether e (a file mapped by a process; name: its basename) is a CPython interpreter or libpython: 1 with *out
 * filled (out->layout 0 when its version is not one loupe reads), 0 when it is not one. */
int pyruntime__inspect(Elf *e, const char *name, struct py_file *out);

struct py_codes *pyruntime__codes_new(void);
void pyruntime__codes_free(struct py_codes *c);
/* Forget pid's code objects (its process exited). */
void pyruntime__codes_drop_pid(struct py_codes *c, pid_t pid);
/* The names of code object code of process pid (layout L), or NULL when its memory cannot be read. The pointer
 * stays valid until pyruntime__codes_trim(): call that between stacks, never while one is being built. */
const struct py_code_info *pyruntime__code(struct py_codes *c, pid_t pid, const struct py_layout *L, uint64_t code);
/* Make room in a full cache (forgets every entry then). */
void pyruntime__codes_trim(struct py_codes *c);

#endif
