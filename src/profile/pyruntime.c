// SPDX-License-Identifier: BSD-2-Clause
/* CPython's layouts, interpreter detection, the reference frame walk and code object names (pyruntime.h). */
#include "profile/pyruntime.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/hash.h"
#include "profile/procmaps.h"
#include "lib/util.h"

/* Every offset below was read from the DWARF of pyenv's libpythonX.Y.so.1.0 (3.10.13, 3.11.7, 3.12.1, 3.13.0) with
 * gdb, as `output (long)&(EXPR)` (scripts/py-layouts.sh prints them all again from any libpython with debug
 * information; tests/unit/test_py_layouts.py compares them with this table), and cross-checked by hand against
 * `gdb -batch -ex 'ptype/o struct _ts' LIB` (and _PyInterpreterFrame, struct _frame, PyCodeObject, PyASCIIObject):
 *   runtime_interpreters_head  ((struct pyruntimestate *)0)->interpreters.head
 *   interp_threads_head        ((struct _is *)0)->threads.head; 3.10: ((struct _is *)0)->tstate_head
 *   tstate_next, _thread_id    ((struct _ts *)0)->next, ->thread_id (an unsigned long: the pthread_t)
 *   tstate_cframe              ((struct _ts *)0)->cframe, 3.11 and 3.12 (3.10 has one, but its frames hang from
 *                              tstate->frame; 3.13 has none)
 *   cframe_current_frame       ((_PyCFrame *)0)->current_frame (3.11: CFrame)
 *   tstate_frame               3.10: ((struct _ts *)0)->frame; 3.13: ((struct _ts *)0)->current_frame
 *   frame_code                 3.10: ((struct _frame *)0)->f_code; 3.11, 3.12: ((struct _PyInterpreterFrame *)0)
 *                              ->f_code; 3.13: ->f_executable
 *   frame_previous             3.10: ((struct _frame *)0)->f_back; 3.11+: ((struct _PyInterpreterFrame *)0)->previous
 *   frame_instr                3.10: ((struct _frame *)0)->f_lasti (an int, in code units); 3.11, 3.12: ->prev_instr;
 *                              3.13: ->instr_ptr
 *   frame_owner                3.11: ((struct _PyInterpreterFrame *)0)->is_entry; 3.12+: ->owner (a char)
 *   code_*                     ((PyCodeObject *)0)->co_name, co_qualname, co_filename, co_firstlineno, co_linetable,
 *                              co_code_adaptive (3.11+: the instructions themselves; 3.10 has co_code, a bytes)
 *   unicode_state              ((PyASCIIObject *)0)->state: interned bits 0-1, kind 2-4, compact 5, ascii 6 in every
 *                              version (ptype/o shows the bit positions)
 *   unicode_ascii_data         sizeof(PyASCIIObject): where a compact ASCII string's characters start
 *   unicode_compact_data       sizeof(PyCompactUnicodeObject): where other compact strings' characters start
 * A minor version keeps its layout across patch releases: Debian's 3.11.2 (no DWARF) reads as 3.11.7's, checked by
 * walking it live (tests/unit/test_pyruntime.c: thread states, frames, code objects, strings and lines). The
 * threads list is interpreters.head -> threads.head (3.10: tstate_head) -> next. The table is parsed by
 * test_py_layouts.py: one initialiser per entry, no braces or comments inside. */
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
		.runtime_interpreters_head = 632, .interp_threads_head = 7344,
		.tstate_next = 8, .tstate_thread_id = 152,
		.tstate_cframe = PY_OFF_NONE, .cframe_current_frame = PY_OFF_NONE, .tstate_frame = 72,
		.frame_code = 0, .frame_previous = 8, .frame_instr = 56, .frame_owner = 70,
		.code_name = 120, .code_qualname = 128, .code_filename = 112, .code_firstlineno = 68,
		.code_linetable = 136, .code_adaptive = 200,
		.unicode_state = 32, .unicode_ascii_data = 40, .unicode_compact_data = 56,
	},
};

/* Offsets that are the same in 3.10-3.13 (`ptype/o PyASCIIObject`, `ptype/o PyBytesObject`, `ptype/o PyCodeObject`
 * on each libpython): a str's length (in code points), a bytes object's size and first byte, and Py_SIZE() of a
 * code object (3.11+: its instructions, in 2-byte code units). */
#define PY_STR_LENGTH 16
#define PY_BYTES_SIZE 16
#define PY_BYTES_DATA 32
#define PY_VAR_SIZE 16

const struct py_layout *pyruntime__layouts(size_t *n)
{
	*n = ARRAY_SIZE(layouts);
	return layouts;
}

/* ---- Files: _PyRuntime, Py_Version ---- */

