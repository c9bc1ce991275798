// SPDX-License-Identifier: BSD-2-Clause
/* The profile store: interned strings, frames and stacks, each an array found through an id index
 * (lib/hash.h), so adding a sample of a known stack allocates nothing. */
#include "profile/profile.h"

#include <errno.h>
#include <stdbool.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"

struct frame {
	uint32_t name;		/* string id */
	uint32_t module;	/* string id; 0 ("") when unknown */
	uint32_t file;		/* string id; 0 ("") for native frames */
	uint32_t line;
};

struct stack {
	uint32_t service, thread;	/* string ids */
	uint32_t depth;
	size_t off;			/* frames in profile.pool[off .. off + depth), leaf first */
	uint64_t count, ns;
	uint64_t hash;
};

struct profile {
	enum profile_kind kind;
	unsigned int hz;
	uint64_t start_ns, duration_ns;
	size_t max_stacks;
	uint64_t dropped;

	char **str;		/* string id -> text; id 0 is "" */
	size_t nstr, str_cap;
	struct id_index str_idx;

	struct frame *frame;
	size_t nframe, frame_cap;
	struct id_index frame_idx;	/* keyed by name string id */

	struct stack *stack;
	size_t nstack, stack_cap;
	struct id_index stack_idx;
	uint32_t *pool;
	size_t npool, pool_cap;
};

/* arr (of elem-sized items, *cap of them) grown to hold at least need (need >= 1): arr itself when it does,
 * the reallocated array, or NULL when out of memory (arr is then untouched). */
static void *grow(void *arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return arr;
	size_t n = *cap ? *cap : 16;
	while (n < need)
		n *= 2;
	void *p = realloc(arr, n * elem);
	if (p)
		*cap = n;
	return p;
}

/* Grow the array field arr of capacity field cap to need items; false when out of memory. */
#define GROW(arr, cap, need)                                                       \
	({                                                                          \
		void *grown_ = grow((arr), &(cap), (need), sizeof(*(arr)));         \
		if (grown_)                                                         \
			(arr) = grown_;                                             \
		grown_ != NULL;                                                     \
	})


static uint64_t str_hash_of(const void *ctx, uint32_t id)
{
	const struct profile *p = ctx;
	return hash_fast_str(p->str[id]);
}

struct str_key {
	const struct profile *p;
	const char *s;
};

static bool str_eq(const void *ctx, uint32_t id)
{
	const struct str_key *k = ctx;
	return !strcmp(k->p->str[id], k->s);
}

/* The id of string s, interning it when new; -ENOMEM. */
static int64_t intern(struct profile *p, const char *s)
{
	uint64_t h = hash_fast_str(s);
	int64_t found = id_index__find(&p->str_idx, h, str_eq, &(struct str_key){ p, s });
	if (found >= 0)
		return found;
	if (id_index__reserve(&p->str_idx, p->nstr + 1, str_hash_of, p) || !GROW(p->str, p->str_cap, p->nstr + 1))
		return -ENOMEM;
	char *copy = strdup(s);
	if (!copy)
		return -ENOMEM;
	uint32_t id = (uint32_t)p->nstr++;
	p->str[id] = copy;
	id_index__insert(&p->str_idx, h, id);
	return id;
}

static uint64_t u32_hash(uint32_t v)
{
	return fnv1a(FNV1A_SEED, &v, sizeof(v));
}

static uint64_t frame_hash_of(const void *ctx, uint32_t id)
{
	const struct profile *p = ctx;
	return u32_hash(p->frame[id].name);
}

struct frame_key {
	const struct profile *p;
	uint32_t name;
};

static bool frame_eq(const void *ctx, uint32_t id)
{
	const struct frame_key *k = ctx;
	return k->p->frame[id].name == k->name;
}

/* The frame id of the function named by string id name; module, file (string ids, 0 unknown) and line fill in
 * unknown ones. */
static int64_t frame_id(struct profile *p, uint32_t name, uint32_t module, uint32_t file, uint32_t line)
{
	uint64_t h = u32_hash(name);
	int64_t found = id_index__find(&p->frame_idx, h, frame_eq, &(struct frame_key){ p, name });
	if (found >= 0) {
		struct frame *f = &p->frame[found];
		if (!f->module)
			f->module = module;
		if (!f->file) {
			f->file = file;
			f->line = line;
		}
		return found;
	}
	if (id_index__reserve(&p->frame_idx, p->nframe + 1, frame_hash_of, p) ||
	    !GROW(p->frame, p->frame_cap, p->nframe + 1))
		return -ENOMEM;
	uint32_t id = (uint32_t)p->nframe++;
	p->frame[id] = (struct frame){ .name = name, .module = module, .file = file, .line = line };
	id_index__insert(&p->frame_idx, h, id);
	return id;
}

