// SPDX-License-Identifier: BSD-2-Clause
/* libFuzzer target for the readers of a CPython process's memory (src/profile/pyruntime.c): the reference walk
 * pyruntime__walk() (_PyRuntime -> interpreter -> thread states -> frames), the code object names and lines of
 * pyruntime__code_at() / pyruntime__code() (str objects of every kind, 3.10's and 3.11+'s line tables), and the
 * /proc/PID/maps reader of pyruntime__detect_maps(). A profiled process writes all of it: a hostile or corrupted
 * interpreter must not crash, hang or mislead loupe.
 *
 * The "process" is this one (pid = getpid(), read through /proc/self/mem as in production): the input is a memory
 * image mapped at a fixed address so that its pointers mean the same in every run, and ending at IMG_END, a page
 * boundary with nothing mapped after it (nor for 4 GiB before the image's first page), so that any structure the
 * input leaves unfinished is cut by unmapped memory, as a read past a mapping is in a real process.
 * Byte 0: bit 7 clear: the memory walkers, layout (byte 0 & 0x7f) % the number of layouts; header (little endian):
 *   [1] flags: bit 0: no entry mask; bit 1: the thread key is the thread_id of thread state number (flags >> 4) & 7
 *       of the image's list (as the oracle reads it), not [7..14]; bit 2: the extra code object's names are read
 *       by pyruntime__code() before pyruntime__code_at()
 *   [2] max frames (signed); [3..6] _PyRuntime = IMG_END - this; [7..14] the thread key;
 *   [15..18] one more code object = IMG_END - this, [19..22] its instruction: IMG_END - this (3.11+), f_lasti (3.10)
 *   then the image, whose last byte lies at IMG_END - 1.
 * Byte 0 with bit 7 set: the maps reader; [1..4] the value of this program's Py_Version (it defines _PyRuntime and
 * Py_Version, so its own executable reads as a CPython), then the text of /proc/PID/maps, with no '/' (files are
 * only named through tokens, so nothing outside this program is opened): @X this executable's path, @N its inode,
 * @D its device, @T-@U its executable mapping, @F that mapping's file offset, @L that whole line.
 * Invariants:
 *   walk: the frames, entry mask and result of an independent walk of the image by the documented algorithm
 *     (include/unwind.h, with the BPF program's rule that an unreadable pointer reads 0) whenever the image alone
 *     decides them; else n within [0, min(max, PY_FRAMES_MAX)] or a negative errno; out[] untouched past n.
 *   names: NUL-terminated in their arrays; valid UTF-8 without control characters, C1 controls or ';'; file and
 *     module without '/'; name is "module.qualname"; exactly the expected text for ASCII names (cut to
 *     PY_NAME_MAX - 4 bytes + "..."), "[unknown]" for an unreadable file name; an unreadable code object is a
 *     negative errno with the "[py:unreadable]" placeholder, exactly when the image says so.
 *   lines: the line of the documented table semantics (3.10 pairs, 3.11+ location entries, instruction range),
 *     first_line and line_decoded 0 when not decoded; pyruntime__code() and a second pyruntime__code_at() agree.
 *   maps: 1 (a file of ours, its basename in file, a version its layout's), 0 (all empty) or a negative errno; a
 *     runtime address that is _PyRuntime's means Py_Version was read from memory: that version and its layout.
 * Seeds ($LOUPE_FUZZ_SEEDS): for every layout a stack of three frames (a 3.12+ shim, 3.11's is_entry) in the second
 * of two thread states, names of every str kind, line tables, and the same with a cyclic frame chain; maps texts
 * naming this executable. $LOUPE_FUZZ_VERBOSE: what an input read, on stderr. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_file.h"
#include "profile/pyruntime.h"

/* What pyruntime__detect() looks for in this program's own executable. */
uint8_t _PyRuntime[64] __attribute__((used));
uint32_t Py_Version __attribute__((used)) = 0x030b07f0;

#define IMG_END 0x500000100000ull /* far from the heap, the libraries and ASan's regions */
#define IMG_MAX (1u << 20)
#define NEAR (4ull << 30)	   /* nothing else is mapped this close to the image */
#define HDR 23
#define PAGE 4096ull

static const struct py_layout *layouts;
static size_t nlayouts;
static struct py_codes *codes;
static uint64_t map_start; /* the image's first page; the mapping ends at IMG_END */
static bool verbose;	   /* $LOUPE_FUZZ_VERBOSE: what each input read, on stderr */

/* ---- the image ---- */