/* Symbol name defined in e's .dynsym, else its .symtab. */
static bool find_symbol(Elf *e, const char *name, GElf_Sym *out)
{
	static const Elf64_Word types[2] = {SHT_DYNSYM, SHT_SYMTAB};
	for (int t = 0; t < 2; t++)
		for (Elf_Scn *s = NULL; (s = elf_nextscn(e, s));) {
			GElf_Shdr sh;
			if (!gelf_getshdr(s, &sh) || sh.sh_type != types[t] || !sh.sh_entsize)
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
static uint32_t py_version_const(Elf *e, const GElf_Sym *sym)
{
	Elf_Scn *s = elf_getscn(e, sym->st_shndx);
	GElf_Shdr sh;
	Elf_Data *d = s && gelf_getshdr(s, &sh) && sh.sh_type != SHT_NOBITS ? elf_getdata(s, NULL) : NULL;
	if (!d || sym->st_size < 4 || sym->st_value < sh.sh_addr || sym->st_value + 4 > sh.sh_addr + d->d_size)
		return 0;
	uint32_t v;
	memcpy(&v, (const char *)d->d_buf + (sym->st_value - sh.sh_addr), 4);
	return v;
}

/* The layout of major.minor into version/layout/why. */
static void pick_layout(unsigned major, unsigned minor, char *version, size_t vn, int *layout, char *why, size_t wn)
{
	snprintf(version, vn, "%u.%u", major, minor);
	*layout = 0;
	for (size_t i = 0; i < ARRAY_SIZE(layouts); i++)
		if (layouts[i].version == (major << 8 | minor))
			*layout = (int)i + 1;
	if (!*layout)
		snprintf(why, wn, "CPython %u.%u: no layout for this version (loupe reads 3.10-3.13)", major, minor);
}

/* The version in a file's name: python3.10, libpython3.10.so.1.0. */
static bool version_of_name(const char *name, unsigned *major, unsigned *minor)
{
	const char *p = strstr(name, "python");
	return p && sscanf(p, "python%u.%u", major, minor) == 2;
}

int pyruntime__inspect(Elf *e, const char *name, struct py_file *out)
{
	GElf_Sym rt, ver;
	*out = (struct py_file){0};
	if (!find_symbol(e, "_PyRuntime", &rt))
		return 0;
	out->runtime_vaddr = rt.st_value;
	unsigned major = 0, minor = 0;
	uint32_t hex = find_symbol(e, "Py_Version", &ver) ? py_version_const(e, &ver) : 0;
	if (hex) {
		major = hex >> 24;
		minor = (hex >> 16) & 0xff;
	} else if (!version_of_name(name, &major, &minor)) { /* 3.10 and older: the file's name */
		snprintf(out->why, sizeof(out->why), "CPython of unknown version (%s)", name);
		return 1;
	}
	pick_layout(major, minor, out->version, sizeof(out->version), &out->layout, out->why, sizeof(out->why));
	return 1;
}

/* ---- Processes ---- */

/* n bytes at addr: 0, or -errno with buf zeroed (as bpf_probe_read_user() does: a read that stops at the end of a
 * mapping has copied the bytes before it, which are not a value). */
static int rd(int fd, uint64_t addr, void *buf, size_t n)
{
	ssize_t r = pread(fd, buf, n, (off_t)addr);
	if (r == (ssize_t)n)
		return 0;
	int err = r < 0 ? -errno : -EIO;
	memset(buf, 0, n);
	return err;
}

/* An 8-byte pointer at addr: 0 or -errno. */
static int rd_ptr(int fd, uint64_t addr, uint64_t *v)
{
	*v = 0;
	return rd(fd, addr, v, sizeof(*v));
}

static int open_mem(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd >= 0 ? fd : errno == ENOENT ? -ESRCH : -errno;
}

/* One file mapping of /proc/PID/maps. */
struct py_map {
	uint64_t start, end, off, ino;
	unsigned maj, min;
	bool exec, tried;
	const char *path; /* into the maps text */
};

/* mp's file: the process's own view (containers), the mapped file itself, that view without the inode check
 * (overlayfs), the path as is. */
static int open_map_file(pid_t pid, const struct py_map *mp)
{
	int fd = proc_open_mapping(pid, mp->start, mp->end, mp->path, mp->ino);
	if (fd < 0)
		fd = proc_open_mapped(mp->path, mp->ino);
	return fd;
}

/* The load bias of mp's file: mp->start against the ELF virtual address of file offset mp->off through the PT_LOAD
 * segment mapped there. The loader maps each segment from its first page, and neighbouring segments may share a
 * page (at different virtual addresses): a segment starting at that page, executable as the mapping is, first;
 * then any starting there; then any holding it (a mapping split by mprotect, RELRO). 0 or -ENOENT. */
static int load_bias(Elf *e, const struct py_map *mp, uint64_t *bias)
{
	size_t n;
	if (elf_getphdrnum(e, &n))
		return -ENOENT;
	for (int pass = 0; pass < 3; pass++)
		for (size_t i = 0; i < n; i++) {
			GElf_Phdr ph;
			if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD || !ph.p_filesz)
				continue;
			uint64_t page = ph.p_offset & ~(uint64_t)0xfff;
			bool hit = pass == 2 ? mp->off >= page && mp->off < ph.p_offset + ph.p_filesz : mp->off == page;
			if (hit && (pass || !(ph.p_flags & PF_X) == !mp->exec)) {
				*bias = mp->start - (mp->off - ph.p_offset + ph.p_vaddr);
				return 0;
			}
		}
	return -ENOENT;
}

/* mp's file as CPython of process pid: 1 with *out filled, 0 when it does not define _PyRuntime. */
static int detect_file(pid_t pid, int mem, const struct py_map *mp, struct py_proc *out)
{
	int fd = open_map_file(pid, mp);
	if (fd < 0)
		return 0;
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	GElf_Sym rt, ver;
	int ret = 0;
	uint64_t bias;
	if (!e || elf_kind(e) != ELF_K_ELF || !find_symbol(e, "_PyRuntime", &rt) || load_bias(e, mp, &bias))
		goto out;
	ret = 1;
	const char *base = strrchr(mp->path, '/');
	base = base ? base + 1 : mp->path;
	snprintf(out->file, sizeof(out->file), "%s", base);
	out->runtime = rt.st_value + bias;
	uint32_t hex = 0;
	if (find_symbol(e, "Py_Version", &ver)) {
		if (mem < 0 || rd(mem, ver.st_value + bias, &hex, sizeof(hex)))
			hex = py_version_const(e, &ver);
	}
	unsigned major, minor;
	if (hex) {
		major = hex >> 24;
		minor = (hex >> 16) & 0xff;
	} else if (!version_of_name(base, &major, &minor)) {
		snprintf(out->why, sizeof(out->why), "CPython of unknown version (%.60s)", base);
		goto out;
	}
	out->hexversion = hex ? hex : major << 24 | minor << 16;
	pick_layout(major, minor, out->version, sizeof(out->version), &out->layout, out->why, sizeof(out->why));
out:
	if (e)
		elf_end(e);
	close(fd);
	return ret;
}

/* /proc/PID/maps' file mappings into *out (pointing into text, which it modifies). */
static int parse_maps(char *text, struct py_map **out, size_t *outn)
{
	struct py_map *v = NULL;
	size_t n = 0, cap = 0;
	for (char *l = text, *nl; l && *l; l = nl) {
		nl = strchr(l, '\n');
		if (nl)
			*nl++ = '\0';
		unsigned long long start, end, off, ino;
		unsigned maj, min;
		char perms[8];
		int pos = 0;
		if (sscanf(l, "%llx-%llx %7s %llx %x:%x %llu%n", &start, &end, perms, &off, &maj, &min, &ino, &pos) !=
		    7)
			continue;
		char *path = l + pos;
		path += strspn(path, " \t");
		if (*path != '/' || !ino)
			continue;
		static const char deleted[] = " (deleted)";
		size_t pl = strlen(path);
		if (pl >= sizeof(deleted) - 1 && !strcmp(path + pl - (sizeof(deleted) - 1), deleted))
			path[pl - (sizeof(deleted) - 1)] = '\0';
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct py_map *nv = realloc(v, nc * sizeof(*nv));
			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
			cap = nc;
		}
		v[n++] = (struct py_map){.start = start, .end = end, .off = off, .ino = ino, .maj = maj, .min = min,
					 .exec = strlen(perms) > 2 && perms[2] == 'x', .path = path};
	}
	*out = v;
	*outn = n;
	return 0;
}