static uint64_t stack_key_hash(uint32_t service, uint32_t thread, const uint32_t *frames, uint32_t depth)
{
	/* 8 bytes a step: a sample's stack is ~30 ids, hashed at every sample */
	const uint32_t head[3] = {service, thread, depth};
	return hash_fast(head, sizeof(head)) ^ hash_fast(frames, depth * sizeof(*frames));
}

static uint64_t stack_hash_of(const void *ctx, uint32_t id)
{
	const struct profile *p = ctx;
	return p->stack[id].hash;
}

struct stack_key {
	const struct profile *p;
	uint64_t hash;
	uint32_t service, thread, depth;
	const uint32_t *frames;
};

static bool stack_eq(const void *ctx, uint32_t id)
{
	const struct stack_key *k = ctx;
	const struct stack *s = &k->p->stack[id];
	return s->hash == k->hash && s->service == k->service && s->thread == k->thread && s->depth == k->depth &&
	       !memcmp(k->p->pool + s->off, k->frames, k->depth * sizeof(*k->frames));
}

/* Add values to the stack (service, thread, frames), creating it when new unless the limit is reached (and force
 * is false): 0 when added, -ENOSPC at the limit (the caller folds the sample into [other]), or -ENOMEM. */
static int stack_add(struct profile *p, uint32_t service, uint32_t thread, const uint32_t *frames, uint32_t depth,
		     uint64_t count, uint64_t ns, bool force)
{
	struct stack_key key = {
		.p = p, .hash = stack_key_hash(service, thread, frames, depth),
		.service = service, .thread = thread, .depth = depth, .frames = frames,
	};
	int64_t found = id_index__find(&p->stack_idx, key.hash, stack_eq, &key);
	if (found >= 0) {
		p->stack[found].count += count;
		p->stack[found].ns += ns;
		return 0;
	}
	if (p->nstack >= p->max_stacks && !force)
		return -ENOSPC;
	if (id_index__reserve(&p->stack_idx, p->nstack + 1, stack_hash_of, p) ||
	    !GROW(p->stack, p->stack_cap, p->nstack + 1) ||
	    !GROW(p->pool, p->pool_cap, p->npool + depth))
		return -ENOMEM;
	uint32_t id = (uint32_t)p->nstack++;
	memcpy(p->pool + p->npool, frames, depth * sizeof(*frames));
	p->stack[id] = (struct stack){
		.service = service, .thread = thread, .depth = depth, .off = p->npool,
		.count = count, .ns = ns, .hash = key.hash,
	};
	p->npool += depth;
	id_index__insert(&p->stack_idx, key.hash, id);
	return 0;
}

struct profile *profile__new(enum profile_kind kind, unsigned int hz)
{
	if ((kind != PROFILE_CPU && kind != PROFILE_OFFCPU) || (kind == PROFILE_CPU && hz == 0))
		return NULL;
	struct profile *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->kind = kind;
	p->hz = hz;
	p->max_stacks = PROFILE_MAX_STACKS;
	if (intern(p, "") != 0) {	/* string id 0 is "": "no module" */
		profile__free(p);
		return NULL;
	}
	return p;
}

void profile__free(struct profile *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nstr; i++)
		free(p->str[i]);
	free(p->str);
	id_index__free(&p->str_idx);
	free(p->frame);
	id_index__free(&p->frame_idx);
	free(p->stack);
	id_index__free(&p->stack_idx);
	free(p->pool);
	free(p);
}

/* The frame id of f's function (a NULL or empty name: PROFILE_UNKNOWN); -ENOMEM. */
static int64_t frame_of(struct profile *p, const struct profile_frame *f)
{
	int64_t name_id = intern(p, f->name && *f->name ? f->name : PROFILE_UNKNOWN);
	int64_t module_id = intern(p, f->module ? f->module : "");
	int64_t file_id = intern(p, f->file ? f->file : "");
	if (name_id < 0 || module_id < 0 || file_id < 0)
		return -ENOMEM;
	return frame_id(p, (uint32_t)name_id, (uint32_t)module_id, (uint32_t)file_id, f->line);
}

/* Frame ids of frames[0..n) into ids, at most PROFILE_MAX_DEPTH of them, and a stack with no frame as the one
 * frame PROFILE_UNKNOWN: the depth (>= 1), or -ENOMEM. */
static int64_t frame_ids(struct profile *p, const struct profile_frame *frames, size_t n, uint32_t *ids)
{
	if (n > PROFILE_MAX_DEPTH)
		n = PROFILE_MAX_DEPTH;	/* leaf first: the outermost callers go */
	for (size_t i = 0; i < n; i++) {
		int64_t f = frame_of(p, &frames[i]);
		if (f < 0)
			return f;
		ids[i] = (uint32_t)f;
	}
	if (n)
		return (int64_t)n;
	int64_t f = frame_of(p, &(struct profile_frame){ .name = PROFILE_UNKNOWN });
	if (f < 0)
		return f;
	ids[0] = (uint32_t)f;
	return 1;
}

