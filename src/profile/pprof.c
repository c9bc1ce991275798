/* pprof encoding with protobuf-c: the messages are built in a few flat arrays that point into the profile's own
 * strings, packed once, then gzip-compressed. */
#include "profile/pprof.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profile.pb-c.h"

/* The string table: strings in order of first use, deduplicated by an open-addressing index. */
struct strtab {
	const char **s;
	size_t n, cap;
	uint32_t *slot;		/* index + 1, 0 empty */
	size_t slot_cap;	/* a power of two */
	int oom;
};

static uint64_t str_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;	/* FNV-1a */
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

static int strtab_rehash(struct strtab *t, size_t cap)
{
	uint32_t *slot = calloc(cap, sizeof(*slot));
	if (!slot)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		size_t j = str_hash(t->s[i]) & (cap - 1);
		while (slot[j])
			j = (j + 1) & (cap - 1);
		slot[j] = (uint32_t)i + 1;
	}
	free(t->slot);
	t->slot = slot;
	t->slot_cap = cap;
	return 0;
}

/* The index of s, added when new. On allocation failure it latches oom and returns 0. */
static int64_t str_index(struct strtab *t, const char *s)
{
	if (t->oom)
		return 0;
	if ((t->n + 1) * 2 > t->slot_cap && strtab_rehash(t, t->slot_cap ? t->slot_cap * 2 : 64))
		goto oom;
	uint64_t h = str_hash(s);
	size_t j = h & (t->slot_cap - 1);
	for (; t->slot[j]; j = (j + 1) & (t->slot_cap - 1))
		if (!strcmp(t->s[t->slot[j] - 1], s))
			return t->slot[j] - 1;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		const char **p = realloc(t->s, cap * sizeof(*p));
		if (!p)
			goto oom;
		t->s = p;
		t->cap = cap;
	}
	t->s[t->n] = s;
	t->slot[j] = (uint32_t)t->n + 1;
	return (int64_t)t->n++;
oom:
	t->oom = 1;
	return 0;
}

static void strtab_free(struct strtab *t)
{
	free(t->s);
	free(t->slot);
}

