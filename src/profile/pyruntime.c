// SPDX-License-Identifier: BSD-2-Clause
/* CPython's layouts, interpreter detection and code object names (pyruntime.h). */
#include "profile/pyruntime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/hash.h"

/* Every offset below was read from the DWARF of pyenv's libpythonX.Y.so.1.0 (3.10.13, 3.11.7, 3.12.1, 3.13.0) with
 * gdb: `output (long)&((struct _ts*)0)->thread_id` and the like, `sizeof(PyASCIIObject)`; scripts/py-layouts.sh
 * prints them again from any libpython with debug information, and tests/unit/test_pyruntime.c walks live
 * interpreters with them. A minor version keeps its layout across patch releases (Debian's 3.11.2 reads as
 * 3.11.7's). The threads list is interpreters.head -> threads.head (3.10: tstate_head) -> next. */
static const struct py_layout layouts[] = {
	{
		.version = 0x030a, .entry = PY_ENTRY_EACH,
		.runtime_interpreters_head = 32, .interp_threads_head = 8, .tstate_next = 8, .tstate_thread_id = 176,
		.tstate_cframe = PY_OFF_NONE, .cframe_current_frame = PY_OFF_NONE, .tstate_frame = 24,
		.frame_code = 32, .frame_previous = 24, .frame_instr = 96, .frame_owner = PY_OFF_NONE,
		.code_name = 112, .code_qualname = PY_OFF_NONE, .code_filename = 104, .code_firstlineno = 40,
		.code_linetable = 120, .code_adaptive = PY_OFF_NONE,
		.unicode_state = 32, .unicode_ascii_data = 48, .unicode_compact_data = 72,
	},
	{
		.version = 0x030b, .entry = PY_ENTRY_FLAG,
		.runtime_interpreters_head = 40, .interp_threads_head = 16, .tstate_next = 8, .tstate_thread_id = 152,
		.tstate_cframe = 56, .cframe_current_frame = 8, .tstate_frame = PY_OFF_NONE,
		.frame_code = 32, .frame_previous = 48, .frame_instr = 56, .frame_owner = 68,
		.code_name = 120, .code_qualname = 128, .code_filename = 112, .code_firstlineno = 72,
		.code_linetable = 136, .code_adaptive = 184,
		.unicode_state = 32, .unicode_ascii_data = 48, .unicode_compact_data = 72,
	},
	{
		.version = 0x030c, .entry = PY_ENTRY_CSTACK,
		.runtime_interpreters_head = 40, .interp_threads_head = 72, .tstate_next = 8, .tstate_thread_id = 136,
		.tstate_cframe = 56, .cframe_current_frame = 0, .tstate_frame = PY_OFF_NONE,
		.frame_code = 0, .frame_previous = 8, .frame_instr = 56, .frame_owner = 70,
		.code_name = 120, .code_qualname = 128, .code_filename = 112, .code_firstlineno = 68,
		.code_linetable = 136, .code_adaptive = 192,
		.unicode_state = 32, .unicode_ascii_data = 40, .unicode_compact_data = 56,
	},
	{
		.version = 0x030d, .entry = PY_ENTRY_CSTACK,
		.runtime_interpreters_head = 632, .interp_threads_head = 7344, .tstate_next = 8, .tstate_thread_id = 152,
		.tstate_cframe = PY_OFF_NONE, .cframe_current_frame = PY_OFF_NONE, .tstate_frame = 72,
		.frame_code = 0, .frame_previous = 8, .frame_instr = 56, .frame_owner = 70,
		.code_name = 120, .code_qualname = 128, .code_filename = 112, .code_firstlineno = 68,
		.code_linetable = 136, .code_adaptive = 200,
		.unicode_state = 32, .unicode_ascii_data = 40, .unicode_compact_data = 56,
	},
};

const struct py_layout *pyruntime__layouts(size_t *n)
{
	*n = sizeof(layouts) / sizeof(layouts[0]);
	return layouts;
}

/* Symbol name's value in e's .dynsym or .symtab, and the section holding it. */
static bool find_symbol(Elf *e, const char *name, GElf_Sym *out)
{
	for (Elf_Scn *s = NULL; (s = elf_nextscn(e, s));) {
		GElf_Shdr sh;
		if (!gelf_getshdr(s, &sh) || (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB) || !sh.sh_entsize)
			continue;
		Elf_Data *d = elf_getdata(s, NULL);
		size_t n = d ? sh.sh_size / sh.sh_entsize : 0;
		for (size_t i = 0; i < n; i++) {
			GElf_Sym sym;
			const char *nm;
			if (gelf_getsym(d, (int)i, &sym) && sym.st_shndx != SHN_UNDEF &&
			    (nm = elf_strptr(e, sh.sh_link, sym.st_name)) && !strcmp(nm, name)) {
				*out = sym;
				return true;
			}
		}
	}
	return false;
}

