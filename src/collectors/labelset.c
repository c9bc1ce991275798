// SPDX-License-Identifier: BSD-2-Clause
/* Bounded label sets of the payload rows (src/collectors/labelset.h), on the shared id index. */
#include "collectors/labelset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct probe {
	const struct label_set *ls;
	const char *key;
};

static bool value_is(const void *ctx, uint32_t id)
{
	const struct probe *pr = ctx;
	return !strcmp(pr->ls->value[id], pr->key);
}

static uint64_t value_hash(const void *ctx, uint32_t id)
{
	const struct label_set *ls = ctx;
	return hash_fast_str(ls->value[id]);
}

/* Storage for LABEL_SET_MAX values and their index, at first use: 0 or -ENOMEM. */
static int reserve(struct label_set *ls)
{
	if (ls->value)
		return 0;
	if (id_index__reserve(&ls->idx, LABEL_SET_MAX, value_hash, ls))
		return -1;
	if (!(ls->value = calloc(LABEL_SET_MAX, sizeof(*ls->value)))) {
		id_index__free(&ls->idx);
		return -1;
	}
	return 0;
}

const char *label_set__find(struct label_set *ls, const char *key, bool *oom)
{
	*oom = reserve(ls) != 0;
	if (*oom)
		return NULL;
	struct probe pr = {ls, key};
	int64_t id = id_index__find(&ls->idx, hash_fast_str(key), value_is, &pr);
	return id < 0 ? NULL : ls->value[id];
}

const char *label_set__admit(struct label_set *ls, const char *key, unsigned budget, bool *added)
{
	bool oom;
	const char *found = label_set__find(ls, key, &oom);
	*added = false;
	if (found || oom || ls->n >= budget || ls->n >= LABEL_SET_MAX)
		return found;
	uint32_t id = ls->n++;
	snprintf(ls->value[id], LABEL_VALUE_MAX, "%s", key);
	id_index__insert(&ls->idx, hash_fast_str(ls->value[id]), id);
	*added = true;
	return ls->value[id];
}

void label_set__free(struct label_set *ls)
{
	free(ls->value);
	id_index__free(&ls->idx);
	*ls = (struct label_set){0};
}
