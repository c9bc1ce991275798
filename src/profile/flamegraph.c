// SPDX-License-Identifier: BSD-2-Clause
/* SVG flame graphs: the profile's stacks merged into a tree (children found through an id index of
 * (parent, name, kind)), siblings sorted by name, laid out by cumulative value, then written as SVG with an
 * embedded script. */
#include "profile/flamegraph.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"

#define PAD 10		/* px left and right of the frames */
#define TOP 60		/* px above the frames: title, subtitle, buttons */
#define BOTTOM 28	/* px below the frames: the details line */
#define FONT_SIZE 12
#define CHAR_WIDTH 7.2	/* px, monospace at FONT_SIZE: the labels are cut to (width - 6) / CHAR_WIDTH characters */

enum node_kind { NODE_ROOT, NODE_SERVICE, NODE_THREAD, NODE_FRAME };

struct node {
	const char *name;	/* interned in the profile, so equal names are equal pointers */
	enum node_kind kind;
	uint32_t parent;
	uint32_t depth;		/* the root is 0 */
	uint32_t child;		/* first child in tree.order; children are order[child .. child + nchild) */
	uint32_t nchild;
	uint64_t value;
	uint64_t off;		/* value units left of this node */
	bool drawn;
	bool interp;		/* interpreted code (a CPython function): drawn in greens */
};

struct tree {
	struct node *node;
	size_t n, cap;
	struct id_index idx;	/* non-root nodes by (parent, name, kind) */
	uint32_t *order;	/* non-root nodes sorted by (parent, name): siblings are contiguous */
};

/* The second half of MurmurHash3's 64-bit finaliser: spreads a pointer's or an FNV-1a hash's bits over the low
 * ones an index (or a colour) reads. Colours depend on it: changing it recolours every flame graph. */
static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

/* Names are interned in the profile, so the pointer stands for the name: cheaper to hash than its text. */
static uint64_t node_hash(uint32_t parent, const char *name, enum node_kind kind)
{
	return mix((uint64_t)(uintptr_t)name ^ mix(((uint64_t)parent << 2) | kind));
}

static uint64_t node_hash_of(const void *ctx, uint32_t id)
{
	const struct node *nd = &((const struct tree *)ctx)->node[id];
	return node_hash(nd->parent, nd->name, nd->kind);
}

struct node_key {
	const struct tree *t;
	uint32_t parent;
	const char *name;
	enum node_kind kind;
};

static bool node_eq(const void *ctx, uint32_t id)
{
	const struct node_key *k = ctx;
	const struct node *nd = &k->t->node[id];
	return nd->parent == k->parent && nd->name == k->name && nd->kind == k->kind;
}

/* The child of parent named name, created when new; -ENOMEM. */
static int64_t tree_child(struct tree *t, uint32_t parent, const char *name, enum node_kind kind)
{
	uint64_t h = node_hash(parent, name, kind);
	int64_t found = id_index__find(&t->idx, h, node_eq, &(struct node_key){ t, parent, name, kind });
	if (found >= 0)
		return found;
	if (id_index__reserve(&t->idx, t->n + 1, node_hash_of, t))
		return -ENOMEM;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		struct node *p = realloc(t->node, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		t->node = p;
		t->cap = cap;
	}
	t->node[t->n] = (struct node){
		.name = name, .kind = kind, .parent = parent, .depth = t->node[parent].depth + 1,
	};
	id_index__insert(&t->idx, h, (uint32_t)t->n);
	return (int64_t)t->n++;
}

static void tree_free(struct tree *t)
{
	free(t->node);
	id_index__free(&t->idx);
	free(t->order);
}

static int sibling_cmp(const void *a, const void *b, void *ctx)
{
	const struct node *node = ctx;
	const struct node *x = &node[*(const uint32_t *)a], *y = &node[*(const uint32_t *)b];
	if (x->parent != y->parent)
		return x->parent < y->parent ? -1 : 1;
	int c = strcmp(x->name, y->name);
	return c ? c : (int)x->kind - (int)y->kind;
}

static const char *node_label(const struct node *nd)
{
	return *nd->name ? nd->name : PROFILE_UNKNOWN;
}

