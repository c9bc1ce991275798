// SPDX-License-Identifier: BSD-2-Clause
/* pprof encoding with protobuf-c: the messages are built in a few flat arrays that point into the profile's own
 * strings, packed once, then gzip-compressed. One step per part of the message: the string table, the mappings,
 * functions and locations (one each per frame), the samples, then the header fields and the packing. */
#include "profile/pprof.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"
#include "profile.pb-c.h"

typedef Perftools__Profiles__ValueType ValueType;
typedef Perftools__Profiles__Sample Sample;
typedef Perftools__Profiles__Label Label;
typedef Perftools__Profiles__Mapping Mapping;
typedef Perftools__Profiles__Location Location;
typedef Perftools__Profiles__Line Line;
typedef Perftools__Profiles__Function Function;

/* The string table: strings in order of first use, each once. */
struct strtab {
	const char **s;
	size_t n, cap;
	struct id_index idx;
	int oom;
};

static uint64_t strtab_hash_of(const void *ctx, uint32_t id)
{
	const struct strtab *t = ctx;
	return fnv1a_str(t->s[id]);
}

struct strtab_key {
	const struct strtab *t;
	const char *s;
};

static bool strtab_eq(const void *ctx, uint32_t id)
{
	const struct strtab_key *k = ctx;
	return !strcmp(k->t->s[id], k->s);
}

/* The index of s, added when new. On allocation failure it latches oom and returns 0. */
static int64_t str_index(struct strtab *t, const char *s)
{
	if (t->oom)
		return 0;
	uint64_t h = fnv1a_str(s);
	int64_t found = id_index__find(&t->idx, h, strtab_eq, &(struct strtab_key){ t, s });
	if (found >= 0)
		return found;
	if (id_index__reserve(&t->idx, t->n + 1, strtab_hash_of, t))
		goto oom;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		const char **p = realloc(t->s, cap * sizeof(*p));
		if (!p)
			goto oom;
		t->s = p;
		t->cap = cap;
	}
	t->s[t->n] = s;
	id_index__insert(&t->idx, h, (uint32_t)t->n);
	return (int64_t)t->n++;
oom:
	t->oom = 1;
	return 0;
}

static void strtab_free(struct strtab *t)
{
	free(t->s);
	id_index__free(&t->idx);
}

/* One encoding: the message's parts, in arrays sized from the profile before they are filled. */
struct pprof_enc {
	const struct profile *p;
	size_t nsample, nframe, depth_total;
	struct strtab st;
	ValueType vt[3];	/* sample types [samples/count, KIND/nanoseconds], then the period type */
	ValueType *vtp[2];
	int64_t key_service, key_thread;
	int64_t comment;	/* string index of the [other] note, 0 for none */
	char dropped_note[96];

	uint64_t *map_of_str;	/* string index of a module's file name -> mapping id (0: none yet) */
	Mapping *maps, **mapp;
	size_t nmap;
	Function *funcs, **funcp;
	Location *locs, **locp;
	Line *lines, **linep;
	Sample *samples, **samplep;
	Label *labels, **labelp;
	size_t nlabel;
	int64_t *values;
	uint64_t *loc_ids;
};

/* Every string the message uses, "" at index 0 as the format requires; 0 or -ENOMEM. */
static int encode_strings(struct pprof_enc *enc)
{
	const struct profile *p = enc->p;
	struct strtab *st = &enc->st;
	const char *kind_name = profile__kind(p) == PROFILE_CPU ? "cpu" : "off_cpu";

	str_index(st, "");
	enc->vt[0].type = str_index(st, "samples");
	enc->vt[0].unit = str_index(st, "count");
	enc->vt[1].type = str_index(st, kind_name);
	enc->vt[1].unit = str_index(st, "nanoseconds");
	enc->vt[2] = enc->vt[1];	/* period_type: what one period measures */
	enc->key_service = str_index(st, "service_name");
	enc->key_thread = str_index(st, "thread_name");
	for (size_t i = 0; i < enc->nframe; i++) {
		str_index(st, profile__frame_name(p, (uint32_t)i));
		const char *mod = profile__frame_module(p, (uint32_t)i);
		if (mod)
			str_index(st, mod);
		const char *file = profile__frame_file(p, (uint32_t)i, NULL);
		if (file)
			str_index(st, file);
	}
	for (size_t i = 0; i < enc->nsample; i++) {
		struct profile_sample s;
		profile__sample(p, i, &s);
		if (*s.service)
			str_index(st, s.service);
		if (*s.thread)
			str_index(st, s.thread);
		enc->depth_total += s.depth;
	}
	if (profile__dropped(p)) {
		snprintf(enc->dropped_note, sizeof(enc->dropped_note), "%llu samples past the stack limit are in [other]",
			 (unsigned long long)profile__dropped(p));
		enc->comment = str_index(st, enc->dropped_note);
	}
	return st->oom ? -ENOMEM : 0;
}