int pprof_encode(const struct profile *p, struct buf *out)
{
	typedef Perftools__Profiles__ValueType ValueType;
	typedef Perftools__Profiles__Sample Sample;
	typedef Perftools__Profiles__Label Label;
	typedef Perftools__Profiles__Mapping Mapping;
	typedef Perftools__Profiles__Location Location;
	typedef Perftools__Profiles__Line Line;
	typedef Perftools__Profiles__Function Function;

	if (!p || !out)
		return -EINVAL;

	struct strtab st = {0};
	const char *kind_name = profile__kind(p) == PROFILE_CPU ? "cpu" : "off_cpu";
	size_t nsample = profile__sample_count(p), nframe = profile__frame_count(p), depth_total = 0;
	ValueType vt[3] = { PERFTOOLS__PROFILES__VALUE_TYPE__INIT, PERFTOOLS__PROFILES__VALUE_TYPE__INIT,
			    PERFTOOLS__PROFILES__VALUE_TYPE__INIT };
	ValueType *vtp[2] = { &vt[0], &vt[1] };
	Perftools__Profiles__Profile prof = PERFTOOLS__PROFILES__PROFILE__INIT;
	Sample *samples = NULL, **samplep = NULL;
	Label *labels = NULL, **labelp = NULL;
	Location *locs = NULL, **locp = NULL;
	Line *lines = NULL, **linep = NULL;
	Function *funcs = NULL, **funcp = NULL;
	Mapping *maps = NULL, **mapp = NULL;
	uint64_t *loc_ids = NULL, *map_of_str = NULL;
	int64_t *values = NULL, comment = 0;
	uint8_t *raw = NULL;
	size_t nlabel = 0, nmap = 0;
	char dropped_note[96];
	int err = -ENOMEM;

	/* The string table first, "" at index 0 as the format requires. */
	str_index(&st, "");
	vt[0].type = str_index(&st, "samples");
	vt[0].unit = str_index(&st, "count");
	vt[1].type = str_index(&st, kind_name);
	vt[1].unit = str_index(&st, "nanoseconds");
	vt[2] = vt[1];	/* period_type: what one period measures */
	int64_t key_service = str_index(&st, "service_name");
	int64_t key_thread = str_index(&st, "thread_name");
	for (size_t i = 0; i < nframe; i++) {
		str_index(&st, profile__frame_name(p, (uint32_t)i));
		const char *mod = profile__frame_module(p, (uint32_t)i);
		if (mod)
			str_index(&st, mod);
	}
	for (size_t i = 0; i < nsample; i++) {
		struct profile_sample s;
		profile__sample(p, i, &s);
		if (*s.service)
			str_index(&st, s.service);
		if (*s.thread)
			str_index(&st, s.thread);
		depth_total += s.depth;
	}
	if (profile__dropped(p)) {
		snprintf(dropped_note, sizeof(dropped_note), "%llu samples past the stack limit are in [other]",
			 (unsigned long long)profile__dropped(p));
		comment = str_index(&st, dropped_note);
	}
	if (st.oom)
		goto out;

	/* Mappings: one per module file name, found by the name's string index. */
	map_of_str = calloc(st.n, sizeof(*map_of_str));
	maps = calloc(nframe ? nframe : 1, sizeof(*maps));
	mapp = calloc(nframe ? nframe : 1, sizeof(*mapp));
	/* Functions and locations: frame id i is function and location i + 1 (ids must not be 0). */
	funcs = calloc(nframe ? nframe : 1, sizeof(*funcs));
	funcp = calloc(nframe ? nframe : 1, sizeof(*funcp));
	locs = calloc(nframe ? nframe : 1, sizeof(*locs));
	locp = calloc(nframe ? nframe : 1, sizeof(*locp));
	lines = calloc(nframe ? nframe : 1, sizeof(*lines));
	linep = calloc(nframe ? nframe : 1, sizeof(*linep));
	samples = calloc(nsample ? nsample : 1, sizeof(*samples));
	samplep = calloc(nsample ? nsample : 1, sizeof(*samplep));
	labels = calloc(nsample ? 2 * nsample : 1, sizeof(*labels));
	labelp = calloc(nsample ? 2 * nsample : 1, sizeof(*labelp));
	values = calloc(nsample ? 2 * nsample : 1, sizeof(*values));
	loc_ids = calloc(depth_total ? depth_total : 1, sizeof(*loc_ids));
	if (!map_of_str || !maps || !mapp || !funcs || !funcp || !locs || !locp || !lines || !linep || !samples ||
	    !samplep || !labels || !labelp || !values || !loc_ids)
		goto out;

	for (size_t i = 0; i < nframe; i++) {
		const char *name = profile__frame_name(p, (uint32_t)i);
		const char *mod = profile__frame_module(p, (uint32_t)i);
		uint64_t mapping_id = 0;
		if (mod) {
			int64_t fi = str_index(&st, mod);
			if (!map_of_str[fi]) {
				Mapping *m = &maps[nmap];
				perftools__profiles__mapping__init(m);
				m->id = nmap + 1;
				m->filename = fi;
				m->has_functions = 1;
				mapp[nmap++] = m;
				map_of_str[fi] = m->id;
			}
			mapping_id = map_of_str[fi];
		}
		Function *f = &funcs[i];
		perftools__profiles__function__init(f);
		f->id = i + 1;
		f->name = f->system_name = str_index(&st, name);
		funcp[i] = f;

		Line *l = &lines[i];
		perftools__profiles__line__init(l);
		l->function_id = f->id;
		linep[i] = l;

		Location *loc = &locs[i];
		perftools__profiles__location__init(loc);
		loc->id = i + 1;
		loc->mapping_id = mapping_id;
		loc->n_line = 1;
		loc->line = &linep[i];
		locp[i] = loc;
	}

	uint64_t *ids = loc_ids;
	for (size_t i = 0; i < nsample; i++) {
		struct profile_sample s;
		profile__sample(p, i, &s);
		Sample *smp = &samples[i];
		perftools__profiles__sample__init(smp);
		for (uint32_t d = 0; d < s.depth; d++)	/* the store keeps frames leaf first, as pprof wants */
			ids[d] = (uint64_t)s.frames[d] + 1;
		smp->location_id = ids;
		smp->n_location_id = s.depth;
		ids += s.depth;
		smp->value = &values[2 * i];
		smp->n_value = 2;
		smp->value[0] = (int64_t)s.count;
		smp->value[1] = (int64_t)s.ns;
		smp->label = &labelp[nlabel];
		const char *val[2] = { s.service, s.thread };
		int64_t key[2] = { key_service, key_thread };
		for (int k = 0; k < 2; k++) {
			if (!*val[k])
				continue;
			Label *lb = &labels[nlabel];
			perftools__profiles__label__init(lb);
			lb->key = key[k];
			lb->str = str_index(&st, val[k]);
			labelp[nlabel++] = lb;
			smp->n_label++;
		}
		samplep[i] = smp;
	}

	prof.n_sample_type = 2;
	prof.sample_type = vtp;
	prof.n_sample = nsample;
	prof.sample = samplep;
	prof.n_mapping = nmap;
	prof.mapping = mapp;
	prof.n_location = nframe;
	prof.location = locp;
	prof.n_function = nframe;
	prof.function = funcp;
	prof.n_string_table = st.n;
	prof.string_table = (char **)st.s;	/* only read by the packer */
	prof.time_nanos = (int64_t)profile__start_ns(p);
	prof.duration_nanos = (int64_t)profile__duration_ns(p);
	prof.period_type = &vt[2];
	prof.period = (int64_t)profile__period_ns(p);
	prof.default_sample_type = vt[1].type;
	if (comment) {
		prof.n_comment = 1;
		prof.comment = &comment;
	}

	size_t len = perftools__profiles__profile__get_packed_size(&prof);
	raw = malloc(len ? len : 1);
	if (!raw)
		goto out;
	if (perftools__profiles__profile__pack(&prof, raw) != len) {
		err = -EIO;
		goto out;
	}
	err = gzip_buf((const char *)raw, len, out);
out:
	free(raw);
	free(loc_ids);
	free(values);
	free(labelp);
	free(labels);
	free(samplep);
	free(samples);
	free(linep);
	free(lines);
	free(locp);
	free(locs);
	free(funcp);
	free(funcs);
	free(mapp);
	free(maps);
	free(map_of_str);
	strtab_free(&st);
	return err;
}