/* Add the value val of sample s along its path from the root (service and thread first when flags ask). */
static int tree_add(struct tree *t, const struct profile *p, const struct profile_sample *s, uint64_t val,
		    unsigned int flags)
{
	int64_t cur = 0;
	t->node[0].value += val;
	if (flags & PROFILE_FOLD_SERVICE) {
		if ((cur = tree_child(t, (uint32_t)cur, s->service, NODE_SERVICE)) < 0)
			return -ENOMEM;
		t->node[cur].value += val;
	}
	if (flags & PROFILE_FOLD_THREAD) {
		if ((cur = tree_child(t, (uint32_t)cur, s->thread, NODE_THREAD)) < 0)
			return -ENOMEM;
		t->node[cur].value += val;
	}
	for (uint32_t d = s->depth; d-- > 0;) {	/* root first */
		const char *name = profile__frame_name(p, s->frames[d]);
		if ((cur = tree_child(t, (uint32_t)cur, name, NODE_FRAME)) < 0)
			return -ENOMEM;
		t->node[cur].value += val;
		t->node[cur].interp = profile__frame_file(p, s->frames[d], NULL) != NULL;
	}
	return 0;
}

/* Siblings sorted by name into t->order, each node's children located in it, and every node's offset: the value
 * left of it. */
static int tree_layout(struct tree *t)
{
	t->order = calloc(t->n, sizeof(*t->order));
	if (!t->order)
		return -ENOMEM;
	for (size_t i = 1; i < t->n; i++)
		t->order[i - 1] = (uint32_t)i;
	qsort_r(t->order, t->n - 1, sizeof(*t->order), sibling_cmp, t->node);
	for (size_t i = t->n - 1; i-- > 0;) {	/* backwards: child ends on the first sibling */
		struct node *parent = &t->node[t->node[t->order[i]].parent];
		parent->child = (uint32_t)i;
		parent->nchild++;
	}
	/* Parents come before their children in index order (a child is created after its parent). */
	for (size_t i = 0; i < t->n; i++) {
		const struct node *nd = &t->node[i];
		uint64_t off = nd->off;
		for (uint32_t c = 0; c < nd->nchild; c++) {
			struct node *ch = &t->node[t->order[nd->child + c]];
			ch->off = off;
			off += ch->value;
		}
	}
	return 0;
}

static int tree_build(struct tree *t, const struct profile *p, enum profile_value v, unsigned int flags)
{
	t->cap = 256;
	t->node = calloc(t->cap, sizeof(*t->node));
	if (!t->node)
		return -ENOMEM;
	t->node[0] = (struct node){ .name = "all", .kind = NODE_ROOT };
	t->n = 1;

	size_t nsample = profile__sample_count(p);
	for (size_t i = 0; i < nsample; i++) {
		struct profile_sample s;
		profile__sample(p, i, &s);
		uint64_t val = profile__sample_value(p, &s, v);
		if (val && tree_add(t, p, &s, val, flags))
			return -ENOMEM;
	}
	return tree_layout(t);
}

/* Hundredths of a pixel from the left edge of the frame area to value offset off. Monotonic in off, so a
 * child's [x0, x1) always lies within its parent's. */
static long long pos(uint64_t off, uint64_t total, long long area)
{
	return llroundl((long double)off * (long double)area / (long double)total);
}

static void put_fixed(struct buf *b, long long hundredths)
{
	buf__printf(b, "%lld.%02lld", hundredths / 100, hundredths % 100);
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when s does not start one (RFC 3629 section 4). */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		/* E0 below A0 would be overlong, ED above 9F a UTF-16 surrogate. */
		unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 ? 4 : 0;
	}
	return 0;
}

/* Characters (code points; an invalid byte is one) in s. */
static size_t text_chars(const char *s)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; n++) {
		size_t l = utf8_len(p);
		p += l ? l : 1;
	}
	return n;
}

/* Append at most max characters of s, XML-escaped for text and attribute values (XML 1.0 section 2.4). */
static void xml_escape_n(struct buf *b, const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t n = 0; *p && n < max; n++) {
		size_t l = utf8_len(p);
		switch (l ? *p : 0) {
		case '&': buf__puts(b, "&amp;"); break;
		case '<': buf__puts(b, "&lt;"); break;
		case '>': buf__puts(b, "&gt;"); break;
		case '"': buf__puts(b, "&quot;"); break;
		case '\'': buf__puts(b, "&apos;"); break;
		default:
			/* XML 1.0 forbids most control characters, even as references; bad UTF-8 breaks parsing. */
			if (!l || *p < 0x20 || *p == 0x7f)
				buf__puts(b, "?");
			else
				buf__append(b, p, l);
		}
		p += l ? l : 1;
	}
}

