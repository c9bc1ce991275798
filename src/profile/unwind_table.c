// SPDX-License-Identifier: BSD-2-Clause
/* One ELF file's call frame information into unwind rows (unwind_table.h): FDEs enumerated here, their rules run by
 * libdw, translated into include/unwind.h's kinds. */
#include "profile/unwind_table.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DW_REG_RBP 6
#define DW_REG_RSP 7
#define DW_REG_RA 16

/* A row while tables are built: where it ends too (to find gaps). */
struct wrow {
	uint64_t pc, end;
	struct unwind_row r;
};

struct build {
	struct wrow *v;
	size_t n, cap;
	/* FDE ranges of .eh_frame, to skip .debug_frame's FDEs covering the same code */
	uint64_t (*ranges)[2];
	size_t nranges, capranges;
	size_t fdes, unsupported, refused;
	bool from_debug_frame;
	int err;
};

static int push_row(struct build *b, uint64_t pc, uint64_t end, struct unwind_row r)
{
	if (b->n == b->cap) {
		size_t nc = b->cap ? 2 * b->cap : 4096;
		struct wrow *nv = realloc(b->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		b->v = nv;
		b->cap = nc;
	}
	b->v[b->n++] = (struct wrow){.pc = pc, .end = end, .r = r};
	return 0;
}

static struct unwind_row row_of(uint8_t cfa, int64_t cfa_off, uint8_t rbp, int64_t rbp_off)
{
	return (struct unwind_row){.cfa_off = (int16_t)(cfa_off / 8), .kind = (uint8_t)(cfa | rbp << 4), .rbp_off = (int8_t)rbp_off};
}

static const struct unwind_row ROW_UNSUP = {.kind = UW_CFA_UNSUP};

/* The CFA rule: kind and offset, or UW_CFA_UNSUP. */
static uint8_t cfa_rule(Dwarf_Frame *f, int64_t *off, int64_t *plt_thr)
{
	Dwarf_Op *ops;
	size_t n;
	if (dwarf_frame_cfa(f, &ops, &n) || !n)
		return UW_CFA_UNSUP;
	if (n == 1 && (ops[0].atom == DW_OP_bregx || ops[0].atom == DW_OP_breg7 || ops[0].atom == DW_OP_breg6)) {
		uint64_t reg = ops[0].atom == DW_OP_bregx ? ops[0].number : (uint64_t)(ops[0].atom - DW_OP_breg0);
		*off = ops[0].atom == DW_OP_bregx ? (int64_t)ops[0].number2 : (int64_t)ops[0].number;
		return reg == DW_REG_RSP ? UW_CFA_RSP : reg == DW_REG_RBP ? UW_CFA_RBP : UW_CFA_UNSUP;
	}
	/* The PLT entries' rule: breg7 N; breg16 0; lit15; and; litK; ge; lit3; shl; plus. */
	if (n == 9 && ops[0].atom == DW_OP_breg7 && ops[1].atom == DW_OP_breg16 && ops[1].number == 0 &&
	    ops[2].atom == DW_OP_lit15 && ops[3].atom == DW_OP_and && ops[4].atom >= DW_OP_lit0 &&
	    ops[4].atom <= DW_OP_lit15 && ops[5].atom == DW_OP_ge && ops[6].atom == DW_OP_lit3 &&
	    ops[7].atom == DW_OP_shl && ops[8].atom == DW_OP_plus) {
		*off = (int64_t)ops[0].number;
		*plt_thr = ops[4].atom - DW_OP_lit0;
		return UW_CFA_PLT;
	}
	return UW_CFA_UNSUP;
}

/* Where register regno of the caller is: 0 same value or undefined (*saved false), 1 saved at CFA + *off,
 * -1 anything else. *undefined says which of the first. */
static int reg_rule(Dwarf_Frame *f, int regno, int64_t *off, bool *undefined)
{
	Dwarf_Op mem[3], *ops;
	size_t n;
	*undefined = false;
	if (dwarf_frame_register(f, regno, mem, &ops, &n))
		return -1;
	if (!n) {
		*undefined = ops != NULL;
		return 0;
	}
	if (ops[0].atom != DW_OP_call_frame_cfa)
		return -1;
	if (n == 1) {
		*off = 0;
		return 1;
	}
	if (n == 2 && ops[1].atom == DW_OP_plus_uconst) {
		*off = (int64_t)ops[1].number;
		return 1;
	}
	if (n == 3 && ops[1].atom == DW_OP_consts && ops[2].atom == DW_OP_plus) {
		*off = (int64_t)ops[1].number;
		return 1;
	}
	return -1; /* a value rule (DW_OP_stack_value), or an expression */
}

/* The row for frame f. */
static struct unwind_row translate(struct build *b, Dwarf_Frame *f)
{
	int64_t cfa_off = 0, plt_thr = 0, ra_off = 0, rbp_off = 0;
	bool signalp = false, undef;
	dwarf_frame_info(f, NULL, NULL, &signalp);
	int ra = reg_rule(f, DW_REG_RA, &ra_off, &undef);
	if (ra == 0 && undef)
		return row_of(UW_CFA_END, 0, UW_RBP_SAME, 0);
	uint8_t cfa = cfa_rule(f, &cfa_off, &plt_thr);
	if (signalp || ra != 1 || ra_off != -8 || cfa == UW_CFA_UNSUP || cfa_off % 8 ||
	    cfa_off / 8 < INT16_MIN || cfa_off / 8 > INT16_MAX)
		goto unsup;
	if (cfa == UW_CFA_PLT)
		return row_of(UW_CFA_PLT, cfa_off, UW_RBP_SAME, plt_thr);
	int rbp = reg_rule(f, DW_REG_RBP, &rbp_off, &undef);
	if (rbp == 0)
		return row_of(cfa, cfa_off, UW_RBP_SAME, 0);
	if (rbp == 1 && rbp_off % 8 == 0 && rbp_off / 8 >= INT8_MIN && rbp_off / 8 <= INT8_MAX)
		return row_of(cfa, cfa_off, UW_RBP_CFA, rbp_off / 8);
unsup:
	b->unsupported++;
	return ROW_UNSUP;
}

/* Rows of the FDE covering [lo, hi), rule by rule. */
static int fde_rows(struct build *b, Dwarf_CFI *cfi, uint64_t lo, uint64_t hi)
{
	uint64_t pc = lo;
	b->fdes++;
	while (pc < hi) {
		Dwarf_Frame *f = NULL;
		Dwarf_Addr start, end;
		if (dwarf_cfi_addrframe(cfi, pc, &f))
			break;
		dwarf_frame_info(f, &start, &end, NULL);
		struct unwind_row r = translate(b, f);
		free(f);
		if (end > hi)
			end = hi;
		if (end <= pc)
			break;
		int err = push_row(b, pc, end, r);
		if (err)
			return err;
		pc = end;
	}
	return 0;
}

/* A DW_EH_PE-encoded pointer at p (the byte at virtual address p_vaddr) of at most 8 bytes before lim. */
static bool read_encoded(const uint8_t *p, const uint8_t *lim, uint8_t enc, uint64_t p_vaddr, uint64_t *out)
{
	uint64_t v = 0;
	size_t len;
	bool sign = false;
	switch (enc & 0x0f) {
	case DW_EH_PE_absptr: len = 8; break;
	case DW_EH_PE_udata2: len = 2; break;
	case DW_EH_PE_sdata2: len = 2; sign = true; break;
	case DW_EH_PE_udata4: len = 4; break;
	case DW_EH_PE_sdata4: len = 4; sign = true; break;
	case DW_EH_PE_udata8: len = 8; break;
	case DW_EH_PE_sdata8: len = 8; break;
	default: return false;
	}
	if (p + len > lim)
		return false;
	memcpy(&v, p, len); /* little endian */
	if (sign && len < 8 && (v >> (8 * len - 1)) & 1)
		v |= ~0ull << (8 * len);
	switch (enc & 0x70) {
	case DW_EH_PE_absptr: break;
	case DW_EH_PE_pcrel: v += p_vaddr; break;
	default: return false;
	}
	*out = v;
	return true;
}

/* The FDE pointer encoding of the CIE at offset off ('R' in its augmentation; absptr without). */
/* An unsigned LEB128 at *p before end (at most 10 bytes): false when it runs past either. */
static bool uleb(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; *p < end && shift < 70; shift += 7) {
		uint8_t b = *(*p)++;
		if (shift < 64)
			*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/* Register numbers past this in an FDE's or its CIE's instructions make libdw size each frame of the FDE by them
 * (one rule per register up to the largest, allocated and zeroed at every address asked): a 37 KiB file naming a
 * register in the millions took 1 s and hundreds of MiB per lookup (fuzz_elf). x86-64's DWARF registers end below
 * 130. */
#define CFA_REG_MAX 255

/* Every register operand of the call frame instructions [p, end) is at most CFA_REG_MAX, and every instruction is
 * one this reader knows (libdw knows no others on x86-64, and refuses the FDE too). addr: DW_CFA_set_loc's
 * operand size. */
static bool cfa_regs_bounded(const uint8_t *p, const uint8_t *end, size_t addr)
{
	while (p < end) {
		uint8_t op = *p++;
		uint64_t reg = 0, v;
		size_t skip = 0;
		bool ok = true;
		switch (op & 0xc0) {
		case DW_CFA_advance_loc:
		case DW_CFA_restore: /* the register is in the low 6 bits */
			continue;
		case DW_CFA_offset:
			if (!uleb(&p, end, &v))
				return false;
			continue;
		}
		switch (op) {
		case DW_CFA_nop:
		case DW_CFA_remember_state:
		case DW_CFA_restore_state:
		case DW_CFA_GNU_window_save:
			break;
		case DW_CFA_set_loc: skip = addr; break;
		case DW_CFA_advance_loc1: skip = 1; break;
		case DW_CFA_advance_loc2: skip = 2; break;
		case DW_CFA_advance_loc4: skip = 4; break;
		case DW_CFA_def_cfa_offset:
		case DW_CFA_def_cfa_offset_sf:
		case DW_CFA_GNU_args_size:
			ok = uleb(&p, end, &v); /* an SLEB128 has the same extent */
			break;
		case DW_CFA_restore_extended:
		case DW_CFA_undefined:
		case DW_CFA_same_value:
		case DW_CFA_def_cfa_register:
			ok = uleb(&p, end, &reg);
			break;
		case DW_CFA_offset_extended:
		case DW_CFA_offset_extended_sf:
		case DW_CFA_val_offset:
		case DW_CFA_val_offset_sf:
		case DW_CFA_def_cfa:
		case DW_CFA_def_cfa_sf:
		case DW_CFA_GNU_negative_offset_extended:
			ok = uleb(&p, end, &reg) && uleb(&p, end, &v);
			break;
		case DW_CFA_register:
			ok = uleb(&p, end, &reg) && uleb(&p, end, &v) && v <= CFA_REG_MAX;
			break;
		case DW_CFA_def_cfa_expression:
			ok = uleb(&p, end, &v);
			skip = v > (uint64_t)(end - p) ? SIZE_MAX : (size_t)v;
			break;
		case DW_CFA_expression:
		case DW_CFA_val_expression:
			ok = uleb(&p, end, &reg) && uleb(&p, end, &v);
			skip = ok && v > (uint64_t)(end - p) ? SIZE_MAX : (size_t)v;
			break;
		default:
			return false;
		}
		if (!ok || reg > CFA_REG_MAX || skip > (size_t)(end - p))
			return false;
		p += skip;
	}
	return true;
}

/* What an FDE needs of its CIE: the pointer encoding, whether FDEs carry augmentation data ('z'), and whether the
 * CIE's initial instructions pass cfa_regs_bounded(). */
struct cie_info {
	uint8_t enc;
	bool z, bounded;
};

static int cie_encoding(const unsigned char *ident, Elf_Data *d, bool eh, Dwarf_Off off, struct cie_info *ci)
{
	Dwarf_CFI_Entry e;
	Dwarf_Off next;
	if (dwarf_next_cfi(ident, d, eh, off, &next, &e) || !dwarf_cfi_cie_p(&e))
		return -EINVAL;
	uint8_t *enc = &ci->enc;
	*enc = DW_EH_PE_absptr;
	const char *aug = e.cie.augmentation;
	const uint8_t *data = e.cie.augmentation_data;
	ci->z = aug && aug[0] == 'z';
	ci->bounded = cfa_regs_bounded(e.cie.initial_instructions, e.cie.initial_instructions_end, 8);
	if (!ci->z)
		return 0;
	for (const char *a = aug + 1; *a; a++) {
		if (data >= e.cie.augmentation_data + e.cie.augmentation_data_size)
			return 0;
		switch (*a) {
		case 'R': *enc = *data; return 0;
		case 'L': data++; break;
		case 'P': { /* personality: its encoding, then the pointer */
			uint8_t pe = *data++;
			size_t sz = (pe & 0x0f) == 2 || (pe & 0x0f) == 0x0a ? 2 : (pe & 0x0f) == 3 || (pe & 0x0f) == 0x0b ? 4 : 8;
			data += sz;
			break;
		}
		case 'S': case 'B': break;
		default: return 0;
		}
	}
	return 0;
}

static bool covered(const struct build *b, uint64_t lo, uint64_t hi)
{
	for (size_t i = 0; i < b->nranges; i++)
		if (lo < b->ranges[i][1] && b->ranges[i][0] < hi)
			return true;
	return false;
}

/* Every FDE of CFI section scn (eh: .eh_frame, else .debug_frame), its rows from cfi. */
static int section_rows(struct build *b, Elf *elf, Elf_Scn *scn, bool eh, Dwarf_CFI *cfi)
{
	GElf_Shdr sh;
	Elf_Data *d = elf_getdata(scn, NULL);
	size_t identn;
	const unsigned char *ident = (const unsigned char *)elf_getident(elf, &identn);
	if (!gelf_getshdr(scn, &sh) || !d || !d->d_buf || !ident)
		return 0;
	Dwarf_Off cie_off = (Dwarf_Off)-1;
	struct cie_info ci = {.enc = DW_EH_PE_absptr};
	uint8_t enc = DW_EH_PE_absptr;
	for (Dwarf_Off off = 0, next; off < d->d_size; off = next) {
		Dwarf_CFI_Entry e;
		int r = dwarf_next_cfi(ident, d, eh, off, &next, &e);
		if (r)
			break; /* 1: the end; -1: damaged from here */
		if (dwarf_cfi_cie_p(&e))
			continue;
		if (e.fde.CIE_pointer != cie_off) {
			if (cie_encoding(ident, d, eh, e.fde.CIE_pointer, &ci))
				continue;
			cie_off = e.fde.CIE_pointer;
			enc = ci.enc;
		}
		const uint8_t *p = e.fde.start, *lim = e.fde.end;
		uint64_t lo, range, p_vaddr = sh.sh_addr + (uint64_t)(p - (const uint8_t *)d->d_buf);
		uint8_t renc = enc & 0x0f; /* the range: same size, never relative */
		size_t sz = renc == DW_EH_PE_udata2 || renc == DW_EH_PE_sdata2 ? 2 :
			    renc == DW_EH_PE_udata4 || renc == DW_EH_PE_sdata4 ? 4 : 8;
		if (!eh)
			enc = DW_EH_PE_absptr;
		if (!read_encoded(p, lim, enc, p_vaddr, &lo) || !read_encoded(p + sz, lim, renc, 0, &range) || !range)
			continue;
		if (!eh && covered(b, lo, lo + range))
			continue;
		/* The instructions follow the range and, with 'z', the augmentation data. An FDE whose rules name a
		 * register libdw would size every frame by is left to frame pointers. */
		const uint8_t *ins = p + 2 * sz;
		uint64_t auglen = 0;
		if (ci.z && !uleb(&ins, lim, &auglen))
			continue;
		if (!ci.bounded || auglen > (uint64_t)(lim - ins) || !cfa_regs_bounded(ins + auglen, lim, sz)) {
			b->refused++;
			continue;
		}
		if (eh) {
			if (b->nranges == b->capranges) {
				size_t nc = b->capranges ? 2 * b->capranges : 1024;
				void *nr = realloc(b->ranges, nc * sizeof(*b->ranges));
				if (!nr)
					return -ENOMEM;
				b->ranges = nr;
				b->capranges = nc;
			}
			b->ranges[b->nranges][0] = lo;
			b->ranges[b->nranges++][1] = lo + range;
		} else {
			b->from_debug_frame = true;
		}
		if ((r = fde_rows(b, cfi, lo, lo + range)))
			return r;
	}
	return 0;
}

static Elf_Scn *section_named(Elf *elf, const char *name)
{
	size_t shstrndx;
	if (elf_getshdrstrndx(elf, &shstrndx))
		return NULL;
	for (Elf_Scn *s = NULL; (s = elf_nextscn(elf, s));) {
		GElf_Shdr sh;
		const char *n = gelf_getshdr(s, &sh) ? elf_strptr(elf, shstrndx, sh.sh_name) : NULL;
		if (n && !strcmp(n, name) && sh.sh_type != SHT_NOBITS)
			return s;
	}
	return NULL;
}

static int cmp_wrow(const void *a, const void *b)
{
	const struct wrow *x = a, *y = b;
	return x->pc < y->pc ? -1 : x->pc > y->pc;
}

static bool same_rule(struct unwind_row a, struct unwind_row b)
{
	return a.kind == b.kind && a.cfa_off == b.cfa_off && a.rbp_off == b.rbp_off;
}

int unwind_table__from_elf(Elf *elf, struct unwind_table *t, char *err, size_t errlen)
{
	struct build b = {0};
	int rc = 0;
	*t = (struct unwind_table){0};
	if (err && errlen)
		err[0] = 0;
	Elf_Scn *eh = section_named(elf, ".eh_frame"), *dbg = section_named(elf, ".debug_frame");
	Dwarf_CFI *ecfi = eh ? dwarf_getcfi_elf(elf) : NULL;
	Dwarf *dw = dbg ? dwarf_begin_elf(elf, DWARF_C_READ, NULL) : NULL;
	Dwarf_CFI *dcfi = dw ? dwarf_getcfi(dw) : NULL;
	if (!ecfi && !dcfi) {
		snprintf(err, errlen, "no call frame information (.eh_frame, .debug_frame)");
		rc = -ENOENT;
		goto out;
	}
	if (ecfi && (rc = section_rows(&b, elf, eh, true, ecfi)))
		goto out;
	if (dcfi && (rc = section_rows(&b, elf, dbg, false, dcfi)))
		goto out;
	if (!b.n) {
		snprintf(err, errlen, "no rule could be read from the call frame information");
		rc = -EINVAL;
		goto out;
	}
	qsort(b.v, b.n, sizeof(*b.v), cmp_wrow);
	/* Every end, not only the last row's: an earlier FDE may be the longest, and a range past 4 GiB would wrap
	 * the uint32 pc of the rows that close it. */
	uint64_t max_end = 0;
	for (size_t i = 0; i < b.n; i++)
		max_end = b.v[i].end > max_end ? b.v[i].end : max_end;
	if (max_end > UINT32_MAX) {
		snprintf(err, errlen, "addresses past 4 GiB");
		rc = -ERANGE;
		goto out;
	}
	/* Rows, with a frame-pointer row in each gap, identical neighbours merged. */
	t->rows = malloc(2 * b.n * sizeof(*t->rows));
	if (!t->rows) {
		rc = -ENOMEM;
		goto out;
	}
	uint64_t last_end = 0;
	for (size_t i = 0; i < b.n; i++) {
		struct wrow *w = &b.v[i];
		if (w->pc < last_end) /* overlapping FDEs: the first one wins */
			continue;
		if (t->n && w->pc > last_end) {
			struct unwind_row gap = {.pc = (uint32_t)last_end, .kind = UW_CFA_NONE};
			if (!same_rule(t->rows[t->n - 1], gap))
				t->rows[t->n++] = gap;
		}
		w->r.pc = (uint32_t)w->pc;
		if (!t->n || !same_rule(t->rows[t->n - 1], w->r) || w->pc != last_end)
			t->rows[t->n++] = w->r;
		last_end = w->end;
	}
	t->rows[t->n++] = (struct unwind_row){.pc = (uint32_t)last_end, .kind = UW_CFA_NONE};
	t->fdes = b.fdes;
	t->unsupported = b.unsupported;
	t->refused = b.refused;
	t->from_debug_frame = b.from_debug_frame;
out:
	if (ecfi)
		dwarf_cfi_end(ecfi);
	if (dw)
		dwarf_end(dw);
	free(b.v);
	free(b.ranges);
	if (rc)
		unwind_table__free(t);
	t->refused = b.refused; /* also when no FDE was left to read: why the file has no rules */
	return rc;
}

int unwind_table__from_file(const char *path, struct unwind_table *t, char *err, size_t errlen)
{
	*t = (struct unwind_table){0};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
		return -e;
	}
	elf_version(EV_CURRENT);
	Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	int rc = elf ? unwind_table__from_elf(elf, t, err, errlen) : -ENOEXEC;
	if (!elf)
		snprintf(err, errlen, "%s: not an ELF file", path);
	elf_end(elf);
	close(fd);
	return rc;
}

void unwind_table__free(struct unwind_table *t)
{
	free(t->rows);
	*t = (struct unwind_table){0};
}

const struct unwind_row *unwind_table__find(const struct unwind_table *t, uint64_t vaddr)
{
	size_t lo = 0, hi = t->n;
	if (vaddr > UINT32_MAX)
		return NULL;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (t->rows[mid].pc <= vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? &t->rows[lo - 1] : NULL;
}
