/* The profile store: interned strings, frames and stacks in open-addressing hash tables, so adding a sample of a
 * known stack allocates nothing. */
#include "profile/profile.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* An open-addressing index of ids: slot values are id + 1, 0 is empty. Callers hash and compare. */
struct index {
	uint32_t *slot;
	size_t cap;	/* a power of two, or 0 */
};

struct frame {
	uint32_t name;		/* string id */
	uint32_t module;	/* string id; 0 ("") when unknown */
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
	struct index str_idx;

	struct frame *frame;
	size_t nframe, frame_cap;
	struct index frame_idx;	/* keyed by name string id */

	struct stack *stack;
	size_t nstack, stack_cap;
	struct index stack_idx;
	uint32_t *pool;
	size_t npool, pool_cap;
};

/* FNV-1a, 64 bits. */
static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

#define FNV_SEED 0xcbf29ce484222325ull

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


/* Rebuild idx with room for at least n entries at a load factor of at most 1/2; hash_of(ctx, id) rehashes. */
static int index_reserve(struct index *idx, size_t n, uint64_t (*hash_of)(const struct profile *, uint32_t),
			 const struct profile *p)
{
	if (n * 2 <= idx->cap)
		return 0;
	size_t cap = idx->cap ? idx->cap * 2 : 64;
	while (cap < n * 2)
		cap *= 2;
	uint32_t *slot = calloc(cap, sizeof(*slot));
	if (!slot)
		return -ENOMEM;
	for (size_t i = 0; i < idx->cap; i++) {
		uint32_t v = idx->slot[i];
		if (!v)
			continue;
		size_t j = hash_of(p, v - 1) & (cap - 1);
		while (slot[j])
			j = (j + 1) & (cap - 1);
		slot[j] = v;
	}
	free(idx->slot);
	idx->slot = slot;
	idx->cap = cap;
	return 0;
}

static uint64_t str_hash(const char *s)
{
	return fnv(FNV_SEED, s, strlen(s));
}

static uint64_t str_hash_of(const struct profile *p, uint32_t id)
{
	return str_hash(p->str[id]);
}

/* The id of string s, interning it when new; -ENOMEM. */
static int64_t intern(struct profile *p, const char *s)
{
	uint64_t h = str_hash(s);
	if (p->str_idx.cap) {
		for (size_t j = h & (p->str_idx.cap - 1);; j = (j + 1) & (p->str_idx.cap - 1)) {
			uint32_t v = p->str_idx.slot[j];
			if (!v)
				break;
			if (!strcmp(p->str[v - 1], s))
				return v - 1;
		}
	}
	if (index_reserve(&p->str_idx, p->nstr + 1, str_hash_of, p) ||
	    !GROW(p->str, p->str_cap, p->nstr + 1))
		return -ENOMEM;
	char *copy = strdup(s);
	if (!copy)
		return -ENOMEM;
	uint32_t id = (uint32_t)p->nstr++;
	p->str[id] = copy;
	size_t j = h & (p->str_idx.cap - 1);
	while (p->str_idx.slot[j])
		j = (j + 1) & (p->str_idx.cap - 1);
	p->str_idx.slot[j] = id + 1;
	return id;
}

static uint64_t u32_hash(uint32_t v)
{
	return fnv(FNV_SEED, &v, sizeof(v));
}

static uint64_t frame_hash_of(const struct profile *p, uint32_t id)
{
	return u32_hash(p->frame[id].name);
}

/* The frame id of the function named by string id name; module (string id, 0 unknown) fills in an unknown one. */
static int64_t frame_id(struct profile *p, uint32_t name, uint32_t module)
{
	uint64_t h = u32_hash(name);
	if (p->frame_idx.cap) {
		for (size_t j = h & (p->frame_idx.cap - 1);; j = (j + 1) & (p->frame_idx.cap - 1)) {
			uint32_t v = p->frame_idx.slot[j];
			if (!v)
				break;
			struct frame *f = &p->frame[v - 1];
			if (f->name == name) {
				if (!f->module)
					f->module = module;
				return v - 1;
			}
		}
	}
	if (index_reserve(&p->frame_idx, p->nframe + 1, frame_hash_of, p) ||
	    !GROW(p->frame, p->frame_cap, p->nframe + 1))
		return -ENOMEM;
	uint32_t id = (uint32_t)p->nframe++;
	p->frame[id] = (struct frame){ .name = name, .module = module };
	size_t j = h & (p->frame_idx.cap - 1);
	while (p->frame_idx.slot[j])
		j = (j + 1) & (p->frame_idx.cap - 1);
	p->frame_idx.slot[j] = id + 1;
	return id;
}

static uint64_t stack_key_hash(uint32_t service, uint32_t thread, const uint32_t *frames, uint32_t depth)
{
	uint64_t h = fnv(FNV_SEED, &service, sizeof(service));
	h = fnv(h, &thread, sizeof(thread));
	h = fnv(h, &depth, sizeof(depth));
	return fnv(h, frames, depth * sizeof(*frames));
}

static uint64_t stack_hash_of(const struct profile *p, uint32_t id)
{
	return p->stack[id].hash;
}

/* Add values to the stack (service, thread, frames), creating it when new unless the limit is reached:
 * returns 1 then (the caller folds the sample into [other]), 0 when added, or -ENOMEM. */