static void xml_escape(struct buf *b, const char *s)
{
	xml_escape_n(b, s, (size_t)-1);
}

/* The label that fits width hundredths of a pixel: the name, or its start and "..", or nothing (the script's
 * fit() applies the same rule after a zoom). */
static void put_label(struct buf *b, const char *name, long long width)
{
	long long room = (long long)floor(((double)width / 100.0 - 6) / CHAR_WIDTH);
	size_t n = text_chars(name);
	if (room < 3)
		return;
	if ((size_t)room >= n) {
		xml_escape(b, name);
		return;
	}
	xml_escape_n(b, name, (size_t)room - 2);
	buf__puts(b, "..");
}

static void fmt_count(char *dst, size_t n, uint64_t v)
{
	char digits[32];
	int len = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)v);
	size_t o = 0;
	for (int i = 0; i < len && o + 2 < n; i++) {
		if (i && (len - i) % 3 == 0)
			dst[o++] = ',';
		dst[o++] = digits[i];
	}
	dst[o] = '\0';
}

static void fmt_ns(char *dst, size_t n, uint64_t ns)
{
	const uint64_t ns_per_min = 60 * NSEC_PER_SEC;
	if (ns < NSEC_PER_USEC)
		snprintf(dst, n, "%llu ns", (unsigned long long)ns);
	else if (ns < NSEC_PER_MSEC)
		snprintf(dst, n, "%.3g us", (double)ns / (double)NSEC_PER_USEC);
	else if (ns < NSEC_PER_SEC)
		snprintf(dst, n, "%.3g ms", (double)ns / (double)NSEC_PER_MSEC);
	else if (ns < ns_per_min)
		snprintf(dst, n, "%.3g s", ns_to_seconds(ns));
	else
		snprintf(dst, n, "%.1f min", (double)ns / (double)ns_per_min);
}

/* "1,234 samples" or "12.3 ms". */
static void fmt_value(char *dst, size_t n, uint64_t v, enum profile_value kind)
{
	if (kind == PROFILE_VALUE_NS) {
		fmt_ns(dst, n, v);
		return;
	}
	char c[32];
	fmt_count(c, sizeof(c), v);
	snprintf(dst, n, "%s %s", c, v == 1 ? "sample" : "samples");
}

static void colour(const struct node *nd, enum profile_kind kind, int rgb[3])
{
	if (nd->kind != NODE_FRAME) {
		static const int grey[3][3] = { { 215, 215, 215 }, { 190, 190, 190 }, { 200, 200, 215 } };
		memcpy(rgb, grey[nd->kind], sizeof(grey[0]));
		return;
	}
	uint64_t h = mix(fnv1a_str(nd->name));	/* of the name's text: a function keeps its colour across graphs */
	unsigned a = h & 0xff, b = (h >> 8) & 0xff, c = (h >> 16) & 0xff;
	if (nd->interp) {		/* interpreted code, in either kind: greens */
		rgb[0] = 50 + (int)(a % 80);
		rgb[1] = 170 + (int)(b % 60);
		rgb[2] = 50 + (int)(c % 60);
	} else if (kind == PROFILE_CPU) {	/* reds, oranges, yellows */
		rgb[0] = 205 + (int)(a % 50);
		rgb[1] = 70 + (int)(b % 160);
		rgb[2] = (int)(c % 60);
	} else {			/* blues */
		rgb[0] = (int)(a % 80);
		rgb[1] = 110 + (int)(b % 110);
		rgb[2] = 200 + (int)(c % 55);
	}
}

/* The viewer: written for loupe, ES5 so that any browser's SVG viewer runs it. Frames are read back from the
 * document (rect geometry, the name from the first line of <title>), so the SVG stays the single source. */
