/* SPDX-License-Identifier: BSD-2-Clause */
/* A service's bounded set of label values (its route templates, its SQL fingerprints): a value becomes a label
 * once admitted, and at most a budget of them are; what comes later collapses into the caller's "_other". A leaf:
 * the payload rows use it, it knows nothing of them. */
#ifndef LOUPE_LABELSET_H
#define LOUPE_LABELSET_H
#include <stdbool.h>

#include "lib/hash.h"
#include "parsers/route.h"

#define LABEL_SET_MAX 512		   /* values a set can hold: above the largest budget allowed (500) */
#define LABEL_VALUE_MAX (ROUTE_MAX_LEN + 1) /* a route template or a fingerprint id, with its NUL */

/* Zero-initialised is empty; storage comes at the first lookup and stays put (values are stable pointers). */
struct label_set {
	char (*value)[LABEL_VALUE_MAX];
	unsigned n;
	struct id_index idx;
};

/* The admitted copy of key, or NULL when it is not admitted (or out of memory: *oom says which). */
const char *label_set__find(struct label_set *ls, const char *key, bool *oom);
/* Admit key (budget permitting): the admitted copy (*added when it is new), or NULL past the budget or out of
 * memory. */
const char *label_set__admit(struct label_set *ls, const char *key, unsigned budget, bool *added);
void label_set__free(struct label_set *ls);

#endif