static int encode_alloc(struct pprof_enc *enc)
{
	size_t nframe = enc->nframe ? enc->nframe : 1, nsample = enc->nsample;

	enc->map_of_str = calloc(enc->st.n, sizeof(*enc->map_of_str));
	enc->maps = calloc(nframe, sizeof(*enc->maps));
	enc->mapp = calloc(nframe, sizeof(*enc->mapp));
	enc->funcs = calloc(nframe, sizeof(*enc->funcs));
	enc->funcp = calloc(nframe, sizeof(*enc->funcp));
	enc->locs = calloc(nframe, sizeof(*enc->locs));
	enc->locp = calloc(nframe, sizeof(*enc->locp));
	enc->lines = calloc(nframe, sizeof(*enc->lines));
	enc->linep = calloc(nframe, sizeof(*enc->linep));
	enc->samples = calloc(nsample ? nsample : 1, sizeof(*enc->samples));
	enc->samplep = calloc(nsample ? nsample : 1, sizeof(*enc->samplep));
	enc->labels = calloc(nsample ? 2 * nsample : 1, sizeof(*enc->labels));
	enc->labelp = calloc(nsample ? 2 * nsample : 1, sizeof(*enc->labelp));
	enc->values = calloc(nsample ? 2 * nsample : 1, sizeof(*enc->values));
	enc->loc_ids = calloc(enc->depth_total ? enc->depth_total : 1, sizeof(*enc->loc_ids));
	if (!enc->map_of_str || !enc->maps || !enc->mapp || !enc->funcs || !enc->funcp || !enc->locs || !enc->locp ||
	    !enc->lines || !enc->linep || !enc->samples || !enc->samplep || !enc->labels || !enc->labelp ||
	    !enc->values || !enc->loc_ids)
		return -ENOMEM;
	return 0;
}

static void encode_free(struct pprof_enc *enc)
{
	free(enc->loc_ids);
	free(enc->values);
	free(enc->labelp);
	free(enc->labels);
	free(enc->samplep);
	free(enc->samples);
	free(enc->linep);
	free(enc->lines);
	free(enc->locp);
	free(enc->locs);
	free(enc->funcp);
	free(enc->funcs);
	free(enc->mapp);
	free(enc->maps);
	free(enc->map_of_str);
	strtab_free(&enc->st);
}

/* The mapping id of module file name mod (NULL: 0, no mapping): one mapping per name, in order of first use. */
static uint64_t encode_mapping(struct pprof_enc *enc, const char *mod)
{
	if (!mod)
		return 0;
	int64_t fi = str_index(&enc->st, mod);
	if (!enc->map_of_str[fi]) {
		Mapping *m = &enc->maps[enc->nmap];
		perftools__profiles__mapping__init(m);
		m->id = enc->nmap + 1;
		m->filename = fi;
		m->has_functions = 1;
		enc->mapp[enc->nmap++] = m;
		enc->map_of_str[fi] = m->id;
	}
	return enc->map_of_str[fi];
}

/* Frame id i is function i + 1 (ids must not be 0), named by the frame's name. */
static void encode_functions(struct pprof_enc *enc)
{
	for (size_t i = 0; i < enc->nframe; i++) {
		Function *f = &enc->funcs[i];
		perftools__profiles__function__init(f);
		f->id = i + 1;
		f->name = f->system_name = str_index(&enc->st, profile__frame_name(enc->p, (uint32_t)i));
		uint32_t line = 0;
		const char *file = profile__frame_file(enc->p, (uint32_t)i, &line);
		if (file) { /* interpreted code: its source file (a basename) and first line */
			f->filename = str_index(&enc->st, file);
			f->start_line = line;
		}
		enc->funcp[i] = f;
	}
}

/* Frame id i is location i + 1: one line calling function i + 1, in the mapping of the frame's module. */
static void encode_locations(struct pprof_enc *enc)
{
	for (size_t i = 0; i < enc->nframe; i++) {
		Line *l = &enc->lines[i];
		perftools__profiles__line__init(l);
		l->function_id = enc->funcs[i].id;
		l->line = enc->funcs[i].start_line;
		enc->linep[i] = l;

		Location *loc = &enc->locs[i];
		perftools__profiles__location__init(loc);
		loc->id = i + 1;
		loc->mapping_id = encode_mapping(enc, profile__frame_module(enc->p, (uint32_t)i));
		loc->n_line = 1;
		loc->line = &enc->linep[i];
		enc->locp[i] = loc;
	}
}