/* A sample of a new stack past the stack limit: counted in its service's [other] stack, which is created even
 * past the limit (one per service), so totals stay exact. */
static int add_other(struct profile *p, uint32_t service, uint64_t count, uint64_t ns)
{
	int64_t other = intern(p, PROFILE_OTHER);
	int64_t f = other < 0 ? other : frame_id(p, (uint32_t)other, 0, 0, 0);
	if (f < 0)
		return -ENOMEM;
	uint32_t id = (uint32_t)f;
	int err = stack_add(p, service, (uint32_t)other, &id, 1, count, ns, true);
	if (!err)
		p->dropped += count;
	return err;
}

int profile__add(struct profile *p, const char *service, const char *thread, const struct profile_frame *frames,
		 size_t n, uint64_t count, uint64_t ns)
{
	uint32_t ids[PROFILE_MAX_DEPTH];

	if (!p || (!frames && n))
		return -EINVAL;
	int64_t svc = intern(p, service ? service : "");
	int64_t thr = intern(p, thread ? thread : "");
	if (svc < 0 || thr < 0)
		return -ENOMEM;
	int64_t depth = frame_ids(p, frames, n, ids);
	if (depth < 0)
		return -ENOMEM;
	int rc = stack_add(p, (uint32_t)svc, (uint32_t)thr, ids, (uint32_t)depth, count, ns, false);
	return rc == -ENOSPC ? add_other(p, (uint32_t)svc, count, ns) : rc;
}

/* Whether a frame of s has a name focus matches. */
static bool stack_matches(const struct profile *p, const struct stack *s, const regex_t *focus)
{
	for (uint32_t d = 0; d < s->depth; d++)
		if (!regexec(focus, p->str[p->frame[p->pool[s->off + d]].name], 0, NULL, 0))
			return true;
	return false;
}

int profile__merge(struct profile *dst, const struct profile *src, const char *service)
{
	return profile__merge_focus(dst, src, service, NULL);
}

int profile__merge_focus(struct profile *dst, const struct profile *src, const char *service, const regex_t *focus)
{
	if (!dst || !src || dst->kind != src->kind)
		return -EINVAL;
	struct profile_frame frames[PROFILE_MAX_DEPTH];
	for (size_t i = 0; i < src->nstack; i++) {
		const struct stack *s = &src->stack[i];
		if ((service && strcmp(src->str[s->service], service)) || (focus && !stack_matches(src, s, focus)))
			continue;
		for (uint32_t d = 0; d < s->depth; d++) {
			const struct frame *f = &src->frame[src->pool[s->off + d]];
			frames[d] = (struct profile_frame){ .name = src->str[f->name], .module = src->str[f->module],
							    .file = src->str[f->file], .line = f->line };
		}
		int err = profile__add(dst, src->str[s->service], src->str[s->thread], frames, s->depth, s->count,
				       s->ns);
		if (err)
			return err;
	}
	dst->dropped += src->dropped;
	return 0;
}

uint64_t profile__first_minute(uint64_t now_s, uint64_t window_s, unsigned slots)
{
	uint64_t now_min = now_s / 60, first = (window_s < now_s ? now_s - window_s : 0) / 60;
	return first + slots <= now_min ? now_min + 1 - slots : first;
}

void profile__set_time(struct profile *p, uint64_t start_unix_ns, uint64_t duration_ns)
{
	p->start_ns = start_unix_ns;
	p->duration_ns = duration_ns;
}

void profile__set_max_stacks(struct profile *p, size_t max_stacks)
{
	p->max_stacks = max_stacks ? max_stacks : 1;
}

enum profile_kind profile__kind(const struct profile *p)
{
	return p->kind;
}

unsigned int profile__hz(const struct profile *p)
{
	return p->hz;
}

uint64_t profile__period_ns(const struct profile *p)
{
	return p->kind == PROFILE_CPU ? NSEC_PER_SEC / p->hz : 1;
}

uint64_t profile__start_ns(const struct profile *p)
{
	return p->start_ns;
}

uint64_t profile__duration_ns(const struct profile *p)
{
	return p->duration_ns;
}

enum profile_value profile__value(const struct profile *p, enum profile_value v)
{
	if (v != PROFILE_VALUE_DEFAULT)
		return v;
	return p->kind == PROFILE_CPU ? PROFILE_VALUE_COUNT : PROFILE_VALUE_NS;
}

size_t profile__sample_count(const struct profile *p)
{
	return p->nstack;
}