static const char script[] =
	"var F = [], full = 0, left = 0, cw = 7.2, zoomed = null, searching = false;\n"
	"var details, matched, resetBtn, searchBtn;\n"
	"function init(evt) {\n"
	"	details = document.getElementById('details');\n"
	"	matched = document.getElementById('matched');\n"
	"	resetBtn = document.getElementById('reset');\n"
	"	searchBtn = document.getElementById('search');\n"
	"	var gs = document.getElementById('frames').getElementsByTagName('g');\n"
	"	for (var i = 0; i < gs.length; i++) {\n"
	"		var g = gs[i], r = g.getElementsByTagName('rect')[0], t = g.getElementsByTagName('title')[0];\n"
	"		var f = { g: g, rect: r, text: g.getElementsByTagName('text')[0], tip: t.textContent,\n"
	"			name: t.textContent.split('\\n')[0], x: parseFloat(r.getAttribute('x')),\n"
	"			w: parseFloat(r.getAttribute('width')), y: parseFloat(r.getAttribute('y')),\n"
	"			fill: r.getAttribute('fill') };\n"
	"		F.push(f);\n"
	"		g.onmouseover = (function (f) { return function () {\n"
	"			details.textContent = f.tip.replace('\\n', ': '); }; })(f);\n"
	"		g.onmouseout = function () { details.textContent = ' '; };\n"
	"		g.onclick = (function (f) { return function () { zoom(f); }; })(f);\n"
	"		if (f.w > full) { full = f.w; left = f.x; }\n"
	"	}\n"
	"	resetBtn.onclick = unzoom;\n"
	"	searchBtn.onclick = function () { if (searching) clearSearch(); else askSearch(); };\n"
	"	window.addEventListener('keydown', function (e) {\n"
	"		if (e.keyCode === 27) unzoom();\n"
	"		else if ((e.ctrlKey || e.metaKey) && e.keyCode === 70) { e.preventDefault(); askSearch(); }\n"
	"	});\n"
	"	var m = /[?&]s=([^&]*)/.exec(window.location.search || '');\n"
	"	if (m) search(decodeURIComponent(m[1].replace(/\\+/g, ' ')));\n"
	"}\n"
	"function fit(f, w) {\n"
	"	var n = Math.floor((w - 6) / cw);\n"
	"	f.text.textContent = n < 3 ? '' : f.name.length <= n ? f.name : f.name.substring(0, n - 2) + '..';\n"
	"}\n"
	"function place(f, x, w, dim) {\n"
	"	f.g.style.display = '';\n"
	"	f.g.style.opacity = dim ? '0.5' : '';\n"
	"	f.rect.setAttribute('x', x.toFixed(2));\n"
	"	f.rect.setAttribute('width', w.toFixed(2));\n"
	"	f.text.setAttribute('x', (x + 3).toFixed(2));\n"
	"	fit(f, w);\n"
	"}\n"
	"function zoom(z) {\n"
	"	var x0 = z.x - 0.001, x1 = z.x + z.w + 0.001, scale = full / z.w;\n"
	"	for (var i = 0; i < F.length; i++) {\n"
	"		var f = F[i];\n"
	"		if (f.y > z.y) {\n"
	"			if (f.x <= x0 + 0.002 && f.x + f.w >= x1 - 0.002) place(f, left, full, true);\n"
	"			else f.g.style.display = 'none';\n"
	"		} else if (f.x >= x0 && f.x + f.w <= x1) {\n"
	"			place(f, left + (f.x - z.x) * scale, f.w * scale, false);\n"
	"		} else {\n"
	"			f.g.style.display = 'none';\n"
	"		}\n"
	"	}\n"
	"	zoomed = z;\n"
	"	resetBtn.style.display = '';\n"
	"}\n"
	"function unzoom() {\n"
	"	for (var i = 0; i < F.length; i++) place(F[i], F[i].x, F[i].w, false);\n"
	"	zoomed = null;\n"
	"	resetBtn.style.display = 'none';\n"
	"}\n"
	"function askSearch() {\n"
	"	var term = window.prompt('Search frames (regular expression)', '');\n"
	"	if (term) search(term);\n"
	"}\n"
	"function search(term) {\n"
	"	var re = null, iv = [];\n"
	"	try { re = new RegExp(term); } catch (e) { re = null; }\n"
	"	for (var i = 0; i < F.length; i++) {\n"
	"		var f = F[i], hit = re ? re.test(f.name) : f.name.indexOf(term) >= 0;\n"
	"		f.rect.setAttribute('fill', hit ? 'rgb(230,0,230)' : f.fill);\n"
	"		if (hit) iv.push([f.x, f.x + f.w]);\n"
	"	}\n"
	"	iv.sort(function (a, b) { return a[0] - b[0]; });\n"
	"	var cover = 0, start = 0, end = -1;\n"
	"	for (var j = 0; j < iv.length; j++) {\n"
	"		if (iv[j][0] > end) { if (end >= 0) cover += end - start; start = iv[j][0]; end = iv[j][1]; }\n"
	"		else if (iv[j][1] > end) end = iv[j][1];\n"
	"	}\n"
	"	if (end >= 0) cover += end - start;\n"
	"	matched.textContent = 'Matched: ' + (full > 0 ? 100 * cover / full : 0).toFixed(2) + '%';\n"
	"	searchBtn.textContent = 'Clear';\n"
	"	searching = true;\n"
	"}\n"
	"function clearSearch() {\n"
	"	for (var i = 0; i < F.length; i++) F[i].rect.setAttribute('fill', F[i].fill);\n"
	"	matched.textContent = ' ';\n"
	"	searchBtn.textContent = 'Search';\n"
	"	searching = false;\n"
	"}\n";