/* The string labels service_name and thread_name of a sample, each left out when empty. */
static void encode_labels(struct pprof_enc *enc, Sample *smp, const struct profile_sample *s)
{
	const char *val[2] = { s->service, s->thread };
	int64_t key[2] = { enc->key_service, enc->key_thread };

	smp->label = &enc->labelp[enc->nlabel];
	for (int k = 0; k < 2; k++) {
		if (!*val[k])
			continue;
		Label *lb = &enc->labels[enc->nlabel];
		perftools__profiles__label__init(lb);
		lb->key = key[k];
		lb->str = str_index(&enc->st, val[k]);
		enc->labelp[enc->nlabel++] = lb;
		smp->n_label++;
	}
}

static void encode_samples(struct pprof_enc *enc)
{
	uint64_t *ids = enc->loc_ids;
	for (size_t i = 0; i < enc->nsample; i++) {
		struct profile_sample s;
		profile__sample(enc->p, i, &s);
		Sample *smp = &enc->samples[i];
		perftools__profiles__sample__init(smp);
		for (uint32_t d = 0; d < s.depth; d++)	/* the store keeps frames leaf first, as pprof wants */
			ids[d] = (uint64_t)s.frames[d] + 1;
		smp->location_id = ids;
		smp->n_location_id = s.depth;
		ids += s.depth;
		smp->value = &enc->values[2 * i];
		smp->n_value = 2;
		smp->value[0] = (int64_t)s.count;
		smp->value[1] = (int64_t)s.ns;
		encode_labels(enc, smp, &s);
		enc->samplep[i] = smp;
	}
}

/* The Profile message around the parts, packed and gzip-compressed into out: 0, -ENOMEM or -EIO. */
static int encode_finish(struct pprof_enc *enc, struct buf *out)
{
	const struct profile *p = enc->p;
	Perftools__Profiles__Profile prof = PERFTOOLS__PROFILES__PROFILE__INIT;
	int err;

	prof.n_sample_type = 2;
	prof.sample_type = enc->vtp;
	prof.n_sample = enc->nsample;
	prof.sample = enc->samplep;
	prof.n_mapping = enc->nmap;
	prof.mapping = enc->mapp;
	prof.n_location = enc->nframe;
	prof.location = enc->locp;
	prof.n_function = enc->nframe;
	prof.function = enc->funcp;
	prof.n_string_table = enc->st.n;
	prof.string_table = (char **)enc->st.s;	/* only read by the packer */
	prof.time_nanos = (int64_t)profile__start_ns(p);
	prof.duration_nanos = (int64_t)profile__duration_ns(p);
	prof.period_type = &enc->vt[2];
	prof.period = (int64_t)profile__period_ns(p);
	prof.default_sample_type = enc->vt[1].type;
	if (enc->comment) {
		prof.n_comment = 1;
		prof.comment = &enc->comment;
	}

	size_t len = perftools__profiles__profile__get_packed_size(&prof);
	uint8_t *raw = malloc(len ? len : 1);
	if (!raw)
		return -ENOMEM;
	if (perftools__profiles__profile__pack(&prof, raw) != len) {
		err = -EIO;
		goto out;
	}
	err = gzip_buf((const char *)raw, len, out);
out:
	free(raw);
	return err;
}

int pprof_encode(const struct profile *p, struct buf *out)
{
	if (!p || !out)
		return -EINVAL;

	struct pprof_enc enc = {
		.p = p,
		.nsample = profile__sample_count(p),
		.nframe = profile__frame_count(p),
		.vt = { PERFTOOLS__PROFILES__VALUE_TYPE__INIT, PERFTOOLS__PROFILES__VALUE_TYPE__INIT,
			PERFTOOLS__PROFILES__VALUE_TYPE__INIT },
	};
	enc.vtp[0] = &enc.vt[0];
	enc.vtp[1] = &enc.vt[1];
	int err = encode_strings(&enc);
	if (err)
		goto out;
	err = encode_alloc(&enc);
	if (err)
		goto out;
	encode_functions(&enc);
	encode_locations(&enc);
	encode_samples(&enc);
	err = encode_finish(&enc, out);
out:
	encode_free(&enc);
	return err;
}
