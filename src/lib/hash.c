// SPDX-License-Identifier: BSD-2-Clause
/* The id index's growth: the part of src/lib/hash.h that allocates. */
#include "lib/hash.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

int id_index__reserve(struct id_index *idx, size_t n, uint64_t (*hash_of)(const void *ctx, uint32_t id),
		      const void *ctx)
{
	/* Slots hold id + 1 in 32 bits, and n * 2 must not wrap: past that no table could be indexed. */
	if (n > UINT32_MAX || n > SIZE_MAX / 4)
		return -ENOMEM;
	if (n * 2 <= idx->cap)
		return 0;
	size_t cap = idx->cap ? idx->cap * 2 : 64;
	while (cap < n * 2)
		cap *= 2;
	struct id_index grown = {.slot = calloc(cap, sizeof(*grown.slot)), .cap = cap};
	if (!grown.slot)
		return -ENOMEM;
	for (size_t i = 0; i < idx->cap; i++)
		if (idx->slot[i])
			id_index__insert(&grown, hash_of(ctx, idx->slot[i] - 1), idx->slot[i] - 1);
	free(idx->slot);
	*idx = grown;
	return 0;
}

void id_index__clear(struct id_index *idx)
{
	if (idx->cap)
		memset(idx->slot, 0, idx->cap * sizeof(*idx->slot));
}

void id_index__free(struct id_index *idx)
{
	free(idx->slot);
	idx->slot = NULL;
	idx->cap = 0;
}