static void image_map(const uint8_t *p, size_t n)
{
	if (map_start)
		CHECK(!munmap((void *)(uintptr_t)map_start, IMG_END - map_start));
	map_start = (IMG_END - n) & ~(PAGE - 1);
	if (map_start == IMG_END)
		map_start -= PAGE;
	void *m = mmap((void *)(uintptr_t)map_start, IMG_END - map_start, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	CHECK(m == (void *)(uintptr_t)map_start);
	memcpy((uint8_t *)m + (IMG_END - n - map_start), p, n);
}

enum { O_OK = 0, O_FAIL = -1, O_UNKNOWN = -2, O_ERRNO = INT_MIN };

static bool in_map(uint64_t a)
{
	return a >= map_start && a < IMG_END;
}

static bool unmapped(uint64_t a)
{
	return a < 0x10000 || (a >= 1ull << 47 && a < 1ull << 63) ||
	       (!in_map(a) && a >= IMG_END - NEAR && a < IMG_END + NEAR);
}

/* A read of [a, a + n) as the kernel answers it: O_OK (copied), O_FAIL (some byte is unmapped: a short read) or
 * O_UNKNOWN (memory of this process outside the image: the image does not decide). */
static int o_rd(uint64_t a, void *buf, size_t n)
{
	if (!n)
		return O_OK;
	uint64_t last = a + n - 1;
	if (last < a || last >= 1ull << 63)
		return O_UNKNOWN; /* the vsyscall page may be readable */
	if (in_map(a) && in_map(last)) {
		memcpy(buf, (const void *)(uintptr_t)a, n);
		return O_OK;
	}
	return unmapped(a) || unmapped(last) ? O_FAIL : O_UNKNOWN;
}

/* A pointer, 0 when unreadable (bpf_probe_read_user()'s rule). */
static int o_ptr(uint64_t a, uint64_t *v)
{
	*v = 0;
	int r = o_rd(a, v, 8);
	if (r)
		*v = 0;
	return r;
}

/* ---- the walk ---- */

struct owalk {
	int rc; /* frames, -ESRCH, or O_ERRNO (any other negative errno) */
	struct prof_pyframe f[PY_FRAMES_MAX];
	uint64_t mask;
};

/* The thread state whose id is key (key_index >= 0: the key_index-th one, its id into *key). */
static int o_tstate(const struct py_layout *L, uint64_t runtime, uint64_t *key, int key_index, uint64_t *tstate,
		    bool *runtime_bad)
{
	uint64_t interp, ts, id;
	*tstate = 0;
	*runtime_bad = false;
	int r = o_ptr(runtime + L->runtime_interpreters_head, &interp);
	if (r == O_UNKNOWN)
		return r;
	if (r == O_FAIL) {
		*runtime_bad = true;
		return O_OK;
	}
	if (!interp || (r = o_ptr(interp + L->interp_threads_head, &ts)))
		return r == O_UNKNOWN ? r : O_OK;
	for (int i = 0; i < PY_THREADS_MAX && ts; i++) {
		r = o_ptr(ts + L->tstate_thread_id, &id);
		if (r == O_UNKNOWN)
			return r;
		if (key_index == i && !r)
			*key = id;
		if (!r && id == *key && key_index <= i) {
			*tstate = ts;
			return O_OK;
		}
		if ((r = o_ptr(ts + L->tstate_next, &ts)))
			return r == O_UNKNOWN ? r : O_OK;
	}
	return O_OK;
}

/* include/unwind.h's walk over the image: false when the image does not decide it. */
static bool o_walk(const struct py_layout *L, uint64_t runtime, uint64_t key, int max, struct owalk *w)
{
	uint64_t tstate, frame = 0, cframe;
	bool bad;
	memset(w, 0, sizeof(*w));
	if (o_tstate(L, runtime, &key, -1, &tstate, &bad))
		return false;
	if (bad || !tstate) {
		w->rc = bad ? O_ERRNO : -ESRCH;
		return true;
	}
	if (L->tstate_cframe != PY_OFF_NONE) {
		if (o_ptr(tstate + L->tstate_cframe, &cframe) == O_UNKNOWN ||
		    (cframe && o_ptr(cframe + L->cframe_current_frame, &frame) == O_UNKNOWN))
			return false;
	} else if (o_ptr(tstate + L->tstate_frame, &frame) == O_UNKNOWN) {
		return false;
	}
	int n = 0;
	if (max > PY_FRAMES_MAX)
		max = PY_FRAMES_MAX;
	for (int step = 0; step < PY_FRAMES_MAX && frame && n < max; step++) {
		uint8_t head[PY_WALK_HEAD];
		int r = o_rd(frame, head, sizeof(head));
		if (r == O_UNKNOWN)
			return false;
		if (r)
			break;
		uint64_t code, instr = 0;
		uint32_t lasti;
		memcpy(&code, head + L->frame_code, 8);
		memcpy(&frame, head + L->frame_previous, 8);
		if (L->entry == PY_ENTRY_EACH) {
			memcpy(&lasti, head + L->frame_instr, 4);
			instr = lasti;
		} else {
			memcpy(&instr, head + L->frame_instr, 8);
		}
		uint8_t owner = L->frame_owner != PY_OFF_NONE ? head[L->frame_owner] : 0;
		if (L->entry == PY_ENTRY_CSTACK && owner == PY_OWNED_BY_CSTACK) {
			if (n)
				w->mask |= 1ull << (n - 1);
			continue;
		}
		if (L->entry == PY_ENTRY_EACH || (L->entry == PY_ENTRY_FLAG && owner))
			w->mask |= 1ull << n;
		w->f[n++] = (struct prof_pyframe){code, instr};
	}
	w->rc = n;
	return true;
}

/* ---- strings ---- */

static bool utf8_clean(const char *s, bool slash_ok)
{
	const unsigned char *u = (const unsigned char *)s;
	while (*u) {
		uint32_t cp;
		int k;
		if (*u < 0x80)
			cp = *u, k = 0;
		else if ((*u & 0xe0) == 0xc0)
			cp = *u & 0x1f, k = 1;
		else if ((*u & 0xf0) == 0xe0)
			cp = *u & 0x0f, k = 2;
		else if ((*u & 0xf8) == 0xf0)
			cp = *u & 0x07, k = 3;
		else
			return false;
		for (int i = 1; i <= k; i++) {
			if ((u[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (u[i] & 0x3f);
		}
		static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
		if (cp < min[k] || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
			return false; /* overlong, out of range, surrogate */
		if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || cp == ';' || (!slash_ok && cp == '/'))
			return false;
		u += k + 1;
	}
	return true;
}

static void check_text(const char *s, size_t cap, bool slash_ok)
{
	CHECK(memchr(s, '\0', cap));
	CHECK(utf8_clean(s, slash_ok));
}

/* A str as the image says: O_OK with, when every code point kept is printable ASCII other than ';', that text in
 * txt (else txt[0] = 1 and the text is not predicted); *cut: code points left out. maxcp code points kept, the
 * first ones or (tail) the last ones. */
static int o_str(const struct py_layout *L, uint64_t addr, bool tail, size_t maxcp, char *txt, bool *cut)
{
	uint64_t len = 0;
	uint32_t state = 0;
	int r;
	txt[0] = 1;
	if (!addr)
		return O_FAIL;
	if ((r = o_rd(addr + 16, &len, 8)) || (r = o_rd(addr + L->unicode_state, &state, 4)))
		return r;
	unsigned kind = (state >> 2) & 7, compact = (state >> 5) & 1, ascii = (state >> 6) & 1;
	if (!compact || (kind != 1 && kind != 2 && kind != 4) || (ascii && kind != 1) || len > (1ull << 40))
		return O_FAIL;
	size_t n = len < maxcp ? (size_t)len : maxcp;
	*cut = len > n;
	uint64_t data = addr + (ascii ? L->unicode_ascii_data : L->unicode_compact_data) + (tail ? (len - n) * kind : 0);
	uint8_t raw[4 * 256];
	if ((r = o_rd(data, raw, n * kind)))
		return r;
	for (size_t i = 0; i < n; i++) {
		uint32_t cp = 0;
		for (unsigned b = 0; b < kind; b++)
			cp |= (uint32_t)raw[i * kind + b] << (8 * b);
		if (cp < 0x20 || cp >= 0x7f || cp == ';') {
			txt[0] = 1;
			return O_OK;
		}
		txt[i] = (char)cp;
	}
	txt[n] = '\0';
	return O_OK;
}

/* fit() of pyruntime.c for ASCII text: whole, or PY_NAME_MAX - 4 bytes and "...". */
static void o_fit(char *dst, const char *src, size_t len, bool cut)
{
	if (!cut && len < PY_NAME_MAX)
		snprintf(dst, PY_NAME_MAX, "%.*s", (int)len, src);
	else
		snprintf(dst, PY_NAME_MAX, "%.*s...", (int)(len < PY_NAME_MAX - 4 ? len : PY_NAME_MAX - 4), src);
}

/* ---- code objects ---- */

struct ocode {
	int state;	     /* O_OK: readable; O_FAIL: not (a negative errno and the placeholder); O_UNKNOWN */
	bool qual_known, file_known;
	char qual[PY_NAME_MAX], file[PY_NAME_MAX], module[PY_NAME_MAX];
	uint32_t first;
};

static void o_code(const struct py_layout *L, uint64_t code, struct ocode *o)
{
	uint64_t qual, file;
	int32_t first = 0;
	uint16_t qoff = L->code_qualname != PY_OFF_NONE ? L->code_qualname : L->code_name;
	char txt[4 * 256 + 1];
	bool cut;
	memset(o, 0, sizeof(*o));
	if ((o->state = o_ptr(code + qoff, &qual)) || (o->state = o_ptr(code + L->code_filename, &file)) ||
	    (o->state = o_rd(code + L->code_firstlineno, &first, 4)) ||
	    (o->state = o_str(L, qual, false, PY_NAME_MAX, txt, &cut)))
		return;
	o->first = first > 0 ? (uint32_t)first : 0;
	if (txt[0] != 1) {
		o->qual_known = true;
		o_fit(o->qual, txt, strlen(txt), cut);
	}
	int r = o_str(L, file, true, 256, txt, &cut);
	if (r == O_FAIL) {
		o->file_known = true;
		strcpy(o->file, "[unknown]");
		strcpy(o->module, "[unknown]");
	} else if (!r && txt[0] != 1) {
		o->file_known = true;
		const char *base = strrchr(txt, '/');
		base = base ? base + 1 : txt;
		cut = cut && base == txt;
		size_t bl = strlen(base);
		o_fit(o->file, base, bl, cut);
		if (!cut && bl > 3 && !strcmp(base + bl - 3, ".py"))
			bl -= 3;
		o_fit(o->module, base, bl, cut);
	}
}

/* The line the image's table gives instr (-1: none decoded), or O_UNKNOWN - 10 when the image does not say. */
static int64_t o_line(const struct py_layout *L, uint64_t code, uint64_t instr, uint32_t first)
{
	static uint8_t t[PY_LINETABLE_MAX];
	uint64_t bytes, size, units = 0;
	int r;
	if ((r = o_ptr(code + L->code_linetable, &bytes)) || !bytes || (r = o_ptr(bytes + 16, &size)) ||
	    (L->code_adaptive != PY_OFF_NONE && (r = o_ptr(code + 16, &units))))
		return r == O_UNKNOWN ? -100 : -1;
	if (size > PY_LINETABLE_MAX || units > UINT32_MAX / 2)
		return -1;
	if ((r = o_rd(bytes + 32, t, size)))
		return r == O_UNKNOWN ? -100 : -1;
	int64_t line = first;
	if (L->code_adaptive == PY_OFF_NONE) {
		/* Objects/lnotab_notes.txt (3.10): (bytecode delta, line delta) pairs; line delta -128: no line. */
		int64_t addr = (int64_t)(int32_t)(uint32_t)instr * 2;
		if (addr < 0)
			return line;
		for (uint64_t i = 0, start = 0; i + 1 < size; i += 2) {
			uint64_t end = start + t[i];
			line += t[i + 1] == 0x80 ? 0 : (int8_t)t[i + 1];
			if ((uint64_t)addr >= start && (uint64_t)addr < end)
				return t[i + 1] == 0x80 ? -1 : line;
			start = end;
		}
		return -1;
	}
	/* Objects/locations.md (3.11+): entries start with a byte with bit 7 set: code in bits 3-6, length - 1 (in
	 * code units) in bits 0-2; code 15 has no line, 13 and 14 a signed varint line delta, 10-12 delta code - 10. */
	int64_t addr = (int64_t)(instr - (code + L->code_adaptive));
	if (addr < -2 || addr >= (int64_t)units * 2)
		return -1;
	if (addr < 0)
		return line;
	for (uint64_t i = 0, start = 0; i < size; i++) {
		if (!(t[i] & 0x80))
			continue;
		unsigned c = (t[i] >> 3) & 15;
		if (c == 13 || c == 14) {
			uint32_t v = 0;
			for (unsigned shift = 0, k = i + 1; k < size && shift < 32; shift += 6, k++) {
				v |= (uint32_t)(t[k] & 63) << shift;
				if (!(t[k] & 64))
					break;
			}
			line += v & 1 ? -(int64_t)(v >> 1) : (int64_t)(v >> 1);
		} else if (c >= 10 && c <= 12) {
			line += c - 10;
		}
		uint64_t end = start + ((t[i] & 7) + 1) * 2;
		if ((uint64_t)addr >= start && (uint64_t)addr < end)
			return c == 15 ? -1 : line;
		start = end;
	}
	return -1;
}

static void check_names(const struct py_code_info *ci)
{
	check_text(ci->qualname, sizeof(ci->qualname), true);
	check_text(ci->module, sizeof(ci->module), false);
	check_text(ci->file, sizeof(ci->file), false);
	check_text(ci->name, sizeof(ci->name), true);
	char name[sizeof(ci->name) + 2];
	snprintf(name, sizeof(name), "%s.%s", ci->module, ci->qualname);
	CHECK(!strcmp(name, ci->name));
}

/* code_first: pyruntime__code() reads it first (a stack symbolised without lines), pyruntime__code_at() finds it. */
static void check_code(const struct py_layout *L, uint64_t code, uint64_t instr, bool code_first)
{
	struct ocode o;
	struct py_code_info ci, again;
	o_code(L, code, &o);
	if (code_first) {
		const struct py_code_info *c = pyruntime__code(codes, getpid(), L, code);
		CHECK(c ? o.state != O_FAIL : o.state != O_OK);
		if (c)
			check_names(c);
	}
	memset(&ci, 0x5a, sizeof(ci));
	int rc = pyruntime__code_at(codes, getpid(), L, code, instr, &ci);
	if (rc) {
		CHECK(rc < 0 && rc > -4096 && o.state != O_OK);
		CHECK(!strcmp(ci.qualname, "[py:unreadable]") && !strcmp(ci.name, "[py:unreadable]"));
		CHECK(!ci.module[0] && !ci.file[0]);
		CHECK(!pyruntime__code(codes, getpid(), L, code));
		return;
	}
	CHECK(o.state != O_FAIL);
	check_names(&ci);
	if (o.state == O_OK) {
		CHECK(ci.first_line == o.first);
		if (o.qual_known)
			CHECK(!strcmp(ci.qualname, o.qual));
		if (o.file_known)
			CHECK(!strcmp(ci.file, o.file) && !strcmp(ci.module, o.module));
		int64_t line = o_line(L, code, instr, o.first);
		if (line != -100) {
			bool decoded = line > 0 && line <= UINT32_MAX;
			CHECK(ci.line_decoded == decoded);
			CHECK(ci.line == (decoded ? (uint32_t)line : ci.first_line));
		}
	}
	CHECK(ci.line_decoded ? ci.line > 0 : ci.line == ci.first_line);
	/* The cached entry (and its cached line table) says the same. */
	CHECK(pyruntime__code_at(codes, getpid(), L, code, instr, &again) == 0);
	CHECK(!memcmp(&ci, &again, sizeof(ci)));
	if (verbose)
		fprintf(stderr, "  %s (%s:%u, line %u%s)\n", ci.name, ci.file, ci.first_line, ci.line,
			ci.line_decoded ? "" : ", not decoded");
	const struct py_code_info *c = pyruntime__code(codes, getpid(), L, code);
	CHECK(c && !strcmp(c->name, ci.name) && !strcmp(c->qualname, ci.qualname) && !strcmp(c->file, ci.file) &&
	      !strcmp(c->module, ci.module) && c->first_line == ci.first_line && c->line == c->first_line &&
	      !c->line_decoded);
}

static uint32_t le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void fuzz_memory(const uint8_t *data, size_t size)
{
	if (size < HDR)
		return;
	const struct py_layout *L = &layouts[(data[0] & 0x7f) % nlayouts];
	uint8_t flags = data[1];
	int max = (int8_t)data[2];
	uint64_t runtime = IMG_END - le32(data + 3), key, code = IMG_END - le32(data + 15);
	uint64_t instr = L->entry == PY_ENTRY_EACH ? le32(data + 19) : IMG_END - le32(data + 19);
	memcpy(&key, data + 7, 8);
	size_t n = size - HDR;
	image_map(data + HDR, n < IMG_MAX ? n : IMG_MAX);
	pyruntime__codes_drop_pid(codes, getpid()); /* the same addresses hold other objects now */

	if (flags & 2) {
		uint64_t ts;
		bool bad;
		if (o_tstate(L, runtime, &key, (flags >> 4) & 7, &ts, &bad))
			return;
	}
	struct py_proc p = {.layout = (int)(L - layouts) + 1, .runtime = runtime};
	size_t cap = max > 0 ? (size_t)max : 1;
	struct prof_pyframe *out = malloc(cap * sizeof(*out)); /* exactly max: ASan sees a write past it */
	CHECK(out);
	memset(out, 0xa5, cap * sizeof(*out));
	uint64_t mask = 0x5a5a;
	int rc = pyruntime__walk(getpid(), key, &p, out, max, flags & 1 ? NULL : &mask);
	struct owalk w;
	if (verbose)
		fprintf(stderr, "3.%u walk: %d frames, entry mask %#" PRIx64 "\n", L->version & 0xff, rc, mask);
	CHECK(rc >= -4095 && rc <= (max < PY_FRAMES_MAX ? (max > 0 ? max : 0) : PY_FRAMES_MAX));
	if (o_walk(L, runtime, key, max, &w)) {
		if (w.rc == O_ERRNO)
			CHECK(rc < 0 && rc != -ESRCH);
		else
			CHECK(rc == w.rc);
		for (int i = 0; i < rc; i++)
			CHECK(out[i].code == w.f[i].code && out[i].instr == w.f[i].instr);
		if (!(flags & 1))
			CHECK(mask == (rc > 0 ? w.mask : 0));
	}
	for (size_t i = rc > 0 ? (size_t)rc : 0; i < cap; i++) {
		static const uint8_t pattern[sizeof(*out)] = {[0 ... sizeof(*out) - 1] = 0xa5};
		CHECK(!memcmp(&out[i], pattern, sizeof(*out)));
	}
	if (rc > 0 && !(flags & 1))
		CHECK(!(mask >> (rc - 1) >> 1)); /* no entry bit past the frames */
	for (int i = 0; i < rc; i++)
		check_code(L, out[i].code, out[i].instr, false);
	free(out);
	check_code(L, code, instr, flags & 4);
}

/* ---- /proc/PID/maps ---- */

static char exe[PATH_MAX], exe_line[PATH_MAX + 128], exe_dev[16], exe_ino[24], exe_start[24], exe_end[24],
	exe_off[24];

/* This executable's path and its executable mapping, from /proc/self/maps. */
static void exe_info(void)
{
	CHECK(realpath("/proc/self/exe", exe));
	size_t n;
	char *text = (char *)slurp("/proc/self/maps", 1 << 20, &n);
	CHECK(text);
	text[n < (1 << 20) ? n : n - 1] = '\0';
	for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
		unsigned long long s, e, off, ino;
		unsigned maj, min;
		char perms[8];
		int pos = 0;
		if (sscanf(l, "%llx-%llx %7s %llx %x:%x %llu %n", &s, &e, perms, &off, &maj, &min, &ino, &pos) != 7 ||
		    perms[2] != 'x' || strcmp(l + pos, exe))
			continue;
		snprintf(exe_start, sizeof(exe_start), "%llx", s);
		snprintf(exe_end, sizeof(exe_end), "%llx", e);
		snprintf(exe_off, sizeof(exe_off), "%08llx", off);
		snprintf(exe_dev, sizeof(exe_dev), "%02x:%02x", maj, min);
		snprintf(exe_ino, sizeof(exe_ino), "%llu", ino);
		snprintf(exe_line, sizeof(exe_line), "%s-%s %s %s %s %s %s", exe_start, exe_end, perms, exe_off, exe_dev,
			 exe_ino, exe);
		break;
	}
	free(text);
	CHECK(exe_line[0]);
}

/* text[0 .. n) with the tokens replaced, NUL-terminated, on the heap; NULL when it holds a '/'. */
static char *expand(const char *text, size_t n)
{
	if (memchr(text, '/', n))
		return NULL;
	size_t cap = n * 8 + 64, o = 0;
	char *s = malloc(cap);
	CHECK(s);
	for (size_t i = 0; i < n; i++) {
		const char *t = NULL;
		if (text[i] == '@' && i + 1 < n) {
			switch (text[i + 1]) {
			case 'X': t = exe; break;
			case 'N': t = exe_ino; break;
			case 'D': t = exe_dev; break;
			case 'T': t = exe_start; break;
			case 'U': t = exe_end; break;
			case 'F': t = exe_off; break;
			case 'L': t = exe_line; break;
			}
		}
		size_t tl = t ? strlen(t) : 1;
		if (o + tl + 1 > cap) {
			cap = (o + tl + 1) * 2;
			s = realloc(s, cap);
			CHECK(s);
		}
		memcpy(s + o, t ? t : text + i, tl);
		o += tl;
		i += t ? 1 : 0;
	}
	s[o] = '\0';
	return s;
}

static void fuzz_maps(const uint8_t *data, size_t size)
{
	if (size < 5)
		return;
	char *text = expand((const char *)data + 5, size - 5);
	if (!text)
		return;
	Py_Version = le32(data + 1);
	struct py_proc p;
	memset(&p, 0x5a, sizeof(p));
	int rc = pyruntime__detect_maps(getpid(), text, &p);
	free(text);
	if (verbose)
		fprintf(stderr, "maps: %d, layout %d, %s, %s, runtime %s, why '%s'\n", rc, p.layout, p.version, p.file,
			p.runtime == (uint64_t)(uintptr_t)_PyRuntime ? "_PyRuntime" : "elsewhere", p.why);
	CHECK(rc == 0 || rc == 1 || rc == -ENOMEM);
	CHECK(memchr(p.version, '\0', sizeof(p.version)) && memchr(p.file, '\0', sizeof(p.file)) &&
	      memchr(p.why, '\0', sizeof(p.why)));
	if (rc != 1) {
		CHECK(!p.layout && !p.runtime && !p.hexversion && !p.version[0] && !p.file[0] && !p.why[0]);
		return;
	}
	/* Only this executable can be opened: a path naming it, or its mapping through /proc/self/map_files. */
	const char *base = strrchr(exe, '/') + 1;
	CHECK(!strchr(p.file, '/') && !strncmp(p.file, base, strlen(p.file) < strlen(base) ? strlen(p.file) : strlen(base)));
	CHECK(p.layout >= 0 && (size_t)p.layout <= nlayouts);
	if (p.layout) {
		char v[16];
		snprintf(v, sizeof(v), "%u.%u", layouts[p.layout - 1].version >> 8, layouts[p.layout - 1].version & 0xff);
		CHECK(!strcmp(v, p.version) && !p.why[0] && p.hexversion >> 16 == layouts[p.layout - 1].version);
	} else {
		CHECK(p.why[0]);
	}
	if (p.runtime == (uint64_t)(uintptr_t)_PyRuntime && Py_Version) /* the load bias is right */
		CHECK(p.hexversion == Py_Version);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!codes) {
		layouts = pyruntime__layouts(&nlayouts);
		codes = pyruntime__codes_new();
		CHECK(codes && nlayouts);
		exe_info();
	}
	verbose = getenv("LOUPE_FUZZ_VERBOSE");
	if (!size)
		return 0;
	if (data[0] & 0x80)
		fuzz_maps(data, size);
	else
		fuzz_memory(data, size);
	return 0;
}

/* ---- seeds: fake interpreters, built downwards from IMG_END ---- */

struct img {
	uint8_t b[32768];
	size_t top; /* b[top ..] is the image */
};

static uint64_t img_alloc(struct img *m, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	CHECK(m->top >= n);
	m->top -= n;
	memset(m->b + m->top, 0, n);
	return IMG_END - (sizeof(m->b) - m->top);
}

static void img_put(struct img *m, uint64_t addr, const void *p, size_t n)
{
	size_t at = sizeof(m->b) - (IMG_END - addr);
	CHECK(at >= m->top && at + n <= sizeof(m->b));
	memcpy(m->b + at, p, n);
}

static void img_ptr(struct img *m, uint64_t addr, uint64_t v)
{
	img_put(m, addr, &v, 8);
}

/* A field at offset off of a structure whose other fields are not read: only the field is in the image. */
static uint64_t img_field(struct img *m, uint16_t off, uint64_t v)
{
	uint64_t a = img_alloc(m, 8);
	img_ptr(m, a, v);
	return a - off;
}

/* A compact str of the given code points, of the kind CPython would choose. */
static uint64_t img_str(struct img *m, const struct py_layout *L, const uint32_t *cp, size_t n)
{
	unsigned kind = 1, ascii = 1;
	for (size_t i = 0; i < n; i++) {
		ascii &= cp[i] < 0x80;
		kind = cp[i] > 0xffff ? 4 : cp[i] > 0xff && kind < 2 ? 2 : kind;
	}
	uint16_t data = ascii ? L->unicode_ascii_data : L->unicode_compact_data;
	uint64_t a = img_alloc(m, data + (n + 1) * kind);
	uint64_t len = n;
	uint32_t state = kind << 2 | 1 << 5 | ascii << 6;
	img_put(m, a + 16, &len, 8);
	img_put(m, a + L->unicode_state, &state, 4);
	for (size_t i = 0; i < n; i++)
		img_put(m, a + data + i * kind, &cp[i], kind);
	return a;
}

static uint64_t img_cstr(struct img *m, const struct py_layout *L, const char *s)
{
	uint32_t cp[256];
	size_t n = 0;
	while (*s && n < 256)
		cp[n++] = (unsigned char)*s++;
	return img_str(m, L, cp, n);
}

static uint64_t img_bytes(struct img *m, const uint8_t *p, size_t n)
{
	uint64_t a = img_alloc(m, 32 + n + 1), len = n;
	img_put(m, a + 16, &len, 8);
	img_put(m, a + 32, p, n);
	return a;
}

static uint64_t img_code(struct img *m, const struct py_layout *L, uint64_t qual, uint64_t file, int32_t first,
			 uint64_t lines, uint64_t units)
{
	uint64_t a = img_alloc(m, L->code_adaptive != PY_OFF_NONE ? L->code_adaptive + units * 2 : 256);
	img_ptr(m, a + 16, units);
	img_ptr(m, a + L->code_name, qual);
	if (L->code_qualname != PY_OFF_NONE)
		img_ptr(m, a + L->code_qualname, qual);
	img_ptr(m, a + L->code_filename, file);
	img_put(m, a + L->code_firstlineno, &first, 4);
	img_ptr(m, a + L->code_linetable, lines);
	return a;
}

/* A frame; shim: owned by the C stack (3.12+), or 3.11's is_entry. */
static uint64_t img_frame(struct img *m, const struct py_layout *L, uint64_t code, uint64_t instr, uint64_t prev,
			  uint8_t owner)
{
	uint64_t a = img_alloc(m, PY_WALK_HEAD);
	img_ptr(m, a + L->frame_code, code);
	img_ptr(m, a + L->frame_previous, prev);
	if (L->entry == PY_ENTRY_EACH) {
		uint32_t lasti = (uint32_t)instr;
		img_put(m, a + L->frame_instr, &lasti, 4);
	} else {
		img_ptr(m, a + L->frame_instr, instr);
		img_put(m, a + L->frame_owner, &owner, 1);
	}
	return a;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A stack of three code objects (ASCII, latin-1 and UCS-2/UCS-4 names, their line tables), in two thread states;
 * cycle: the outermost frame's previous is the innermost. */
static void seed_stack(const char *dir, size_t li, bool cycle)
{
	static struct img m;
	const struct py_layout *L = &layouts[li];
	const uint64_t key = 0x7f3a12345740ull;
	m.top = sizeof(m.b);
	bool v310 = L->entry == PY_ENTRY_EACH;
	static const uint8_t t310[] = {6, 1, 4, 0x80, 2, 0, 8, 0xfd, 0, 5, 4, 2};
	static const uint8_t t311[] = {0x80 | 13 << 3 | 1, 6, 0x80 | 0 << 3 | 0, 5, 0x80 | 12 << 3 | 2, 1, 4,
				       0x80 | 15 << 3 | 0, 0x80 | 14 << 3 | 0, 9, 0, 1, 2, 0x80 | 13 << 3 | 0, 64 | 8, 3};
	uint64_t lines = v310 ? img_bytes(&m, t310, sizeof(t310)) : img_bytes(&m, t311, sizeof(t311));
	static const uint32_t latin[] = {'c', 'a', 'f', 0xe9, '.', 'g', 'e', 't'};
	static const uint32_t ucs[] = {0x4e2d, '_', 0x1f600, ';', '\n'};
	static const uint32_t file2[] = {'/', 'x', '/', 'm', 0xfc, '.', 'p', 'y'};
	uint64_t c1 = img_code(&m, L, img_cstr(&m, L, "Klass.method"), img_cstr(&m, L, "/srv/app/views.py"), 10, lines, 9);
	uint64_t c2 = img_code(&m, L, img_str(&m, L, latin, 8), img_str(&m, L, file2, 8), 20, lines, 9);
	uint64_t c3 = img_code(&m, L, img_str(&m, L, ucs, 5), img_cstr(&m, L, "<frozen importlib._bootstrap>"), 3,
			       lines, 9);
	uint64_t ad = L->code_adaptive;
	uint64_t f3 = img_frame(&m, L, c3, v310 ? 2 : c3 + ad + 4, 0, 1);
	uint64_t shim = L->entry == PY_ENTRY_CSTACK ? img_frame(&m, L, 0, 0, f3, PY_OWNED_BY_CSTACK) : f3;
	uint64_t f2 = img_frame(&m, L, c2, v310 ? 5 : c2 + ad + 10, shim, L->entry == PY_ENTRY_FLAG);
	uint64_t f1 = img_frame(&m, L, c1, v310 ? 0 : c1 + ad - 2, f2, 0);
	if (cycle)
		img_ptr(&m, f3 + L->frame_previous, f1);
	uint64_t ts2 = img_alloc(&m, 192), ts1 = img_alloc(&m, 192);
	img_ptr(&m, ts1 + L->tstate_next, ts2);
	img_ptr(&m, ts1 + L->tstate_thread_id, 0x7f3a00001740ull);
	img_ptr(&m, ts2 + L->tstate_thread_id, key);
	if (L->tstate_cframe != PY_OFF_NONE)
		img_ptr(&m, ts2 + L->tstate_cframe, img_field(&m, L->cframe_current_frame, f1));
	else
		img_ptr(&m, ts2 + L->tstate_frame, f1);
	uint64_t interp = img_field(&m, L->interp_threads_head, ts1);
	uint64_t runtime = img_field(&m, L->runtime_interpreters_head, interp);

	uint8_t *s = malloc(HDR + sizeof(m.b));
	CHECK(s);
	s[0] = (uint8_t)li;
	s[1] = cycle ? 0x12 : 4;
	s[2] = cycle ? 100 : PY_FRAMES_MAX;
	put32(s + 3, (uint32_t)(IMG_END - runtime));
	memcpy(s + 7, &key, 8);
	put32(s + 15, (uint32_t)(IMG_END - c2));
	put32(s + 19, v310 ? 4 : (uint32_t)(IMG_END - (c2 + ad + 6)));
	size_t n = sizeof(m.b) - m.top;
	memcpy(s + HDR, m.b + m.top, n);
	char name[64];
	snprintf(name, sizeof(name), "%s-3.%u", cycle ? "cycle" : "stack", L->version & 0xff);
	seed_bytes(dir, name, s, HDR + n);
	free(s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	layouts = pyruntime__layouts(&nlayouts);
	codes = pyruntime__codes_new();
	CHECK(codes && nlayouts);
	exe_info();
	/* The harness itself: this program reads as CPython 3.11 through its own maps line, and through its maps. */
	char line[sizeof(exe_line) + 1];
	snprintf(line, sizeof(line), "%s\n", exe_line);
	struct py_proc p;
	CHECK(pyruntime__detect_maps(getpid(), line, &p) == 1 && p.runtime == (uint64_t)(uintptr_t)_PyRuntime);
	CHECK(p.hexversion == Py_Version && !strcmp(p.version, "3.11") && p.layout);
	const char *dir = getenv("LOUPE_FUZZ_SEEDS");
	if (!dir)
		return 0;
	for (size_t i = 0; i < nlayouts; i++) {
		seed_stack(dir, i, false);
		seed_stack(dir, i, true);
	}
	static const char maps_exe[] = "\x80\xf0\x07\x0d\x03@L\n";
	seed_bytes(dir, "maps-exe", maps_exe, sizeof(maps_exe) - 1);
	static const char maps_kinds[] =
		"\x80\x00\x00\x0a\x03"
		"@T-@U r--p 00000000 @D @N @X\n"
		"7f1c2c000000-7f1c2c021000 rwxp 00000000 00:00 0 \n"
		"7f1c2e000000-7f1c2e001000 r-xs 00000000 00:01 34001                      [anon:v8 code]\n"
		"@T-@U r-xp @F 00:00 @N                  @X (deleted)\n"
		"@T-@U r-xp @F @D @N @Xpython3.12\n"
		"7ffd5e1f3000-7ffd5e1f5000 r-xp 00000000 00:00 0                          [vdso]\n";
	seed_bytes(dir, "maps-kinds", maps_kinds, sizeof(maps_kinds) - 1);
	static const char maps_old[] = "\x80\x00\x00\x00\x00@T-@U r-xp @F @D @N @X\n"; /* no Py_Version: the file's */
	seed_bytes(dir, "maps-noversion", maps_old, sizeof(maps_old) - 1);
	return 0;
}