struct render {
	const struct tree *t;
	struct buf *out;
	enum profile_kind kind;
	enum profile_value value;
	uint64_t total;
	long long area;		/* frame area width, hundredths of a pixel */
	long long min_width;	/* hundredths of a pixel */
	int height;
	uint32_t max_depth;
};

/* Mark the nodes wide enough to draw (and whose parent is drawn); returns nothing, records the depth. */
static void mark(struct render *r, uint32_t i)
{
	struct node *nd = &r->t->node[i];
	long long w = pos(nd->off + nd->value, r->total, r->area) - pos(nd->off, r->total, r->area);
	if (w < r->min_width || w <= 0)
		return;
	nd->drawn = true;
	if (nd->depth > r->max_depth)
		r->max_depth = nd->depth;
	for (uint32_t c = 0; c < nd->nchild; c++)
		mark(r, r->t->order[nd->child + c]);
}

static void emit(struct render *r, uint32_t i)
{
	const struct node *nd = &r->t->node[i];
	if (!nd->drawn)
		return;
	long long x0 = pos(nd->off, r->total, r->area), x1 = pos(nd->off + nd->value, r->total, r->area);
	int y = r->height - BOTTOM - (int)(nd->depth + 1) * FLAMEGRAPH_FRAME_HEIGHT;
	char val[48];
	int rgb[3];
	fmt_value(val, sizeof(val), nd->value, r->value);
	colour(nd, r->kind, rgb);

	struct buf *b = r->out;
	buf__puts(b, "<g><title>");
	xml_escape(b, node_label(nd));
	buf__printf(b, "\n%s, %.2f%%</title><rect x=\"", val, 100.0 * (double)nd->value / (double)r->total);
	put_fixed(b, PAD * 100 + x0);
	buf__printf(b, "\" y=\"%d\" width=\"", y);
	put_fixed(b, x1 - x0);
	buf__printf(b, "\" height=\"%d\" fill=\"rgb(%d,%d,%d)\"/><text x=\"", FLAMEGRAPH_FRAME_HEIGHT - 1,
		    rgb[0], rgb[1], rgb[2]);
	put_fixed(b, PAD * 100 + x0 + 300);
	buf__printf(b, "\" y=\"%d\">", y + FLAMEGRAPH_FRAME_HEIGHT - 4);
	put_label(b, node_label(nd), x1 - x0);
	buf__puts(b, "</text></g>\n");
	for (uint32_t c = 0; c < nd->nchild; c++)
		emit(r, r->t->order[nd->child + c]);
}

static void default_subtitle(struct buf *b, const struct profile *p, const struct flamegraph_opts *o)
{
	uint64_t count, ns;
	char c[32], t[32], d[32];
	profile__totals(p, &count, &ns);
	fmt_count(c, sizeof(c), count);
	fmt_ns(t, sizeof(t), ns);
	if (o->service) {
		buf__puts(b, "service ");
		buf__puts(b, o->service);
	} else {
		buf__puts(b, "all services");
	}
	if (profile__duration_ns(p)) {
		fmt_ns(d, sizeof(d), profile__duration_ns(p));
		buf__printf(b, ", %s", d);
	}
	if (profile__kind(p) == PROFILE_CPU)
		buf__printf(b, ", %s %s at %u Hz (%s of CPU)", c, count == 1 ? "sample" : "samples", profile__hz(p), t);
	else
		buf__printf(b, ", %s blocked in %s %s", t, c, count == 1 ? "wait" : "waits");
	if (profile__dropped(p))
		buf__printf(b, ", %llu samples in [other] past the stack limit",
			    (unsigned long long)profile__dropped(p));
}

