// SPDX-License-Identifier: BSD-2-Clause
/* Unwind tables: FDE ranges listed from .eh_frame and .debug_frame (dwarf_next_cfi() and the CIE's pointer
 * encoding), each range walked row by row through libdw, each row translated to a struct unwind_row, the spans
 * of both sections merged into one sorted table with UW_CFA_NONE rows in the gaps. */
#include "profile/unwind_table.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REG_RBP 6
#define REG_RSP 7
#define REG_RA 16 /* the return address column: rip */

/* An address range [start, end). */
struct range {
	uint64_t start, end;
};

struct ranges {
	struct range *v;
	size_t n, cap;
};

/* [start, end) and its rule (row.pc unused until emitted). */
struct span {
	uint64_t start, end;
	struct unwind_row row;
};

struct spans {
	struct span *v;
	size_t n, cap;
};

/* A CIE already read: its offset in the section and its FDE pointer encoding. */
struct cie_enc {
	Dwarf_Off off;
	uint8_t enc;
};

struct cies {
	struct cie_enc *v;
	size_t n, cap;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Room for one more element of size sz in *v (n used of *cap). 0 or -ENOMEM. */
static int grow(void **v, size_t n, size_t *cap, size_t sz)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? *cap * 2 : 256;
	void *p = realloc(*v, c * sz);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = c;
	return 0;
}

static int ranges_push(struct ranges *r, uint64_t start, uint64_t end)
{
	if (grow((void **)&r->v, r->n, &r->cap, sizeof(*r->v)))
		return -ENOMEM;
	r->v[r->n++] = (struct range){start, end};
	return 0;
}

static int spans_push(struct spans *s, uint64_t start, uint64_t end, struct unwind_row row)
{
	if (grow((void **)&s->v, s->n, &s->cap, sizeof(*s->v)))
		return -ENOMEM;
	s->v[s->n++] = (struct span){start, end, row};
	return 0;
}