int profile__sample(const struct profile *p, size_t i, struct profile_sample *s)
{
	if (i >= p->nstack)
		return -ERANGE;
	const struct stack *st = &p->stack[i];
	*s = (struct profile_sample){
		.service = p->str[st->service], .thread = p->str[st->thread],
		.frames = p->pool + st->off, .depth = st->depth, .count = st->count, .ns = st->ns,
	};
	return 0;
}

uint64_t profile__sample_value(const struct profile *p, const struct profile_sample *s, enum profile_value v)
{
	return profile__value(p, v) == PROFILE_VALUE_NS ? s->ns : s->count;
}

size_t profile__frame_count(const struct profile *p)
{
	return p->nframe;
}

const char *profile__frame_name(const struct profile *p, uint32_t id)
{
	return id < p->nframe ? p->str[p->frame[id].name] : NULL;
}

const char *profile__frame_module(const struct profile *p, uint32_t id)
{
	return id < p->nframe && p->frame[id].module ? p->str[p->frame[id].module] : NULL;
}

const char *profile__frame_file(const struct profile *p, uint32_t id, uint32_t *line)
{
	if (id >= p->nframe || !p->frame[id].file)
		return NULL;
	if (line)
		*line = p->frame[id].line;
	return p->str[p->frame[id].file];
}

void profile__totals(const struct profile *p, uint64_t *count, uint64_t *ns)
{
	uint64_t c = 0, t = 0;
	for (size_t i = 0; i < p->nstack; i++) {
		c += p->stack[i].count;
		t += p->stack[i].ns;
	}
	if (count)
		*count = c;
	if (ns)
		*ns = t;
}

uint64_t profile__dropped(const struct profile *p)
{
	return p->dropped;
}

/* Folded output. */

struct folded_line {
	size_t off;	/* text in the scratch buffer, NUL-terminated */
	uint64_t value;
};

static void folded_name(struct buf *b, const char *s)
{
	if (!*s)
		s = PROFILE_UNKNOWN;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char o = c == ';' ? ':' : (c < 0x20 || c == 0x7f) ? '?' : (char)c;
		buf__append(b, &o, 1);
	}
}

static int folded_cmp(const void *a, const void *b, void *text)
{
	const struct folded_line *x = a, *y = b;
	return strcmp((const char *)text + x->off, (const char *)text + y->off);
}

/* Append stack s as a folded line (root first, without its value) and its NUL to text. */
static void folded_line(const struct profile *p, const struct stack *s, unsigned int flags, struct buf *text)
{
	const char *sep = "";
	if (flags & PROFILE_FOLD_SERVICE) {
		folded_name(text, p->str[s->service]);
		sep = ";";
	}
	if (flags & PROFILE_FOLD_THREAD) {
		buf__puts(text, sep);
		folded_name(text, p->str[s->thread]);
		sep = ";";
	}
	for (uint32_t d = s->depth; d-- > 0;) {
		const struct frame *f = &p->frame[p->pool[s->off + d]];
		buf__puts(text, sep);
		folded_name(text, p->str[f->name]);
		if (f->file) {	/* interpreted code: "module.qualname (file.py:LINE)" tells it from native frames */
			buf__puts(text, " (");
			folded_name(text, p->str[f->file]);
			buf__printf(text, ":%u)", f->line);
		}
		sep = ";";
	}
	buf__append(text, "", 1);	/* keep the NUL: lines are read back as C strings */
}

/* Sorted lines[0..n) (text in text) written to out, equal lines summed into one. */
static void folded_write(const struct folded_line *line, size_t n, const char *text, struct buf *out)
{
	for (size_t i = 0; i < n;) {
		uint64_t sum = line[i].value;
		size_t j = i + 1;
		while (j < n && !strcmp(text + line[i].off, text + line[j].off))
			sum += line[j++].value;
		buf__printf(out, "%s %llu\n", text + line[i].off, (unsigned long long)sum);
		i = j;
	}
}

int profile__folded(const struct profile *p, enum profile_value v, unsigned int flags, struct buf *out)
{
	struct buf text = {0};
	struct folded_line *line = p->nstack ? calloc(p->nstack, sizeof(*line)) : NULL;
	size_t n = 0;
	int err = 0;

	if (p->nstack && !line)
		return -ENOMEM;
	for (size_t i = 0; i < p->nstack; i++) {
		const struct stack *s = &p->stack[i];
		uint64_t val = profile__value(p, v) == PROFILE_VALUE_NS ? s->ns : s->count;
		if (!val)
			continue;
		line[n++] = (struct folded_line){ .off = text.len, .value = val };
		folded_line(p, s, flags, &text);
	}
	if (text.oom) {
		err = -ENOMEM;
		goto out;
	}
	if (n)
		qsort_r(line, n, sizeof(*line), folded_cmp, text.p);
	folded_write(line, n, text.p, out);
	if (out->oom)
		err = -ENOMEM;
out:
	free(line);
	buf__free(&text);
	return err;
}