static bool same_file(const struct py_map *a, const struct py_map *b)
{
	return a->ino == b->ino && a->maj == b->maj && a->min == b->min;
}

int pyruntime__detect(pid_t pid, struct py_proc *out)
{
	*out = (struct py_proc){0};
	char path[64], *text = NULL;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	long len = read_file(path, &text);
	if (len < 0)
		return len == -ENOENT ? -ESRCH : (int)len;
	int ret = pyruntime__detect_maps(pid, text, out);
	free(text);
	return ret;
}

int pyruntime__detect_maps(pid_t pid, char *maps, struct py_proc *out)
{
	*out = (struct py_proc){0};
	struct py_map *v;
	size_t n;
	int ret = parse_maps(maps, &v, &n);
	if (ret)
		return ret;
	elf_version(EV_CURRENT);
	int mem = open_mem(pid);
	/* Files named like an interpreter first (the executable, libpythonX.Y), then every other one (an
	 * application embedding CPython statically); each file once, through its executable mapping if it has one. */
	for (int pass = 0; pass < 2 && !ret; pass++)
		for (size_t i = 0; i < n && !ret; i++) {
			if (v[i].tried)
				continue;
			const char *base = strrchr(v[i].path, '/') + 1;
			if (!pass && !strstr(base, "python"))
				continue;
			const struct py_map *use = &v[i];
			for (size_t j = i; j < n; j++)
				if (same_file(&v[j], &v[i])) {
					v[j].tried = true;
					if (v[j].exec && !use->exec)
						use = &v[j];
				}
			ret = detect_file(pid, mem, use, out);
		}
	if (mem >= 0)
		close(mem);
	free(v);
	return ret;
}