static int stack_add(struct profile *p, uint32_t service, uint32_t thread, const uint32_t *frames, uint32_t depth,
		     uint64_t count, uint64_t ns, bool force)
{
	uint64_t h = stack_key_hash(service, thread, frames, depth);
	if (p->stack_idx.cap) {
		for (size_t j = h & (p->stack_idx.cap - 1);; j = (j + 1) & (p->stack_idx.cap - 1)) {
			uint32_t v = p->stack_idx.slot[j];
			if (!v)
				break;
			struct stack *s = &p->stack[v - 1];
			if (s->hash == h && s->service == service && s->thread == thread && s->depth == depth &&
			    !memcmp(p->pool + s->off, frames, depth * sizeof(*frames))) {
				s->count += count;
				s->ns += ns;
				return 0;
			}
		}
	}
	if (p->nstack >= p->max_stacks && !force)
		return 1;
	if (index_reserve(&p->stack_idx, p->nstack + 1, stack_hash_of, p) ||
	    !GROW(p->stack, p->stack_cap, p->nstack + 1) ||
	    !GROW(p->pool, p->pool_cap, p->npool + depth))
		return -ENOMEM;
	uint32_t id = (uint32_t)p->nstack++;
	memcpy(p->pool + p->npool, frames, depth * sizeof(*frames));
	p->stack[id] = (struct stack){
		.service = service, .thread = thread, .depth = depth, .off = p->npool,
		.count = count, .ns = ns, .hash = h,
	};
	p->npool += depth;
	size_t j = h & (p->stack_idx.cap - 1);
	while (p->stack_idx.slot[j])
		j = (j + 1) & (p->stack_idx.cap - 1);
	p->stack_idx.slot[j] = id + 1;
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
	free(p->str_idx.slot);
	free(p->frame);
	free(p->frame_idx.slot);
	free(p->stack);
	free(p->stack_idx.slot);
	free(p->pool);
	free(p);
}

static int64_t intern_or_unknown(struct profile *p, const char *s)
{
	return intern(p, s && *s ? s : PROFILE_UNKNOWN);
}

int profile__add(struct profile *p, const char *service, const char *thread, const struct profile_frame *frames,
		 size_t n, uint64_t count, uint64_t ns)
{
	if (!p || (!frames && n))
		return -EINVAL;
	uint32_t ids[PROFILE_MAX_DEPTH];
	uint32_t depth = 0;
	int64_t svc = intern(p, service ? service : "");
	int64_t thr = intern(p, thread ? thread : "");
	if (svc < 0 || thr < 0)
		return -ENOMEM;
	if (n > PROFILE_MAX_DEPTH)
		n = PROFILE_MAX_DEPTH;	/* leaf first: the outermost callers go */
	for (size_t i = 0; i < n; i++) {
		int64_t name = intern_or_unknown(p, frames[i].name);
		int64_t mod = intern(p, frames[i].module ? frames[i].module : "");
		if (name < 0 || mod < 0)
			return -ENOMEM;
		int64_t f = frame_id(p, (uint32_t)name, (uint32_t)mod);
		if (f < 0)
			return -ENOMEM;
		ids[depth++] = (uint32_t)f;
	}
	if (!depth) {
		int64_t name = intern(p, PROFILE_UNKNOWN);
		int64_t f = name < 0 ? name : frame_id(p, (uint32_t)name, 0);
		if (f < 0)
			return -ENOMEM;
		ids[depth++] = (uint32_t)f;
	}
	int rc = stack_add(p, (uint32_t)svc, (uint32_t)thr, ids, depth, count, ns, false);
	if (rc <= 0)
		return rc;

	/* Past the stack limit: the service's [other] stack, created even past the limit (one per service). */
	int64_t other = intern(p, PROFILE_OTHER);
	int64_t f = other < 0 ? other : frame_id(p, (uint32_t)other, 0);
	if (f < 0)
		return -ENOMEM;
	ids[0] = (uint32_t)f;
	rc = stack_add(p, (uint32_t)svc, (uint32_t)other, ids, 1, count, ns, true);
	if (!rc)
		p->dropped += count;
	return rc;
}

int profile__merge(struct profile *dst, const struct profile *src, const char *service)
{
	if (!dst || !src || dst->kind != src->kind)
		return -EINVAL;
	struct profile_frame frames[PROFILE_MAX_DEPTH];
	for (size_t i = 0; i < src->nstack; i++) {
		const struct stack *s = &src->stack[i];
		if (service && strcmp(src->str[s->service], service))
			continue;
		for (uint32_t d = 0; d < s->depth; d++) {
			const struct frame *f = &src->frame[src->pool[s->off + d]];
			frames[d] = (struct profile_frame){ .name = src->str[f->name], .module = src->str[f->module] };
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
	return p->kind == PROFILE_CPU ? 1000000000ull / p->hz : 1;
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
		line[n] = (struct folded_line){ .off = text.len, .value = val };
		const char *sep = "";
		if (flags & PROFILE_FOLD_SERVICE) {
			folded_name(&text, p->str[s->service]);
			sep = ";";
		}
		if (flags & PROFILE_FOLD_THREAD) {
			buf__puts(&text, sep);
			folded_name(&text, p->str[s->thread]);
			sep = ";";
		}
		for (uint32_t d = s->depth; d-- > 0;) {
			buf__puts(&text, sep);
			folded_name(&text, p->str[p->frame[p->pool[s->off + d]].name]);
			sep = ";";
		}
		buf__append(&text, "", 1);	/* keep the NUL: lines are read back as C strings */
		n++;
	}
	if (text.oom) {
		err = -ENOMEM;
		goto out;
	}
	if (n)
		qsort_r(line, n, sizeof(*line), folded_cmp, text.p);
	for (size_t i = 0; i < n;) {
		uint64_t sum = line[i].value;
		size_t j = i + 1;
		while (j < n && !strcmp(text.p + line[i].off, text.p + line[j].off))
			sum += line[j++].value;
		buf__printf(out, "%s %llu\n", text.p + line[i].off, (unsigned long long)sum);
		i = j;
	}
	if (out->oom)
		err = -ENOMEM;
out:
	free(line);
	buf__free(&text);
	return err;
}