static int range_cmp(const void *a, const void *b)
{
	const struct range *x = a, *y = b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

/* The first section named name that has contents (not SHT_NOBITS: a separate debug file's placeholders), or
 * NULL. Any type: ld may give .eh_frame SHT_X86_64_UNWIND rather than SHT_PROGBITS. */
static Elf_Scn *section(Elf *e, const char *name, GElf_Shdr *sh)
{
	size_t shstrndx;
	if (elf_getshdrstrndx(e, &shstrndx))
		return NULL;
	Elf_Scn *scn = NULL;
	while ((scn = elf_nextscn(e, scn))) {
		if (!gelf_getshdr(scn, sh) || sh->sh_type == SHT_NOBITS)
			continue;
		const char *n = elf_strptr(e, shstrndx, sh->sh_name);
		if (n && !strcmp(n, name))
			return scn;
	}
	return NULL;
}

/* Pointer decoding (DW_EH_PE_*), little-endian ELF64. The value at *p (which is at virtual address vaddr) into
 * *out, *p advanced. 0, -ENOTSUP (an encoding other than absolute or pc-relative) or -EINVAL (past end). */
static int read_encoded(const uint8_t **p, const uint8_t *end, uint8_t enc, uint64_t vaddr, bool apply,
			uint64_t *out)
{
	const uint8_t *q = *p;
	uint64_t v = 0;
	size_t size = 0;
	bool sign = false;
	switch (enc & 0x0f) {
	case DW_EH_PE_absptr:
	case DW_EH_PE_udata8:
	case DW_EH_PE_sdata8:
		size = 8;
		break;
	case DW_EH_PE_udata2:
		size = 2;
		break;
	case DW_EH_PE_sdata2:
		size = 2, sign = true;
		break;
	case DW_EH_PE_udata4:
		size = 4;
		break;
	case DW_EH_PE_sdata4:
		size = 4, sign = true;
		break;
	case DW_EH_PE_uleb128:
	case DW_EH_PE_sleb128: {
		unsigned shift = 0;
		uint8_t b;
		do {
			if (q >= end || shift > 63)
				return -EINVAL;
			b = *q++;
			v |= (uint64_t)(b & 0x7f) << shift;
			shift += 7;
		} while (b & 0x80);
		if ((enc & 0x0f) == DW_EH_PE_sleb128 && shift < 64 && (b & 0x40))
			v |= ~0ull << shift;
		break;
	}
	default:
		return -ENOTSUP;
	}
	if (size) {
		if ((size_t)(end - q) < size)
			return -EINVAL;
		for (size_t i = 0; i < size; i++)
			v |= (uint64_t)q[i] << (8 * i);
		if (sign && size < 8 && (v >> (8 * size - 1)) & 1)
			v |= ~0ull << (8 * size);
		q += size;
	}
	if (apply) {
		switch (enc & 0x70) {
		case DW_EH_PE_absptr:
			break;
		case DW_EH_PE_pcrel:
			v += vaddr;
			break;
		default:
			return -ENOTSUP;
		}
		if (enc & DW_EH_PE_indirect)
			return -ENOTSUP;
	}
	*p = q;
	*out = v;
	return 0;
}

/* The FDE pointer encoding of the .eh_frame CIE at offset off: its augmentation's 'R' byte, absolute without
 * one. 0..255, or -EINVAL / -ENOTSUP. */
static int cie_encoding(const unsigned char *ident, Elf_Data *d, Dwarf_Off off, struct cies *cache)
{
	for (size_t i = 0; i < cache->n; i++)
		if (cache->v[i].off == off)
			return cache->v[i].enc;
	Dwarf_CFI_Entry e;
	Dwarf_Off next;
	if (dwarf_next_cfi(ident, d, true, off, &next, &e) != 0 || e.cie.CIE_id != DW_CIE_ID_64)
		return -EINVAL;
	int enc = DW_EH_PE_absptr;
	const char *a = e.cie.augmentation;
	if (a[0] == 'z') {
		const uint8_t *p = e.cie.augmentation_data, *end = p + e.cie.augmentation_data_size;
		for (a++; *a && enc == DW_EH_PE_absptr; a++) {
			uint64_t ignored;
			switch (*a) {
			case 'P': /* personality: an encoding byte, then a pointer in it */
				if (p >= end)
					return -EINVAL;
				uint8_t penc = *p++;
				if (read_encoded(&p, end, penc & 0x0f, 0, false, &ignored))
					return -EINVAL;
				break;
			case 'L': /* LSDA encoding */
				if (p++ >= end)
					return -EINVAL;
				break;
			case 'R':
				if (p >= end)
					return -EINVAL;
				enc = *p++;
				break;
			case 'S': /* signal frame */
			case 'B': /* AArch64 BTI (never here) */
				break;
			default: /* an unknown letter: 'R', if any, cannot be found past it */
				return -ENOTSUP;
			}
		}
	} else if (a[0] != '\0') {
		return -ENOTSUP; /* "eh" (g++ 2) and other augmentations without 'z' */
	}
	if (grow((void **)&cache->v, cache->n, &cache->cap, sizeof(*cache->v)))
		return -ENOMEM;
	cache->v[cache->n++] = (struct cie_enc){off, (uint8_t)enc};
	return enc;
}

/* The ranges of the FDEs of section scn (.eh_frame when eh, else .debug_frame) into out, empty ones left out,
 * sorted by start. 0 or -errno. */
static int read_fdes(Elf *elf, Elf_Scn *scn, const GElf_Shdr *sh, bool eh, struct ranges *out, char *err,
		     size_t errlen)
{
	const char *name = eh ? ".eh_frame" : ".debug_frame";
	Elf_Data *d = elf_getdata(scn, NULL);
	if (!d || !d->d_buf || !d->d_size)
		return 0;
	const unsigned char *ident = (const unsigned char *)elf_getident(elf, NULL);
	struct cies cies = {0};
	Dwarf_Off off = 0, next;
	int rc = 0;
	for (;;) {
		Dwarf_CFI_Entry e;
		int r = dwarf_next_cfi(ident, d, eh, off, &next, &e);
		if (r == 1)
			break;
		if (r < 0) {
			set_err(err, errlen, "malformed %s at offset %#llx: %s", name, (unsigned long long)off,
				dwarf_errmsg(-1));
			rc = -EINVAL;
			break;
		}
		if (e.cie.CIE_id != DW_CIE_ID_64) {
			int enc = eh ? cie_encoding(ident, d, e.fde.CIE_pointer, &cies) : DW_EH_PE_absptr;
			const uint8_t *p = e.fde.start;
			uint64_t start = 0, len = 0;
			if (enc >= 0) {
				/* initial_location (pc-relative: to where it is), then address_range (the same format,
				 * never relative) */
				uint64_t at = sh->sh_addr + (uint64_t)(p - (const uint8_t *)d->d_buf);
				r = read_encoded(&p, e.fde.end, (uint8_t)enc, at, true, &start);
				if (!r)
					r = read_encoded(&p, e.fde.end, (uint8_t)enc & 0x0f, 0, false, &len);
			} else {
				r = enc;
			}
			if (r < 0) {
				set_err(err, errlen, "%s FDE at offset %#llx: %s", name, (unsigned long long)off,
					r == -ENOTSUP ? "unsupported pointer encoding or augmentation"
					: r == -ENOMEM ? "out of memory"
						       : "malformed CIE or FDE");
				rc = r;
				break;
			}
			if (len && start + len > start && (rc = ranges_push(out, start, start + len)))
				break;
		}
		off = next;
	}
	free(cies.v);
	if (!rc)
		qsort(out->v, out->n, sizeof(*out->v), range_cmp);
	return rc;
}

static struct unwind_row row_kind(enum unwind_cfa_kind cfa, int16_t cfa_off, enum unwind_rbp_kind rbp,
				  int8_t rbp_off)
{
	return (struct unwind_row){.cfa_off = cfa_off, .kind = (uint8_t)(cfa | rbp << 4), .rbp_off = rbp_off};
}

#define ROW_UNSUP row_kind(UW_CFA_UNSUP, 0, UW_RBP_SAME, 0)
#define ROW_NONE row_kind(UW_CFA_NONE, 0, UW_RBP_SAME, 0)

/* The base register and offset of a one-operation CFA rule (DW_OP_bregx from DW_CFA_def_cfa, or DW_OP_bregN
 * from a one-operation expression), or -1. */
static int breg(const Dwarf_Op *op, int64_t *off)
{
	if (op->atom == DW_OP_bregx) {
		*off = (int64_t)op->number2;
		return op->number < 32 ? (int)op->number : -1;
	}
	if (op->atom >= DW_OP_breg0 && op->atom <= DW_OP_breg31) {
		*off = (int64_t)op->number;
		return op->atom - DW_OP_breg0;
	}
	return -1;
}

/* The CFA + N offset of a register saved by an offset rule (DW_CFA_offset*), into *n; false for any other rule. */
static bool saved_at_cfa(const Dwarf_Op *ops, size_t nops, int64_t *n)
{
	if (nops == 1 && ops[0].atom == DW_OP_call_frame_cfa) {
		*n = 0;
		return true;
	}
	if (nops == 2 && ops[0].atom == DW_OP_call_frame_cfa && ops[1].atom == DW_OP_plus_uconst) {
		*n = (int64_t)ops[1].number; /* libdw stores a negative offset as its two's complement */
		return true;
	}
	return false;
}

/* The PLT entries' CFA: rsp + off, plus 8 once rip & 15 >= n (after the entry's push). */
static bool plt_expr(const Dwarf_Op *ops, size_t nops, int64_t *off, int *n)
{
	static const uint8_t tail[] = {DW_OP_lit15, DW_OP_and, 0, DW_OP_ge, DW_OP_lit3, DW_OP_shl, DW_OP_plus};
	if (nops != 9 || breg(&ops[0], off) != REG_RSP || ops[1].atom != DW_OP_breg16 || ops[1].number != 0)
		return false;
	for (size_t i = 0; i < sizeof(tail); i++)
		if (tail[i] && ops[2 + i].atom != tail[i])
			return false;
	if (ops[4].atom < DW_OP_lit0 || ops[4].atom > DW_OP_lit31)
		return false;
	*n = ops[4].atom - DW_OP_lit0;
	return true;
}

/* The row of frame fr, whose return address column is ra. */
static struct unwind_row translate(Dwarf_Frame *fr, int ra, bool signalp)
{
	Dwarf_Op mem[3], *ops;
	size_t nops;
	int64_t off;
	if (signalp || ra != REG_RA || dwarf_frame_register(fr, REG_RA, mem, &ops, &nops))
		return ROW_UNSUP;
	if (nops == 0)
		/* ops == mem: undefined, the outermost frame; ops NULL: "same value", never a return address's rule */
		return ops ? row_kind(UW_CFA_END, 0, UW_RBP_SAME, 0) : ROW_UNSUP;
	if (!saved_at_cfa(ops, nops, &off) || off != -8)
		return ROW_UNSUP;

	enum unwind_rbp_kind rbp = UW_RBP_SAME;
	int8_t rbp_off = 0;
	if (dwarf_frame_register(fr, REG_RBP, mem, &ops, &nops))
		return ROW_UNSUP;
	if (nops) { /* nops 0: same value or undefined, both UW_RBP_SAME */
		if (!saved_at_cfa(ops, nops, &off) || off % 8 || off / 8 < INT8_MIN || off / 8 > INT8_MAX)
			return ROW_UNSUP;
		rbp = UW_RBP_CFA;
		rbp_off = (int8_t)(off / 8);
	}

	enum unwind_cfa_kind cfa;
	int plt_n;
	if (dwarf_frame_cfa(fr, &ops, &nops) || nops == 0)
		return ROW_UNSUP;
	if (nops == 1) {
		int reg = breg(&ops[0], &off);
		if (reg == REG_RSP)
			cfa = UW_CFA_RSP;
		else if (reg == REG_RBP)
			cfa = UW_CFA_RBP;
		else
			return ROW_UNSUP;
	} else if (plt_expr(ops, nops, &off, &plt_n) && rbp == UW_RBP_SAME) {
		cfa = UW_CFA_PLT;
		rbp_off = (int8_t)plt_n;
	} else {
		return ROW_UNSUP;
	}
	if (off < INT16_MIN || off > INT16_MAX)
		return ROW_UNSUP;
	return row_kind(cfa, (int16_t)off, rbp, rbp_off);
}

/* Walk the ranges r (sorted by start) row by row through cfi into out. An address already walked (overlapping
 * FDEs) is not walked again: the FDE starting first keeps it. Where libdw cannot give a frame, the rest of that
 * range is one UW_CFA_UNSUP span. */
static int walk(Dwarf_CFI *cfi, const struct ranges *r, struct spans *out)
{
	uint64_t cursor = 0;
	for (size_t i = 0; i < r->n; i++) {
		uint64_t pc = r->v[i].start > cursor ? r->v[i].start : cursor, end = r->v[i].end;
		while (pc < end) {
			Dwarf_Frame *fr = NULL;
			Dwarf_Addr s, e;
			bool signalp;
			struct unwind_row row = ROW_UNSUP;
			uint64_t next = end;
			if (dwarf_cfi_addrframe(cfi, pc, &fr) == 0) {
				int ra = dwarf_frame_info(fr, &s, &e, &signalp);
				if (ra >= 0 && s <= pc && e > pc) {
					row = translate(fr, ra, signalp);
					next = e < end ? e : end;
				}
			}
			free(fr);
			if (spans_push(out, pc, next, row))
				return -ENOMEM;
			pc = next;
		}
		if (end > cursor)
			cursor = end;
	}
	return 0;
}

/* The parts of the ranges d not covered by the spans c (sorted, not overlapping) into out, sorted. */
static int uncovered(const struct ranges *d, const struct spans *c, struct ranges *out)
{
	for (size_t i = 0; i < d->n; i++) {
		uint64_t pc = d->v[i].start, end = d->v[i].end;
		/* The first span ending after pc. */
		size_t lo = 0, hi = c->n;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (c->v[mid].end <= pc)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (size_t j = lo; pc < end; j++) {
			uint64_t cs = j < c->n ? c->v[j].start : UINT64_MAX;
			if (pc < cs && ranges_push(out, pc, cs < end ? cs : end))
				return -ENOMEM;
			if (j >= c->n)
				break;
			if (c->v[j].end > pc)
				pc = c->v[j].end;
		}
	}
	qsort(out->v, out->n, sizeof(*out->v), range_cmp);
	return 0;
}

static bool same_rule(const struct unwind_row *a, const struct unwind_row *b)
{
	return a->kind == b->kind && a->cfa_off == b->cfa_off && a->rbp_off == b->rbp_off;
}

/* Append a row at pc unless it repeats the last one. 0, -ERANGE or -ENOMEM. */
static int emit(struct unwind_table *t, size_t *cap, uint64_t pc, struct unwind_row row)
{
	if (t->n && same_rule(&t->rows[t->n - 1], &row))
		return 0;
	if (pc > UINT32_MAX)
		return -ERANGE;
	if (grow((void **)&t->rows, t->n, cap, sizeof(*t->rows)))
		return -ENOMEM;
	row.pc = (uint32_t)pc;
	t->rows[t->n++] = row;
	return 0;
}

/* The table from the spans a and b (each sorted; together not overlapping), with UW_CFA_NONE in the gaps. */
static int build(struct unwind_table *t, const struct spans *a, const struct spans *b)
{
	size_t cap = 0, i = 0, j = 0;
	uint64_t prev_end = 0;
	while (i < a->n || j < b->n) {
		bool from_a = j >= b->n || (i < a->n && a->v[i].start <= b->v[j].start);
		const struct span *s = from_a ? &a->v[i++] : &b->v[j++];
		uint64_t start = s->start;
		if (t->n && start < prev_end)
			start = prev_end; /* cannot happen by construction; never let rows go backwards */
		if (start >= s->end)
			continue;
		int rc;
		if (t->n && start > prev_end && (rc = emit(t, &cap, prev_end, ROW_NONE)))
			return rc;
		if ((rc = emit(t, &cap, start, s->row)))
			return rc;
		prev_end = s->end;
	}
	if (t->n) {
		int rc = emit(t, &cap, prev_end, ROW_NONE);
		if (rc)
			return rc;
		struct unwind_row *p = realloc(t->rows, t->n * sizeof(*t->rows));
		if (p)
			t->rows = p;
	}
	for (size_t k = 0; k < t->n; k++)
		t->unsupported += UW_ROW_CFA(&t->rows[k]) == UW_CFA_UNSUP;
	return 0;
}

void unwind_table__free(struct unwind_table *t)
{
	if (!t)
		return;
	free(t->rows);
	memset(t, 0, sizeof(*t));
}

int unwind_table__from_elf(Elf *elf, struct unwind_table *t, char *err, size_t errlen)
{
	memset(t, 0, sizeof(*t));
	if (err && errlen)
		err[0] = '\0';
	GElf_Ehdr eh;
	size_t shnum;
	if (!elf || elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &eh)) {
		set_err(err, errlen, "not an ELF file");
		return -ENOEXEC;
	}
	if (gelf_getclass(elf) != ELFCLASS64 || eh.e_machine != EM_X86_64 || eh.e_ident[EI_DATA] != ELFDATA2LSB) {
		set_err(err, errlen, "not an x86-64 ELF64 file (machine %u)", eh.e_machine);
		return -ENOTSUP;
	}
	if (elf_getshdrnum(elf, &shnum) || shnum == 0) {
		set_err(err, errlen, "no section headers");
		return -ENOEXEC;
	}

	struct ranges eh_r = {0}, dbg_r = {0}, gaps = {0};
	struct spans eh_s = {0}, dbg_s = {0};
	Dwarf_CFI *eh_cfi = NULL;
	Dwarf *dw = NULL;
	GElf_Shdr sh;
	int rc = 0;

	Elf_Scn *scn = section(elf, ".eh_frame", &sh);
	if (scn && (rc = read_fdes(elf, scn, &sh, true, &eh_r, err, errlen)))
		goto out;
	if (eh_r.n) {
		if (!(eh_cfi = dwarf_getcfi_elf(elf))) {
			set_err(err, errlen, "libdw cannot read .eh_frame: %s", dwarf_errmsg(-1));
			rc = -EINVAL;
			goto out;
		}
		if ((rc = walk(eh_cfi, &eh_r, &eh_s)))
			goto out;
	}

	/* .debug_frame, for what .eh_frame leaves out. dwarf_begin_elf() first: it decompresses the section in
	 * place when it is SHF_COMPRESSED. A .debug_frame libdw cannot read is skipped. */
	if (section(elf, ".debug_frame", &sh) && (dw = dwarf_begin_elf(elf, DWARF_C_READ, NULL))) {
		Dwarf_CFI *dbg_cfi = dwarf_getcfi(dw);
		scn = section(elf, ".debug_frame", &sh);
		if (dbg_cfi && scn && !(sh.sh_flags & SHF_COMPRESSED) &&
		    read_fdes(elf, scn, &sh, false, &dbg_r, NULL, 0) == 0) {
			if ((rc = uncovered(&dbg_r, &eh_s, &gaps)) || (rc = walk(dbg_cfi, &gaps, &dbg_s)))
				goto out;
			t->from_debug_frame = dbg_s.n > 0;
		}
	}
	t->fdes = eh_r.n + dbg_r.n;
	rc = build(t, &eh_s, &dbg_s);
	if (rc == -ERANGE)
		set_err(err, errlen, "addresses above 4 GiB: rows hold 32-bit pcs");
out:
	if (rc == -ENOMEM)
		set_err(err, errlen, "out of memory");
	if (rc)
		unwind_table__free(t);
	if (dw)
		dwarf_end(dw);
	if (eh_cfi)
		dwarf_cfi_end(eh_cfi);
	free(eh_r.v);
	free(dbg_r.v);
	free(gaps.v);
	free(eh_s.v);
	free(dbg_s.v);
	return rc;
}

int unwind_table__from_file(const char *path, struct unwind_table *t, char *err, size_t errlen)
{
	memset(t, 0, sizeof(*t));
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	if (elf_version(EV_CURRENT) == EV_NONE) {
		set_err(err, errlen, "%s: libelf: %s", base, elf_errmsg(-1));
		return -ENOTSUP;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		set_err(err, errlen, "%s: %s", base, strerror(-rc));
		return rc;
	}
	Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	char why[200];
	int rc = unwind_table__from_elf(elf, t, why, sizeof(why));
	if (rc)
		set_err(err, errlen, "%s: %s", base, why);
	if (elf)
		elf_end(elf);
	close(fd);
	return rc;
}

const struct unwind_row *unwind_table__find(const struct unwind_table *t, uint64_t vaddr)
{
	if (!t || !t->n || vaddr < t->rows[0].pc)
		return NULL;
	size_t lo = 0, hi = t->n; /* the answer is in [lo, hi) */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (t->rows[mid].pc <= vaddr)
			lo = mid;
		else
			hi = mid;
	}
	return &t->rows[lo];
}