/* ---- The reference walk ---- */

/* Whether L's frame fields lie where the BPF program reads them: in the frame's first PY_WALK_HEAD bytes, pointers
 * (and 3.11+'s instruction pointer) 8-aligned, 3.10's f_lasti 4-aligned, the owner byte below 128. */
static bool frame_head_ok(const struct py_layout *L)
{
	bool each = L->entry == PY_ENTRY_EACH;
	return !(L->frame_code % 8) && L->frame_code + 8 <= PY_WALK_HEAD && !(L->frame_previous % 8) &&
	       L->frame_previous + 8 <= PY_WALK_HEAD && !(L->frame_instr % (each ? 4 : 8)) &&
	       L->frame_instr + (each ? 4 : 8) <= PY_WALK_HEAD && (each || L->frame_owner < PY_WALK_HEAD);
}

/* The thread state of thread_key: 0 with *tstate set (0: none), or -errno when _PyRuntime cannot be read. */
static int find_tstate(int fd, const struct py_layout *L, uint64_t runtime, uint64_t key, uint64_t *tstate)
{
	uint64_t interp, ts, id;
	*tstate = 0;
	int err = rd_ptr(fd, runtime + L->runtime_interpreters_head, &interp);
	if (err)
		return err;
	if (!interp || rd_ptr(fd, interp + L->interp_threads_head, &ts))
		return 0;
	for (int i = 0; i < PY_THREADS_MAX && ts; i++) {
		if (!rd_ptr(fd, ts + L->tstate_thread_id, &id) && id == key) {
			*tstate = ts;
			return 0;
		}
		if (rd_ptr(fd, ts + L->tstate_next, &ts))
			return 0;
	}
	return 0;
}

int pyruntime__walk(pid_t pid, uint64_t thread_key, const struct py_proc *p, struct prof_pyframe *out, int max,
		    uint64_t *entry_mask)
{
	if (entry_mask)
		*entry_mask = 0;
	if (!p || p->layout < 1 || (size_t)p->layout > ARRAY_SIZE(layouts))
		return -EINVAL;
	const struct py_layout *L = &layouts[p->layout - 1];
	if (!frame_head_ok(L))
		return -EINVAL;
	if (max > PY_FRAMES_MAX)
		max = PY_FRAMES_MAX;
	int fd = open_mem(pid);
	if (fd < 0)
		return fd;
	uint64_t tstate, frame = 0, cframe;
	int err = find_tstate(fd, L, p->runtime, thread_key, &tstate);
	if (err || !tstate) {
		close(fd);
		return err ? err : -ESRCH;
	}
	if (L->tstate_cframe != PY_OFF_NONE) {
		if (!rd_ptr(fd, tstate + L->tstate_cframe, &cframe) && cframe)
			rd_ptr(fd, cframe + L->cframe_current_frame, &frame);
	} else {
		rd_ptr(fd, tstate + L->tstate_frame, &frame);
	}
	int n = 0;
	uint64_t entry = 0;
	/* As the BPF program: PY_FRAMES_MAX steps, shims included; the frame's head read at once. */
	for (int i = 0; i < PY_FRAMES_MAX && frame && n < max; i++) {
		uint8_t head[PY_WALK_HEAD];
		if (rd(fd, frame, head, sizeof(head)))
			break;
		uint64_t code, prev, instr = 0;
		uint8_t owner = 0;
		memcpy(&code, head + L->frame_code, 8);
		memcpy(&prev, head + L->frame_previous, 8);
		if (L->entry == PY_ENTRY_EACH) {
			uint32_t lasti;
			memcpy(&lasti, head + L->frame_instr, 4);
			instr = lasti;
		} else {
			memcpy(&instr, head + L->frame_instr, 8);
			owner = head[L->frame_owner];
		}
		frame = prev;
		if (L->entry == PY_ENTRY_CSTACK && owner == PY_OWNED_BY_CSTACK) {
			if (n) /* a shim: the frame recorded before it began a native call */
				entry |= 1ull << (n - 1);
			continue;
		}
		out[n] = (struct prof_pyframe){.code = code, .instr = instr};
		if (L->entry == PY_ENTRY_EACH || (L->entry == PY_ENTRY_FLAG && owner))
			entry |= 1ull << n;
		n++;
	}
	close(fd);
	if (entry_mask)
		*entry_mask = entry;
	return n;
}

