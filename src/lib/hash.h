/* SPDX-License-Identifier: BSD-2-Clause */
/* Hashing for every userspace table: FNV-1a, and an open-addressing index of ids whose entries live in the
 * owner's own array (the owner hashes and compares them; the index only finds them). */
#ifndef LOUPE_HASH_H
#define LOUPE_HASH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* FNV-1a, 64 bits (Fowler, Noll, Vo: offset basis and prime of the 64-bit variant). Chain calls to hash several
 * fields: h = fnv1a(fnv1a(FNV1A_SEED, &a, sizeof(a)), &b, sizeof(b)). */
#define FNV1A_SEED 0xcbf29ce484222325ull
#define FNV1A_PRIME 0x100000001b3ull

static inline uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= FNV1A_PRIME;
	}
	return h;
}

static inline uint64_t fnv1a_str(const char *s)
{
	return fnv1a(FNV1A_SEED, s, strlen(s));
}

/* n bytes, 8 at a time: for tables whose keys are long strings looked up per event (the registry's series keys,
 * ~60 bytes, where FNV-1a's byte loop was 5% of loupe's CPU under the API load). Not FNV-1a's values; like it,
 * not meant to resist chosen keys (the tables' inputs are bounded by budgets). */
static inline uint64_t hash_fast(const void *data, size_t n)
{
	const unsigned char *p = data;
	uint64_t h = FNV1A_SEED ^ (n * 0x9e3779b97f4a7c15ull), w;
	for (; n >= 8; p += 8, n -= 8) {
		memcpy(&w, p, 8);
		h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
		h ^= h >> 31;
	}
	w = 0;
	memcpy(&w, p, n); /* little endian: the last bytes in the low ones */
	h = (h ^ w) * 0x94d049bb133111ebull;
	h ^= h >> 32;
	h *= 0xbf58476d1ce4e5b9ull;
	return h ^ h >> 29;
}

static inline uint64_t hash_fast_str(const char *s)
{
	return hash_fast(s, strlen(s));
}

/* Linear probing at a load factor of at most 1/2; slot values are id + 1, 0 is empty. Zero-initialised is empty. */
struct id_index {
	uint32_t *slot;
	size_t cap; /* a power of two, or 0 */
};

/* The id among those stored under hash h that eq(ctx, id) accepts, or -1. eq is called only for candidates; when
 * the caller passes a static function the compiler inlines it. */
static inline int64_t id_index__find(const struct id_index *idx, uint64_t h, bool (*eq)(const void *ctx, uint32_t id),
				     const void *ctx)
{
	if (!idx->cap)
		return -1;
	for (size_t j = h & (idx->cap - 1); idx->slot[j]; j = (j + 1) & (idx->cap - 1))
		if (eq(ctx, idx->slot[j] - 1))
			return idx->slot[j] - 1;
	return -1;
}

/* Make room for n ids in all (grow and rehash; hash_of(ctx, id) gives a stored id's hash): 0 or -ENOMEM, the index
 * untouched then. Ids are below 2^32 - 1 (n at most UINT32_MAX). */
int id_index__reserve(struct id_index *idx, size_t n, uint64_t (*hash_of)(const void *ctx, uint32_t id),
		      const void *ctx);

/* Store id under hash h; id_index__reserve() must have made room for it. */
static inline void id_index__insert(struct id_index *idx, uint64_t h, uint32_t id)
{
	size_t j = h & (idx->cap - 1);
	while (idx->slot[j])
		j = (j + 1) & (idx->cap - 1);
	idx->slot[j] = id + 1;
}

/* Forget every id (keeps the memory). */
void id_index__clear(struct id_index *idx);
void id_index__free(struct id_index *idx);

#endif