/* Py_Version (3.11+: PY_VERSION_HEX as a constant) read from the file's own data: 0 when absent. */
static uint32_t py_version_const(Elf *e)
{
	GElf_Sym sym;
	if (!find_symbol(e, "Py_Version", &sym) || sym.st_size < 4)
		return 0;
	Elf_Scn *s = elf_getscn(e, sym.st_shndx);
	GElf_Shdr sh;
	Elf_Data *d = s && gelf_getshdr(s, &sh) && sh.sh_type != SHT_NOBITS ? elf_getdata(s, NULL) : NULL;
	if (!d || sym.st_value < sh.sh_addr || sym.st_value + 4 > sh.sh_addr + d->d_size)
		return 0;
	uint32_t v;
	memcpy(&v, (const char *)d->d_buf + (sym.st_value - sh.sh_addr), 4);
	return v;
}

int pyruntime__inspect(Elf *e, const char *name, struct py_file *out)
{
	GElf_Sym rt;
	*out = (struct py_file){0};
	if (!find_symbol(e, "_PyRuntime", &rt))
		return 0;
	out->runtime_vaddr = rt.st_value;
	unsigned major = 0, minor = 0;
	uint32_t hex = py_version_const(e);
	if (hex) {
		major = hex >> 24;
		minor = (hex >> 16) & 0xff;
	} else { /* 3.10 and older: the file's name (python3.10, libpython3.10.so.1.0) */
		const char *p = strstr(name, "python");
		if (!p || sscanf(p, "python%u.%u", &major, &minor) != 2) {
			snprintf(out->why, sizeof(out->why), "CPython of unknown version (%s)", name);
			return 1;
		}
	}
	snprintf(out->version, sizeof(out->version), "%u.%u", major, minor);
	for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++)
		if (layouts[i].version == (major << 8 | minor))
			out->layout = (int)i + 1;
	if (!out->layout)
		snprintf(out->why, sizeof(out->why), "CPython %u.%u: no layout for this version (loupe reads 3.10-3.13)",
			 major, minor);
	return 1;
}

/* ---- Code objects ---- */

#define PY_CODES 8192 /* cached code objects (open addressing; a full table is cleared) */
#define PY_FDS 16     /* /proc/PID/mem files kept open */

struct py_code {
	pid_t pid;
	uint64_t code;
	struct py_code_info info;
};

struct py_codes {
	struct py_code *v; /* PY_CODES */
	size_t n;
	struct {
		pid_t pid;
		int fd;
	} fds[PY_FDS];
	unsigned next_fd;
};

struct py_codes *pyruntime__codes_new(void)
{
	struct py_codes *c = calloc(1, sizeof(*c));
	if (c && !(c->v = calloc(PY_CODES, sizeof(*c->v)))) {
		free(c);
		return NULL;
	}
	for (int i = 0; c && i < PY_FDS; i++)
		c->fds[i].fd = -1;
	return c;
}

void pyruntime__codes_free(struct py_codes *c)
{
	if (!c)
		return;
	for (int i = 0; i < PY_FDS; i++)
		if (c->fds[i].fd >= 0)
			close(c->fds[i].fd);
	free(c->v);
	free(c);
}

void pyruntime__codes_drop_pid(struct py_codes *c, pid_t pid)
{
	if (!c)
		return;
	for (int i = 0; i < PY_FDS; i++)
		if (c->fds[i].pid == pid && c->fds[i].fd >= 0) {
			close(c->fds[i].fd);
			c->fds[i].fd = -1;
			c->fds[i].pid = 0;
		}
	/* Its cached code objects stay until the table is next cleared: a new process with the same pid and the same
	 * code address is unlikely, and reading its memory fills the table anew (pids are part of the key). */
}

static int mem_fd(struct py_codes *c, pid_t pid)
{
	for (int i = 0; i < PY_FDS; i++)
		if (c->fds[i].pid == pid && c->fds[i].fd >= 0)
			return c->fds[i].fd;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unsigned k = c->next_fd++ % PY_FDS;
	if (c->fds[k].fd >= 0)
		close(c->fds[k].fd);
	c->fds[k].pid = pid;
	c->fds[k].fd = fd;
	return fd;
}

static int rd(int fd, uint64_t addr, void *buf, size_t n)
{
	ssize_t r = pread(fd, buf, n, (off_t)addr);
	return r == (ssize_t)n ? 0 : r < 0 ? -errno : -EIO;
}