/* ---- Strings ---- */

#define PY_PATH_CPS (2 * PY_NAME_MAX) /* code points read from the end of co_filename: its basename is in them */

/* Up to maxcp code points of the str at addr (the first ones, or the last ones with tail) as UTF-8 into
 * out[0 .. 4 * maxcp], NUL-terminated, ';' made ':', control characters, surrogates and C1 controls '?'. *cut: code
 * points were left out. The number of bytes, or -errno (-EINVAL: not a compact str). */
static int read_str_raw(int fd, const struct py_layout *L, uint64_t addr, bool tail, size_t maxcp, char *out,
			bool *cut)
{
	uint64_t len;
	uint32_t state;
	*cut = false;
	out[0] = '\0';
	if (!addr || rd(fd, addr + PY_STR_LENGTH, &len, sizeof(len)) || rd(fd, addr + L->unicode_state, &state, 4))
		return -EFAULT;
	unsigned kind = (state >> 2) & 7, compact = (state >> 5) & 1, ascii = (state >> 6) & 1;
	if (!compact || (kind != 1 && kind != 2 && kind != 4) || (ascii && kind != 1) || len > (1ull << 40))
		return -EINVAL;
	uint64_t data = addr + (ascii ? L->unicode_ascii_data : L->unicode_compact_data);
	size_t n = len < maxcp ? (size_t)len : maxcp;
	*cut = len > n;
	if (tail)
		data += (len - n) * kind;
	unsigned char raw[4 * PY_PATH_CPS];
	if (n > PY_PATH_CPS)
		return -EINVAL;
	if (n && rd(fd, data, raw, n * kind))
		return -EFAULT;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		const unsigned char *r = raw + i * kind;
		uint32_t cp = kind == 1 ? r[0] : kind == 2 ? (uint32_t)(r[0] | r[1] << 8) :
			      (uint32_t)(r[0] | r[1] << 8 | r[2] << 16 | (uint32_t)r[3] << 24);
		if (cp == ';')
			cp = ':';
		else if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || (cp >= 0xd800 && cp < 0xe000) || cp > 0x10ffff)
			cp = '?';
		if (cp < 0x80) {
			out[o++] = (char)cp;
		} else if (cp < 0x800) {
			out[o++] = (char)(0xc0 | cp >> 6);
			out[o++] = (char)(0x80 | (cp & 0x3f));
		} else if (cp < 0x10000) {
			out[o++] = (char)(0xe0 | cp >> 12);
			out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (cp & 0x3f));
		} else {
			out[o++] = (char)(0xf0 | cp >> 18);
			out[o++] = (char)(0x80 | ((cp >> 12) & 0x3f));
			out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (cp & 0x3f));
		}
	}
	out[o] = '\0';
	return (int)o;
}

/* src[0 .. len) into dst[0 .. cap): whole, or cut at a character boundary with "..." at the end (also when cut,
 * code points were left out already). */
static void fit(char *dst, size_t cap, const char *src, size_t len, bool cut)
{
	if (!cut && len < cap) {
		memcpy(dst, src, len);
		dst[len] = '\0';
		return;
	}
	size_t k = len < cap - 4 ? len : cap - 4;
	while (k > 0 && k < len && ((unsigned char)src[k] & 0xc0) == 0x80)
		k--;
	memcpy(dst, src, k);
	memcpy(dst + k, "...", 4);
}

/* The str at addr into dst[0 .. cap): 0 or -errno. */
static int read_str(int fd, const struct py_layout *L, uint64_t addr, char *dst, size_t cap)
{
	char buf[4 * PY_NAME_MAX + 1];
	bool cut;
	int n = read_str_raw(fd, L, addr, false, PY_NAME_MAX, buf, &cut);
	if (n < 0)
		return n;
	fit(dst, cap, buf, (size_t)n, cut);
	return 0;
}

/* ---- Code objects ---- */

#define PY_CODES 8192		   /* cached code objects (open addressing; a full table is cleared) */
#define PY_FDS 16		   /* /proc/PID/mem files kept open */
#define PY_LINES_TOTAL (8u << 20) /* bytes of line tables cached at most; more are read at each use */