/* The document up to the frames: the root element, style, viewer script, background, title and subtitle, the
 * buttons and the lines the script writes to. */
static void svg_head(const struct render *r, unsigned int width, const char *title, const char *subtitle)
{
	struct buf *out = r->out;
	buf__printf(out,
		    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
		    "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%u\" height=\"%d\" "
		    "viewBox=\"0 0 %u %d\" onload=\"init(evt)\">\n",
		    width, r->height, width, r->height);
	buf__printf(out,
		    "<style>\n"
		    "text { font-family: monospace; font-size: %dpx; fill: #000; }\n"
		    "#frames g { cursor: pointer; }\n"
		    "#frames g:hover rect { stroke: #000; stroke-width: 0.5; }\n"
		    "#frames text { pointer-events: none; }\n"
		    "#title { font-size: 17px; }\n"
		    ".btn { cursor: pointer; fill: #336; text-decoration: underline; }\n"
		    "</style>\n",
		    FONT_SIZE);
	buf__puts(out, "<script type=\"text/ecmascript\"><![CDATA[\n");
	buf__puts(out, script);
	buf__puts(out, "]]></script>\n");
	buf__printf(out, "<rect x=\"0\" y=\"0\" width=\"%u\" height=\"%d\" fill=\"#f8f8f8\"/>\n", width, r->height);
	buf__printf(out, "<text id=\"title\" x=\"%u\" y=\"22\" text-anchor=\"middle\">", width / 2);
	xml_escape(out, title);
	buf__printf(out, "</text>\n<text id=\"subtitle\" x=\"%u\" y=\"40\" text-anchor=\"middle\">", width / 2);
	xml_escape(out, subtitle);
	buf__puts(out, "</text>\n");
	buf__printf(out, "<text id=\"reset\" class=\"btn\" x=\"%d\" y=\"22\" style=\"display:none\">", PAD);
	buf__puts(out, "Reset zoom</text>\n");
	buf__printf(out, "<text id=\"search\" class=\"btn\" x=\"%u\" y=\"22\" text-anchor=\"end\">Search</text>\n",
		    width - PAD);
	buf__printf(out, "<text id=\"matched\" x=\"%u\" y=\"%d\" text-anchor=\"end\"> </text>\n", width - PAD,
		    r->height - 10);
	buf__printf(out, "<text id=\"details\" x=\"%d\" y=\"%d\"> </text>\n", PAD, r->height - 10);
}

int flamegraph_svg(const struct profile *p, const struct flamegraph_opts *opts, struct buf *out)
{
	static const struct flamegraph_opts defaults;
	const struct flamegraph_opts *o = opts ? opts : &defaults;
	struct tree t = {0};
	struct buf sub = {0};
	int err;

	if (!p || !out || (o->min_width < 0))
		return -EINVAL;
	unsigned int width = o->width ? o->width : FLAMEGRAPH_WIDTH;
	if (width < 100)
		width = 100;
	struct render r = {
		.t = &t, .out = out, .kind = profile__kind(p), .value = profile__value(p, o->value),
		.area = (long long)(width - 2 * PAD) * 100,
		.min_width = (long long)ceil((o->min_width > 0 ? o->min_width : FLAMEGRAPH_MIN_WIDTH) * 100),
	};
	err = tree_build(&t, p, r.value, o->flags);
	if (err)
		goto out;
	r.total = t.node[0].value;
	if (r.total)
		mark(&r, 0);
	r.height = TOP + (int)(r.max_depth + 1) * FLAMEGRAPH_FRAME_HEIGHT + BOTTOM;

	if (o->subtitle)
		buf__puts(&sub, o->subtitle);
	else
		default_subtitle(&sub, p, o);
	if (sub.oom) {
		err = -ENOMEM;
		goto out;
	}

	svg_head(&r, width, o->title ? o->title : r.kind == PROFILE_CPU ? "CPU profile" : "Off-CPU profile", sub.p);
	if (!r.total)
		buf__printf(out, "<text x=\"%u\" y=\"%d\" text-anchor=\"middle\">no samples</text>\n", width / 2,
			    TOP + FLAMEGRAPH_FRAME_HEIGHT - 4);
	buf__puts(out, "<g id=\"frames\">\n");
	if (r.total)
		emit(&r, 0);
	buf__puts(out, "</g>\n</svg>\n");
	err = out->oom ? -ENOMEM : 0;
out:
	buf__free(&sub);
	tree_free(&t);
	return err;
}