/* A str object at addr into out (UTF-8, cut to fit; ';' and control characters replaced): 0 or -errno. */
static int read_str(int fd, const struct py_layout *L, uint64_t addr, char *out, size_t cap)
{
	uint64_t len;
	uint32_t state;
	if (!addr || rd(fd, addr + 16, &len, sizeof(len)) || rd(fd, addr + L->unicode_state, &state, sizeof(state)))
		return -EFAULT;
	unsigned kind = (state >> 2) & 7, compact = (state >> 5) & 1, ascii = (state >> 6) & 1;
	if (!compact || (kind != 1 && kind != 2 && kind != 4))
		return -EINVAL;
	uint64_t data = addr + (ascii ? L->unicode_ascii_data : L->unicode_compact_data);
	unsigned char raw[4 * PY_NAME_MAX];
	size_t n = len < PY_NAME_MAX ? (size_t)len : PY_NAME_MAX, o = 0;
	if (n && rd(fd, data, raw, n * kind))
		return -EFAULT;
	for (size_t i = 0; i < n; i++) {
		uint32_t cp = kind == 1 ? raw[i] : kind == 2 ? (uint32_t)(raw[2 * i] | raw[2 * i + 1] << 8) :
			      (uint32_t)(raw[4 * i] | raw[4 * i + 1] << 8 | raw[4 * i + 2] << 16 | (uint32_t)raw[4 * i + 3] << 24);
		if (cp < 0x20 || cp == 0x7f || cp == ';')
			cp = cp == ';' ? ':' : '?';
		char u[4];
		size_t ul;
		if (cp < 0x80) {
			u[0] = (char)cp, ul = 1;
		} else if (cp < 0x800) {
			u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), ul = 2;
		} else if (cp < 0x10000) {
			u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
			u[2] = (char)(0x80 | (cp & 0x3f)), ul = 3;
		} else {
			u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
			u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), ul = 4;
		}
		if (o + ul + 4 > cap)
			break;
		memcpy(out + o, u, ul);
		o += ul;
	}
	if (len > n && o + 4 <= cap) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = 0;
	return 0;
}

static size_t code_slot(pid_t pid, uint64_t code)
{
	uint64_t h = fnv1a(fnv1a(FNV1A_SEED, &pid, sizeof(pid)), &code, sizeof(code));
	return h & (PY_CODES - 1);
}

void pyruntime__codes_trim(struct py_codes *c)
{
	if (c->n >= PY_CODES / 2) { /* keep probes short: start over */
		memset(c->v, 0, PY_CODES * sizeof(*c->v));
		c->n = 0;
	}
}

const struct py_code_info *pyruntime__code(struct py_codes *c, pid_t pid, const struct py_layout *L, uint64_t code)
{
	size_t j = code_slot(pid, code);
	for (size_t i = 0; i < PY_CODES && c->v[j].pid; i++, j = (j + 1) & (PY_CODES - 1))
		if (c->v[j].pid == pid && c->v[j].code == code)
			return &c->v[j].info;
	if (c->n >= PY_CODES - 1)
		return NULL; /* full until the next trim */
	int fd = mem_fd(c, pid);
	if (fd < 0)
		return NULL;
	uint64_t qual = 0, file = 0;
	int32_t first = 0;
	uint16_t qoff = L->code_qualname != PY_OFF_NONE ? L->code_qualname : L->code_name;
	struct py_code_info ci = {0};
	char path[PY_NAME_MAX * 2];
	if (rd(fd, code + qoff, &qual, 8) || rd(fd, code + L->code_filename, &file, 8) ||
	    rd(fd, code + L->code_firstlineno, &first, 4) || read_str(fd, L, qual, ci.qualname, sizeof(ci.qualname)))
		return NULL;
	if (read_str(fd, L, file, path, sizeof(path)))
		snprintf(path, sizeof(path), "[unknown]");
	/* The basename only: a full path may not leave the agent. */
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	snprintf(ci.file, sizeof(ci.file), "%.*s", (int)sizeof(ci.file) - 1, base);
	snprintf(ci.module, sizeof(ci.module), "%.*s", (int)sizeof(ci.module) - 1, base);
	size_t ml = strlen(ci.module);
	if (ml > 3 && !strcmp(ci.module + ml - 3, ".py"))
		ci.module[ml - 3] = 0;
	ci.first_line = first > 0 ? (uint32_t)first : 0;
	snprintf(ci.name, sizeof(ci.name), "%s.%s", ci.module, ci.qualname);
	while (c->v[j].pid)
		j = (j + 1) & (PY_CODES - 1);
	c->v[j] = (struct py_code){.pid = pid, .code = code, .info = ci};
	c->n++;
	return &c->v[j].info;
}