struct py_code {
	pid_t pid; /* 0: empty slot */
	uint64_t code;
	struct py_code_info info;
	uint8_t *lines;	     /* the line table, read at the first pyruntime__code_at() */
	uint32_t lines_len;
	uint32_t code_units; /* 3.11+: Py_SIZE(code), the instructions' length in code units */
	int lines_state;     /* 0: not read yet; 1: read; -1: unreadable or too long */
};

struct py_codes {
	struct py_code *v; /* PY_CODES */
	size_t n;
	size_t lines_bytes;
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

static void entry_clear(struct py_codes *c, struct py_code *e)
{
	c->lines_bytes -= e->lines ? e->lines_len : 0;
	free(e->lines);
	memset(e, 0, sizeof(*e));
}

void pyruntime__codes_free(struct py_codes *c)
{
	if (!c)
		return;
	for (int i = 0; i < PY_FDS; i++)
		if (c->fds[i].fd >= 0)
			close(c->fds[i].fd);
	for (size_t i = 0; i < PY_CODES; i++)
		free(c->v[i].lines);
	free(c->v);
	free(c);
}

static void close_fd(struct py_codes *c, pid_t pid)
{
	for (int i = 0; i < PY_FDS; i++)
		if (c->fds[i].pid == pid && c->fds[i].fd >= 0) {
			close(c->fds[i].fd);
			c->fds[i].fd = -1;
			c->fds[i].pid = 0;
		}
}

static size_t code_slot(pid_t pid, uint64_t code)
{
	uint64_t h = fnv1a(fnv1a(FNV1A_SEED, &pid, sizeof(pid)), &code, sizeof(code));
	return h & (PY_CODES - 1);
}

void pyruntime__codes_drop_pid(struct py_codes *c, pid_t pid)
{
	if (!c || !pid)
		return;
	close_fd(c, pid);
	/* Linear probing's deletion: each entry after a hole moves into it unless its home slot lies cyclically
	 * after the hole. A slot that received an entry is looked at again, and the table once more after any
	 * deletion (a move across the end of the array may bring an entry back before i). */
	for (bool again = true; again;) {
		again = false;
		for (size_t i = 0; i < PY_CODES; i++)
			while (c->v[i].pid == pid) {
				again = true;
				entry_clear(c, &c->v[i]);
				c->n--;
				size_t hole = i, mask = PY_CODES - 1;
				for (size_t j = (hole + 1) & mask; c->v[j].pid; j = (j + 1) & mask) {
					size_t home = code_slot(c->v[j].pid, c->v[j].code);
					if (((j - home) & mask) >= ((j - hole) & mask)) {
						c->v[hole] = c->v[j];
						memset(&c->v[j], 0, sizeof(c->v[j]));
						hole = j;
					}
				}
			}
	}
}

static int mem_fd(struct py_codes *c, pid_t pid, bool *cached)
{
	*cached = true;
	for (int i = 0; i < PY_FDS; i++)
		if (c->fds[i].pid == pid && c->fds[i].fd >= 0)
			return c->fds[i].fd;
	*cached = false;
	int fd = open_mem(pid);
	if (fd < 0)
		return fd;
	unsigned k = c->next_fd++ % PY_FDS;
	if (c->fds[k].fd >= 0)
		close(c->fds[k].fd);
	c->fds[k].pid = pid;
	c->fds[k].fd = fd;
	return fd;
}

/* Code object code's names into *ci: 0 or -errno (its qualname unreadable; an unreadable file name is
 * "[unknown]"). */
static int code_names(int fd, const struct py_layout *L, uint64_t code, struct py_code_info *ci)
{
	uint64_t qual = 0, file = 0;
	int32_t first = 0;
	uint16_t qoff = L->code_qualname != PY_OFF_NONE ? L->code_qualname : L->code_name;
	*ci = (struct py_code_info){0};
	int err;
	if ((err = rd_ptr(fd, code + qoff, &qual)) || (err = rd_ptr(fd, code + L->code_filename, &file)) ||
	    (err = rd(fd, code + L->code_firstlineno, &first, 4)) ||
	    (err = read_str(fd, L, qual, ci->qualname, sizeof(ci->qualname))))
		return err;
	/* The basename only: a full path may not leave the agent. It is in the path's last PY_PATH_CPS code
	 * points, unless it is longer than that (it is cut then). */
	char path[4 * PY_PATH_CPS + 1];
	bool cut;
	int n = read_str_raw(fd, L, file, true, PY_PATH_CPS, path, &cut);
	if (n < 0)
		n = snprintf(path, sizeof(path), "[unknown]"), cut = false;
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	cut = cut && base == path;
	size_t bl = (size_t)n - (size_t)(base - path);
	fit(ci->file, sizeof(ci->file), base, bl, cut);
	if (!cut && bl > 3 && !strcmp(base + bl - 3, ".py"))
		bl -= 3;
	fit(ci->module, sizeof(ci->module), base, bl, cut);
	ci->first_line = first > 0 ? (uint32_t)first : 0;
	ci->line = ci->first_line;
	snprintf(ci->name, sizeof(ci->name), "%s.%s", ci->module, ci->qualname);
	return 0;
}

/* The entry of (pid, code), or where it goes (*found false); NULL when the table is full. */
static struct py_code *code_find(struct py_codes *c, pid_t pid, uint64_t code, bool *found)
{
	size_t j = code_slot(pid, code);
	for (size_t i = 0; i < PY_CODES; i++, j = (j + 1) & (PY_CODES - 1)) {
		if (!c->v[j].pid) {
			*found = false;
			return c->n < PY_CODES - 1 ? &c->v[j] : NULL;
		}
		if (c->v[j].pid == pid && c->v[j].code == code) {
			*found = true;
			return &c->v[j];
		}
	}
	*found = false;
	return NULL;
}

/* The names of (pid, code) into *ci, read with a cached /proc/PID/mem (opened afresh once when a read through a
 * cached one fails: the pid may belong to a new process). The descriptor, or -errno. */
static int code_read(struct py_codes *c, pid_t pid, const struct py_layout *L, uint64_t code,
		     struct py_code_info *ci, int *errp)
{
	bool cached;
	int fd = mem_fd(c, pid, &cached);
	int err = fd < 0 ? fd : code_names(fd, L, code, ci);
	if (err && cached) {
		close_fd(c, pid);
		fd = mem_fd(c, pid, &cached);
		err = fd < 0 ? fd : code_names(fd, L, code, ci);
	}
	*errp = err;
	return fd;
}

const struct py_code_info *pyruntime__code(struct py_codes *c, pid_t pid, const struct py_layout *L, uint64_t code)
{
	bool found;
	struct py_code *e = code_find(c, pid, code, &found);
	if (!e || found)
		return e ? &e->info : NULL; /* full until the next trim */
	struct py_code_info ci;
	int err;
	code_read(c, pid, L, code, &ci, &err);
	if (err)
		return NULL;
	*e = (struct py_code){.pid = pid, .code = code, .info = ci};
	c->n++;
	return &e->info;
}

/* Signed and unsigned varints of 3.11+'s location table (6 bits a byte, 0x40: more follow), from t[*i] on. */
static uint32_t varint(const uint8_t *t, size_t n, size_t *i)
{
	uint32_t v = 0;
	for (unsigned shift = 0; *i < n && shift < 32; shift += 6) {
		uint8_t b = t[(*i)++];
		v |= (uint32_t)(b & 63) << shift;
		if (!(b & 64))
			break;
	}
	return v;
}

static int32_t svarint(const uint8_t *t, size_t n, size_t *i)
{
	uint32_t v = varint(t, n, i);
	return v & 1 ? -(int32_t)(v >> 1) : (int32_t)(v >> 1);
}

/* The line of byte offset addr in 3.10's line table (Objects/lnotab_notes.txt: (start delta, line delta) byte
 * pairs, line delta -128: no line), as PyCode_Addr2Line(); -1 when it has none. */
static int64_t line_310(const uint8_t *t, size_t n, int64_t first, int64_t addr)
{
	if (addr < 0)
		return first;
	int64_t line = first;
	uint64_t end = 0;
	for (size_t i = 0; i + 1 < n; i += 2) {
		uint64_t start = end;
		end += t[i];
		int8_t ld = (int8_t)t[i + 1];
		int64_t cur = ld == -128 ? -1 : (line += ld);
		if ((uint64_t)addr >= start && (uint64_t)addr < end)
			return cur;
	}
	return -1;
}

/* The same in 3.11+'s location table (Objects/locations.md): an entry's first byte has bit 7 set, its code in bits
 * 3-6 and its length in code units - 1 in bits 0-2; the line delta is 0 for codes 0-9 (short forms) and 15 (no
 * location: no line), code - 10 for 10-12 (one-line forms), a signed varint for 13 (no columns) and 14 (long). */
static int64_t line_311(const uint8_t *t, size_t n, int64_t first, int64_t addr)
{
	if (addr < 0)
		return first;
	int64_t line = first;
	uint64_t end = 0;
	for (size_t i = 0; i < n;) {
		uint8_t b = t[i++];
		if (!(b & 0x80))
			continue; /* not an entry's first byte: resynchronise */
		unsigned code = (b >> 3) & 15;
		if (code == 13 || code == 14) {
			size_t k = i;
			line += svarint(t, n, &k);
		} else if (code >= 10 && code <= 12) {
			line += code - 10;
		}
		uint64_t start = end;
		end += ((b & 7) + 1) * 2;
		if ((uint64_t)addr >= start && (uint64_t)addr < end)
			return code == 15 ? -1 : line;
		while (i < n && !(t[i] & 0x80))
			i++;
	}
	return -1;
}

/* e's line table and code length, read into e at the first use (cached with cache set and while PY_LINES_TOTAL
 * allows, else into *tmp, which the caller frees). 0 or -errno. */
static int code_lines(struct py_codes *c, pid_t pid, const struct py_layout *L, struct py_code *e, bool cache,
		      uint8_t **tmp)
{
	*tmp = NULL;
	if (e->lines_state)
		return e->lines_state > 0 ? 0 : -EINVAL;
	bool cached;
	int fd = mem_fd(c, pid, &cached), err;
	uint64_t bytes, size, units = 0;
	if (fd < 0)
		return fd;
	if ((err = rd_ptr(fd, e->code + L->code_linetable, &bytes)) || !bytes ||
	    (err = rd_ptr(fd, bytes + PY_BYTES_SIZE, &size)) ||
	    (L->code_adaptive != PY_OFF_NONE && (err = rd_ptr(fd, e->code + PY_VAR_SIZE, &units))))
		return err ? err : -EINVAL;
	if (size > PY_LINETABLE_MAX || units > UINT32_MAX / 2) {
		e->lines_state = -1;
		return -E2BIG;
	}
	uint8_t *t = malloc(size ? size : 1);
	if (!t)
		return -ENOMEM;
	if (size && (err = rd(fd, bytes + PY_BYTES_DATA, t, size))) {
		free(t);
		return err;
	}
	e->code_units = (uint32_t)units;
	e->lines_len = (uint32_t)size;
	if (cache && c->lines_bytes + size <= PY_LINES_TOTAL) {
		e->lines = t;
		e->lines_state = 1;
		c->lines_bytes += size;
	} else {
		*tmp = t;
	}
	return 0;
}

/* The line of instruction instr of e into out (a copy of e->info). */
static void code_line(struct py_codes *c, pid_t pid, const struct py_layout *L, struct py_code *e, bool cache,
		      uint64_t instr, struct py_code_info *out)
{
	uint8_t *tmp;
	out->line = out->first_line;
	out->line_decoded = 0;
	if (code_lines(c, pid, L, e, cache, &tmp))
		return;
	const uint8_t *t = e->lines ? e->lines : tmp;
	int64_t line;
	if (L->code_adaptive == PY_OFF_NONE) { /* 3.10: f_lasti, in code units; -1 before the first one */
		line = line_310(t, e->lines_len, out->first_line, (int64_t)(int32_t)(uint32_t)instr * 2);
	} else { /* 3.11+: a pointer into co_code_adaptive; one before it when no instruction ran yet */
		int64_t addr = (int64_t)(instr - (e->code + L->code_adaptive));
		bool in = addr >= -2 && addr < (int64_t)e->code_units * 2;
		line = in ? line_311(t, e->lines_len, out->first_line, addr) : -1;
	}
	free(tmp);
	if (line > 0 && line <= UINT32_MAX) {
		out->line = (uint32_t)line;
		out->line_decoded = 1;
	}
}

int pyruntime__code_at(struct py_codes *c, pid_t pid, const struct py_layout *L, uint64_t code, uint64_t instr,
		       struct py_code_info *out)
{
	bool found;
	struct py_code *e = code_find(c, pid, code, &found), tmp;
	if (!e || !found) {
		struct py_code_info ci;
		int err;
		code_read(c, pid, L, code, &ci, &err);
		if (err) {
			*out = (struct py_code_info){0};
			snprintf(out->qualname, sizeof(out->qualname), "[py:unreadable]");
			snprintf(out->name, sizeof(out->name), "[py:unreadable]");
			return err;
		}
		if (e)
			c->n++;
		else /* full until the next trim: this one is not kept */
			e = &tmp;
		*e = (struct py_code){.pid = pid, .code = code, .info = ci};
	}
	*out = e->info;
	code_line(c, pid, L, e, e != &tmp, instr, out);
	return 0;
}

void pyruntime__codes_trim(struct py_codes *c)
{
	if (c->n >= PY_CODES / 2) { /* keep probes short: start over */
		for (size_t i = 0; i < PY_CODES; i++)
			free(c->v[i].lines);
		memset(c->v, 0, PY_CODES * sizeof(*c->v));
		c->n = 0;
		c->lines_bytes = 0;
	}
}
