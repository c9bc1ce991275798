// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/profile/flamegraph.c: the SVG is well-formed XML (checked here, and by xmllint when installed), every
 * frame of a known profile is drawn with the width its value gives, a parent is never narrower than its drawn
 * children, names are escaped, and the viewer script is embedded with no external resource. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "profile/flamegraph.h"
#include "profile/profile.h"
#include "profile_stacks.h"

static void add(struct profile *p, const char *svc, const char *thr, const char *stack, uint64_t count, uint64_t ns)
{
	assert_int_equal(add_stack(p, svc, thr, stack, count, ns), 0);
}

/* --- A small XML 1.0 well-formedness checker: elements nest and close, attributes are quoted and unique,
 * '<' and '&' appear only as markup or references, text is UTF-8 without forbidden control characters. --- */

static bool is_name_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool is_name_char(char c)
{
	return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* A reference at s ("&amp;", "&#10;", "&#x3c;"): its length, or 0 when malformed. */
static size_t reference(const char *s)
{
	static const char *const named[] = { "&amp;", "&lt;", "&gt;", "&quot;", "&apos;" };
	for (size_t i = 0; i < 5; i++)
		if (!strncmp(s, named[i], strlen(named[i])))
			return strlen(named[i]);
	if (s[1] != '#')
		return 0;
	size_t i = 2;
	bool hex = s[2] == 'x';
	if (hex)
		i++;
	size_t start = i;
	while ((s[i] >= '0' && s[i] <= '9') || (hex && ((s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F'))))
		i++;
	return i > start && s[i] == ';' ? i + 1 : 0;
}

/* Character data up to '<' (or the end): only references after '&'. */
static const char *chardata(const char *s, char stop)
{
	while (*s && *s != '<' && *s != stop) {
		if (*s == '&') {
			size_t n = reference(s);
			if (!n)
				return NULL;
			s += n;
		} else {
			s++;
		}
	}
	return s;
}

static bool valid_chars(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	while (p < end) {
		unsigned char c = *p;
		size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
		if (!n || p + n > end)
			return false;
		for (size_t i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				return false;
		if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
			return false;
		p += n;
	}
	return true;
}

static const char *xml_error;

#define XML_FAIL(why)                \
	do {                         \
		xml_error = (why);   \
		return false;        \
	} while (0)

static bool xml_wellformed(const char *s)
{
	char stack[64][64];
	int depth = 0, roots = 0;
	if (!valid_chars(s, strlen(s)))
		XML_FAIL("invalid character");
	if (!strncmp(s, "<?xml", 5)) {
		s = strstr(s, "?>");
		if (!s)
			XML_FAIL("unterminated declaration");
		s += 2;
	}
	while (*s) {
		if (*s != '<') {
			const char *e = chardata(s, 0);
			if (!e)
				XML_FAIL("bad reference in text");
			if (!depth)
				for (const char *q = s; q < e; q++)
					if (*q != ' ' && *q != '\n' && *q != '\t' && *q != '\r')
						XML_FAIL("text outside the root element");
			s = e;
			continue;
		}
		if (!strncmp(s, "<!--", 4)) {
			const char *e = strstr(s + 4, "-->");
			if (!e)
				XML_FAIL("unterminated comment");
			s = e + 3;
		} else if (!strncmp(s, "<![CDATA[", 9)) {
			const char *e = strstr(s + 9, "]]>");
			if (!depth || !e)
				XML_FAIL("bad CDATA section");
			s = e + 3;
		} else if (s[1] == '/') {
			s += 2;
			size_t n = 0;
			while (is_name_char(s[n]))
				n++;
			if (!depth || strlen(stack[depth - 1]) != n || strncmp(stack[depth - 1], s, n))
				XML_FAIL("mismatched end tag");
			depth--;
			s += n;
			while (*s == ' ' || *s == '\n')
				s++;
			if (*s++ != '>')
				XML_FAIL("bad end tag");
		} else {
			s++;
			if (!is_name_start(*s))
				XML_FAIL("bad element name");
			size_t n = 0;
			while (is_name_char(s[n]))
				n++;
			if (n >= sizeof(stack[0]) || depth >= 64)
				XML_FAIL("too deep or long");
			if (!depth && roots++)
				XML_FAIL("two root elements");
			memcpy(stack[depth], s, n);
			stack[depth][n] = '\0';
			s += n;
			char attrs[32][32];
			int nattr = 0;
			for (;;) {
				bool ws = false;
				while (*s == ' ' || *s == '\n' || *s == '\t') {
					s++;
					ws = true;
				}
				if (*s == '>' || (s[0] == '/' && s[1] == '>'))
					break;
				if (!ws || !is_name_start(*s))
					XML_FAIL("bad attribute");
				size_t an = 0;
				while (is_name_char(s[an]))
					an++;
				if (an >= sizeof(attrs[0]) || nattr >= 32)
					XML_FAIL("attribute too long or too many");
				for (int i = 0; i < nattr; i++)
					if (strlen(attrs[i]) == an && !strncmp(attrs[i], s, an))
						XML_FAIL("duplicate attribute");
				memcpy(attrs[nattr], s, an);
				attrs[nattr++][an] = '\0';
				s += an;
				if (*s++ != '=')
					XML_FAIL("attribute without value");
				char q = *s++;
				if (q != '"' && q != '\'')
					XML_FAIL("unquoted attribute");
				const char *e = chardata(s, q);
				if (!e || *e != q)
					XML_FAIL("bad attribute value");
				s = e + 1;
			}
			if (*s == '/') {
				s += 2;
			} else {
				s++;
				depth++;
			}
		}
	}
	if (depth)
		XML_FAIL("unclosed element");
	if (roots != 1)
		XML_FAIL("no root element");
	return true;
}

/* --- Frames read back from the SVG. --- */

struct frame {
	char name[256];		/* unescaped */
	char tip[128];		/* the tooltip after the name */
	char label[256];	/* the drawn text, unescaped */
	long long x, w;		/* hundredths of a pixel */
	int y;
};

static void unescape(char *dst, size_t n, const char *s, size_t len)
{
	static const struct { const char *ref; char c; } refs[] = {
		{ "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' }, { "&quot;", '"' }, { "&apos;", '\'' },
	};
	size_t o = 0;
	for (size_t i = 0; i < len && o + 1 < n;) {
		size_t k;
		for (k = 0; k < 5; k++)
			if (!strncmp(s + i, refs[k].ref, strlen(refs[k].ref)))
				break;
		if (k < 5) {
			dst[o++] = refs[k].c;
			i += strlen(refs[k].ref);
		} else {
			dst[o++] = s[i++];
		}
	}
	dst[o] = '\0';
}

static long long hundredths(const char *s)
{
	return llround(strtod(s, NULL) * 100);
}

static size_t parse_frames(const char *svg, struct frame *f, size_t max)
{
	const char *s = strstr(svg, "<g id=\"frames\">");
	size_t n = 0;
	assert_non_null(s);
	while ((s = strstr(s, "<g><title>")) && n < max) {
		s += strlen("<g><title>");
		const char *nl = strchr(s, '\n'), *end = strstr(s, "</title>");
		assert_true(nl && end && nl < end);
		unescape(f[n].name, sizeof(f[n].name), s, (size_t)(nl - s));
		snprintf(f[n].tip, sizeof(f[n].tip), "%.*s", (int)(end - nl - 1), nl + 1);
		const char *r = strstr(end, "<rect x=\"");
		assert_non_null(r);
		f[n].x = hundredths(r + 9);
		const char *y = strstr(r, " y=\""), *w = strstr(r, " width=\"");
		f[n].y = atoi(y + 4);
		f[n].w = hundredths(w + 8);
		const char *t = strstr(r, "<text ");
		t = strchr(t, '>') + 1;
		const char *te = strstr(t, "</text>");
		unescape(f[n].label, sizeof(f[n].label), t, (size_t)(te - t));
		n++;
		s = te;
	}
	return n;
}

static const struct frame *frame_named(const struct frame *f, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(f[i].name, name))
			return &f[i];
	return NULL;
}

/* Geometry invariants: each frame above the root lies on exactly one frame one row down, and the frames on a
 * frame never add up to more than its width. Returns the number of frames checked. */
static size_t check_nesting(const struct frame *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		long long sum = 0;
		int parents = 0;
		for (size_t j = 0; j < n; j++) {
			bool above = f[j].y == f[i].y - FLAMEGRAPH_FRAME_HEIGHT;
			if (above && f[j].x >= f[i].x && f[j].x < f[i].x + f[i].w) {
				assert_true(f[j].x + f[j].w <= f[i].x + f[i].w);
				sum += f[j].w;
			}
			if (f[j].y == f[i].y + FLAMEGRAPH_FRAME_HEIGHT && f[i].x >= f[j].x &&
			    f[i].x + f[i].w <= f[j].x + f[j].w)
				parents++;
		}
		if (sum > f[i].w)
			fail_msg("frame %s (width %lld) carries %lld", f[i].name, f[i].w, sum);
		assert_int_equal(parents, strcmp(f[i].name, "all") ? 1 : 0);
		assert_true(f[i].w > 0);
	}
	return n;
}

static char *render(const struct profile *p, const struct flamegraph_opts *o)
{
	struct buf b = {0};
	assert_int_equal(flamegraph_svg(p, o, &b), 0);
	assert_false(b.oom);
	if (!xml_wellformed(b.p))
		fail_msg("SVG not well-formed: %s", xml_error);
	return b.p;
}

/* main;a;b 3, main;a;c... 1, main;d 4: 8 samples on 1180 px. */
static struct profile *known(void)
{
	struct profile *p = profile__new(PROFILE_CPU, 99);
	add(p, "api", "uvicorn", "main;a;b", 3, 3 * 10101010ull);
	add(p, "api", "uvicorn", "main;a;c_very_long_function_name_xyz", 1, 10101010ull);
	add(p, "api", "worker", "main;d", 4, 4 * 10101010ull);
	profile__set_time(p, 1764172800000000000ull, 30000000000ull);
	return p;
}

static void test_known_geometry(void **state)
{
	struct profile *p = known();
	struct flamegraph_opts o = { .service = "api" };
	char *svg = render(p, &o);
	struct frame f[16];
	size_t n = parse_frames(svg, f, 16);
	assert_int_equal(n, 6);
	const struct frame *all = frame_named(f, n, "all"), *main_ = frame_named(f, n, "main"),
			   *a = frame_named(f, n, "a"), *b = frame_named(f, n, "b"),
			   *c = frame_named(f, n, "c_very_long_function_name_xyz"), *d = frame_named(f, n, "d");
	assert_true(all && main_ && a && b && c && d);
	/* Widths proportional to samples over 1200 - 2 * 10 px; siblings sorted by name, left to right. */
	assert_int_equal(all->x, 1000);
	assert_int_equal(all->w, 118000);
	assert_int_equal(main_->w, 118000);
	assert_int_equal(a->x, 1000);
	assert_int_equal(a->w, 59000);
	assert_int_equal(d->x, 60000);
	assert_int_equal(d->w, 59000);
	assert_int_equal(b->x, 1000);
	assert_int_equal(b->w, 44250);
	assert_int_equal(c->x, 45250);
	assert_int_equal(c->w, 14750);
	/* The root is the bottom row; each call one row up. */
	assert_int_equal(main_->y, all->y - 16);
	assert_int_equal(a->y, all->y - 32);
	assert_int_equal(d->y, a->y);
	assert_int_equal(b->y, all->y - 48);
	check_nesting(f, n);
	/* Tooltips: value and share of the total. */
	assert_string_equal(all->tip, "8 samples, 100.00%");
	assert_string_equal(b->tip, "3 samples, 37.50%");
	assert_string_equal(c->tip, "1 sample, 12.50%");
	assert_string_equal(d->tip, "4 samples, 50.00%");
	/* Labels: whole when they fit (147.5 px holds 19 characters), cut with ".." when not. */
	assert_string_equal(b->label, "b");
	assert_string_equal(c->label, "c_very_long_funct..");
	/* Title and the default subtitle. */
	assert_non_null(strstr(svg, ">CPU profile</text>"));
	assert_non_null(strstr(svg, ">service api, 30 s, 8 samples at 99 Hz (80.8 ms of CPU)</text>"));
	/* The same profile renders the same bytes. */
	char *again = render(p, &o);
	assert_string_equal(svg, again);
	free(again);
	free(svg);
	profile__free(p);
}

static void test_script_self_contained(void **state)
{
	struct profile *p = known();
	char *svg = render(p, NULL);
	static const char *const want[] = {
		"<svg xmlns=\"http://www.w3.org/2000/svg\"", "onload=\"init(evt)\"",
		"<script type=\"text/ecmascript\"><![CDATA[", "function init(", "function zoom(", "function unzoom(",
		"function search(", "function clearSearch(", "'Matched: '", "id=\"reset\"", "id=\"search\"",
		"id=\"matched\"", "id=\"details\"", "new RegExp(", "onclick",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (!strstr(svg, want[i]))
			fail_msg("SVG lacks %s", want[i]);
	/* Nothing fetched: the only URL is the SVG namespace. */
	const char *h = strstr(svg, "http");
	assert_non_null(h);
	assert_null(strstr(h + 4, "http"));
	assert_null(strstr(svg, "href"));
	assert_null(strstr(svg, "url("));
	assert_null(strstr(svg, "@import"));
	assert_null(strstr(svg, "<image"));
	/* The script's CDATA section ends once. */
	const char *end = strstr(svg, "]]>");
	assert_non_null(end);
	assert_null(strstr(end + 3, "]]>"));
	free(svg);
	profile__free(p);
}

static void test_escaping(void **state)
{
	struct profile *p = profile__new(PROFILE_CPU, 99);
	static const char *const names[] = {
		"operator<<(std::ostream&, \"x\")", "a>b", "it's", "<script>alert(1)</script>", "x]]>y",
	};
	struct profile_frame f[2] = { { .name = NULL }, { .name = "main" } };
	for (size_t i = 0; i < 5; i++) {
		f[0].name = names[i];
		assert_int_equal(profile__add(p, "svc<&>", "t\"'", f, 2, 1, 1), 0);
	}
	f[0].name = "bad\xff\xfe utf8 \x01 ctl caf\xc3\xa9";
	assert_int_equal(profile__add(p, "svc<&>", "t\"'", f, 2, 1, 1), 0);
	struct flamegraph_opts o = {
		.title = "<My & \"title\">", .service = "svc<&>", .flags = PROFILE_FOLD_SERVICE | PROFILE_FOLD_THREAD,
	};
	char *svg = render(p, &o);
	static const char *const escaped[] = {
		"operator&lt;&lt;(std::ostream&amp;, &quot;x&quot;)", "a&gt;b", "it&apos;s",
		"&lt;script&gt;alert(1)&lt;/script&gt;", "x]]&gt;y", "svc&lt;&amp;&gt;", "t&quot;&apos;",
		"&lt;My &amp; &quot;title&quot;&gt;", "bad?? utf8 ? ctl caf\xc3\xa9",
	};
	for (size_t i = 0; i < sizeof(escaped) / sizeof(escaped[0]); i++)
		if (!strstr(svg, escaped[i]))
			fail_msg("SVG lacks %s", escaped[i]);
	assert_null(strstr(svg, "<script>alert"));
	assert_null(strstr(svg, "a>b"));
	assert_null(strstr(svg, "it's"));
	assert_null(strstr(svg, "\xff"));
	/* Each name is a frame (read back unescaped), on the service and thread frames. */
	struct frame fr[16];
	size_t n = parse_frames(svg, fr, 16);
	assert_int_equal(n, 3 + 1 + 6);	/* all, service, thread, main, six leaves */
	for (size_t i = 0; i < 5; i++)
		assert_non_null(frame_named(fr, n, names[i]));
	const struct frame *svc = frame_named(fr, n, "svc<&>"), *thr = frame_named(fr, n, "t\"'");
	assert_true(svc && thr);
	assert_int_equal(thr->y, svc->y - 16);
	assert_int_equal(frame_named(fr, n, "main")->y, thr->y - 16);
	check_nesting(fr, n);
	free(svg);
	profile__free(p);
}

static void test_min_width(void **state)
{
	struct profile *p = profile__new(PROFILE_CPU, 99);
	add(p, "api", "t", "main;big", 1000000, 0);
	add(p, "api", "t", "main;tiny;above_tiny", 50, 0);	/* 0.059 px */
	char *svg = render(p, NULL);
	assert_null(strstr(svg, "tiny"));
	struct frame f[8];
	assert_int_equal(parse_frames(svg, f, 8), 3);
	free(svg);
	struct flamegraph_opts o = { .min_width = 0.05 };
	svg = render(p, &o);
	size_t n = parse_frames(svg, f, 8);
	assert_int_equal(n, 5);
	assert_int_equal(frame_named(f, n, "tiny")->w, 6);
	assert_int_equal(frame_named(f, n, "above_tiny")->w, 6);
	assert_string_equal(frame_named(f, n, "tiny")->label, "");	/* no room for text */
	check_nesting(f, n);
	free(svg);
	profile__free(p);
}

static void test_offcpu_values(void **state)
{
	struct profile *p = profile__new(PROFILE_OFFCPU, 0);
	add(p, "db", "postgres", "main;epoll_wait", 3, 1500000000ull);
	add(p, "db", "postgres", "main;read", 7, 500000000ull);
	struct flamegraph_opts o = { .service = "db" };
	char *svg = render(p, &o);
	struct frame f[8];
	size_t n = parse_frames(svg, f, 8);
	assert_int_equal(n, 4);
	/* Widths by blocked time by default, not by count. */
	assert_int_equal(frame_named(f, n, "epoll_wait")->w, 88500);
	assert_int_equal(frame_named(f, n, "read")->w, 29500);
	assert_string_equal(frame_named(f, n, "all")->tip, "2 s, 100.00%");
	assert_string_equal(frame_named(f, n, "epoll_wait")->tip, "1.5 s, 75.00%");
	assert_string_equal(frame_named(f, n, "read")->tip, "500 ms, 25.00%");
	assert_non_null(strstr(svg, ">Off-CPU profile</text>"));
	assert_non_null(strstr(svg, ">service db, 2 s blocked in 10 waits</text>"));
	/* Blue hues off-CPU: the blue component is the largest. */
	const char *fill = strstr(svg, "fill=\"rgb(");
	fill = strstr(fill + 1, "fill=\"rgb(");	/* past the root's grey */
	fill = strstr(fill + 1, "fill=\"rgb(");
	int r, g, b;
	assert_int_equal(sscanf(fill, "fill=\"rgb(%d,%d,%d)", &r, &g, &b), 3);
	assert_true(b > r && b > g);
	free(svg);
	/* Asked for counts instead. */
	o.value = PROFILE_VALUE_COUNT;
	svg = render(p, &o);
	n = parse_frames(svg, f, 8);
	assert_int_equal(frame_named(f, n, "read")->w, 82600);
	assert_string_equal(frame_named(f, n, "read")->tip, "7 samples, 70.00%");
	free(svg);
	profile__free(p);
}

static void test_rounding_many(void **state)
{
	/* Many stacks with awkward values and a narrow image: rounding must never push children past a parent. */
	struct profile *p = profile__new(PROFILE_CPU, 99);
	char stack[128];
	for (int i = 0; i < 300; i++) {
		snprintf(stack, sizeof(stack), "main;m%d;n%d;o%d", i % 7, i % 13, i);
		add(p, "api", "t", stack, (uint64_t)(i * 7919 % 997) + 1, 0);
	}
	struct flamegraph_opts o = { .width = 333, .min_width = 0.01 };
	char *svg = render(p, &o);
	static struct frame f[2000];
	size_t n = parse_frames(svg, f, 2000);
	assert_true(n > 300);
	check_nesting(f, n);
	free(svg);
	profile__free(p);
}

static void test_empty(void **state)
{
	struct profile *p = profile__new(PROFILE_CPU, 19);
	char *svg = render(p, NULL);
	assert_non_null(strstr(svg, ">no samples</text>"));
	struct frame f[2];
	assert_int_equal(parse_frames(svg, f, 2), 0);
	free(svg);
	struct buf b = {0};
	assert_int_equal(flamegraph_svg(NULL, NULL, &b), -EINVAL);
	profile__free(p);
}

/* The checker itself rejects what it must. */
static void test_checker(void **state)
{
	assert_true(xml_wellformed("<?xml version=\"1.0\"?>\n<a x=\"1\"><b/><![CDATA[<&]]>t&amp;&#10;</a>\n"));
	assert_false(xml_wellformed("<a><b></a></b>"));
	assert_false(xml_wellformed("<a>x < y</a>"));
	assert_false(xml_wellformed("<a>AT&T</a>"));
	assert_false(xml_wellformed("<a x=\"<\"/>"));
	assert_false(xml_wellformed("<a x=\"1\" x=\"2\"/>"));
	assert_false(xml_wellformed("<a x=1/>"));
	assert_false(xml_wellformed("<a>\x01</a>"));
	assert_false(xml_wellformed("<a>\xff</a>"));
	assert_false(xml_wellformed("<a/><b/>"));
	assert_false(xml_wellformed("<a>"));
}

/* The same documents through libxml2's parser. */
static void test_xmllint(void **state)
{
	struct profile *p = profile__new(PROFILE_CPU, 99);
	struct profile_frame f[2] = { { "operator<<(std::ostream&, \"x\") bad\xff\x01" }, { "main" } };
	assert_int_equal(profile__add(p, "svc<&>", "t\"'", f, 2, 3, 3), 0);
	add(p, "api", "t", "main;x]]>y", 1, 1);
	struct flamegraph_opts o = { .title = "<&>", .flags = PROFILE_FOLD_SERVICE | PROFILE_FOLD_THREAD };
	char *docs[2] = { render(p, &o), NULL };
	struct profile *e = profile__new(PROFILE_OFFCPU, 0);
	docs[1] = render(e, NULL);
	for (int i = 0; i < 2; i++) {
		char path[] = "/tmp/loupe-svg-XXXXXX";
		int fd = mkstemp(path);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, docs[i], strlen(docs[i])), (ssize_t)strlen(docs[i]));
		close(fd);
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "xmllint --noout '%s'", path);
		int rc = system(cmd);
		unlink(path);
		assert_int_equal(rc, 0);
		free(docs[i]);
	}
	profile__free(e);
	profile__free(p);
}

int main(void)
{
	const struct CMUnitTest all[] = {
		cmocka_unit_test(test_checker),
		cmocka_unit_test(test_known_geometry),
		cmocka_unit_test(test_script_self_contained),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_min_width),
		cmocka_unit_test(test_offcpu_values),
		cmocka_unit_test(test_rounding_many),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_xmllint),
	};
	size_t n = sizeof(all) / sizeof(all[0]);
	/* cmocka 1.1's skip() prints "not ok ... # SKIP": a test that cannot run here is left out and reported as
	 * one TAP skip line with the reason. test_xmllint is last. */
	if (system("command -v xmllint >/dev/null 2>&1") != 0) {
		printf("ok - test_xmllint # SKIP xmllint not installed (apt-get install libxml2-utils)\n");
		n--;
	}
	fflush(stdout);
	return _cmocka_run_group_tests("test_flamegraph", all, n, NULL, NULL);
}
