// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/lib/hash.{c,h}: FNV-1a 64 against the published test vectors, and the id index through growth
 * with colliding and wrapping hashes, clear and free, checked against the keys the test stored itself. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "lib/hash.h"

/* ---- FNV-1a ---- */

static void test_fnv1a_vectors(void **state)
{
	/* FNV-1a 64 test vectors (Fowler, Noll, Vo: the reference test suite, and draft-eastlake-fnv). */
	assert_true(fnv1a_str("") == 0xcbf29ce484222325ull);
	assert_true(fnv1a_str("a") == 0xaf63dc4c8601ec8cull);
	assert_true(fnv1a_str("foobar") == 0x85944171f73967e8ull);
	assert_true(fnv1a(FNV1A_SEED, "", 0) == FNV1A_SEED);
}

static void test_fnv1a_chains(void **state)
{
	/* Hashing in pieces equals hashing the whole: callers chain fields. */
	assert_true(fnv1a(fnv1a(FNV1A_SEED, "foo", 3), "bar", 3) == fnv1a_str("foobar"));
	assert_true(fnv1a(FNV1A_SEED, "foobar", 6) == 0x85944171f73967e8ull);
	/* Bytes past a NUL count in fnv1a() and not in fnv1a_str(). */
	assert_true(fnv1a(FNV1A_SEED, "a\0b", 3) != fnv1a_str("a"));
}

/* ---- hash_fast ---- */

/* Registry-like keys (service, method, route, status joined by 0x1f) spread evenly over a table's low bits, and
 * keys that differ in one byte anywhere, or only in length (zero bytes past the end), hash apart. */
static void test_hash_fast_spread(void **state)
{
	enum { BITS = 12, N = 1 << 16 };
	static unsigned count[1 << BITS];
	char k[96];
	memset(count, 0, sizeof(count));
	for (unsigned i = 0; i < N; i++) {
		int n = snprintf(k, sizeof(k), "api\x1f%s\x1f/items/{id}/part%u\x1f%u", i & 1 ? "GET" : "POST", i >> 4,
				 200 + (i & 15));
		count[hash_fast(k, (size_t)n) & ((1 << BITS) - 1)]++;
	}
	unsigned max = 0;
	for (unsigned b = 0; b < 1 << BITS; b++)
		max = count[b] > max ? count[b] : max;
	/* 16 keys a bucket on average; a uniform hash's fullest of 4096 buckets holds ~33 (Poisson tail). */
	assert_true(max <= 40);
	const char *base = "service\x1fGET\x1f/api/v1/things/{id}\x1f" "200";
	size_t n = strlen(base);
	uint64_t h = hash_fast(base, n);
	assert_true(hash_fast(base, n) == h);
	for (size_t i = 0; i < n; i++) {
		memcpy(k, base, n);
		k[i] ^= 1;
		assert_true(hash_fast(k, n) != h);
	}
	memset(k, 0, sizeof(k));
	memcpy(k, "abc", 3);
	assert_true(hash_fast(k, 3) != hash_fast(k, 4) && hash_fast(k, 4) != hash_fast(k, 8));
	assert_true(hash_fast(k, 8) != hash_fast(k, 9));
	assert_true(hash_fast("", 0) != hash_fast(k, 1));
}

/* ---- id index ---- */

/* The owner's array: key i is stored as id i; the hash is chosen by the test to force collisions. */
struct owner {
	uint64_t key[4096];
	uint64_t (*hash)(uint64_t key);
	size_t hash_calls;
};

static uint64_t hash_mod4(uint64_t key)
{
	return key % 4;	/* four chains for every key */
}

static uint64_t hash_top(uint64_t key)
{
	return UINT64_MAX;	/* every key in the last slot: probes wrap to slot 0 */
}

static uint64_t hash_fnv(uint64_t key)
{
	return fnv1a(FNV1A_SEED, &key, sizeof(key));
}

static uint64_t owner_hash_of(const void *ctx, uint32_t id)
{
	struct owner *o = (struct owner *)ctx;
	o->hash_calls++;
	return o->hash(o->key[id]);
}

struct key_ref {
	const struct owner *o;
	uint64_t key;
};

static bool key_eq(const void *ctx, uint32_t id)
{
	const struct key_ref *k = ctx;
	return k->o->key[id] == k->key;
}

static int64_t find(const struct id_index *idx, const struct owner *o, uint64_t key)
{
	struct key_ref ref = { o, key };
	return id_index__find(idx, o->hash(key), key_eq, &ref);
}

/* Store keys 1000 + 7 * i as ids 0..n-1, checking after every insert that all earlier ones are still found. */
static void fill(struct id_index *idx, struct owner *o, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t key = 1000 + 7 * i;
		assert_int_equal(find(idx, o, key), -1);
		assert_int_equal(id_index__reserve(idx, i + 1, owner_hash_of, o), 0);
		o->key[i] = key;
		id_index__insert(idx, o->hash(key), (uint32_t)i);
		/* Load factor at most 1/2, capacity a power of two. */
		assert_true(idx->cap >= 2 * (i + 1));
		assert_int_equal(idx->cap & (idx->cap - 1), 0);
		if (i % 97 == 0 || i == n - 1)
			for (size_t j = 0; j <= i; j++)
				assert_int_equal(find(idx, o, 1000 + 7 * j), (int64_t)j);
	}
}

static void check_growth(uint64_t (*hash)(uint64_t))
{
	static struct owner o;
	struct id_index idx = {0};
	memset(&o, 0, sizeof(o));
	o.hash = hash;

	assert_int_equal(find(&idx, &o, 1000), -1);	/* zero-initialised is empty */
	fill(&idx, &o, 1500);
	assert_true(o.hash_calls > 0);	/* growth rehashed the stored ids through hash_of */
	assert_int_equal(find(&idx, &o, 1001), -1);	/* absent keys, colliding with present ones */
	assert_int_equal(find(&idx, &o, 999), -1);
	id_index__free(&idx);
}

static void test_index_growth_colliding(void **state)
{
	check_growth(hash_mod4);
}

static void test_index_growth_wrapping(void **state)
{
	check_growth(hash_top);
}

static void test_index_growth_spread(void **state)
{
	check_growth(hash_fnv);
}

static void test_index_reserve_in_advance(void **state)
{
	static struct owner o;
	struct id_index idx = {0};
	memset(&o, 0, sizeof(o));
	o.hash = hash_mod4;

	assert_int_equal(id_index__reserve(&idx, 1000, owner_hash_of, &o), 0);
	size_t cap = idx.cap;
	assert_true(cap >= 2000);
	assert_int_equal(o.hash_calls, 0);	/* nothing stored yet: nothing to rehash */
	for (size_t i = 0; i < 1000; i++) {
		o.key[i] = 1000 + 7 * i;
		assert_int_equal(id_index__reserve(&idx, i + 1, owner_hash_of, &o), 0);
		id_index__insert(&idx, o.hash(o.key[i]), (uint32_t)i);
	}
	assert_int_equal(idx.cap, cap);	/* room reserved once is not reallocated */
	assert_int_equal(o.hash_calls, 0);
	for (size_t i = 0; i < 1000; i++)
		assert_int_equal(find(&idx, &o, o.key[i]), (int64_t)i);
	id_index__free(&idx);
}

static void test_index_reserve_too_many(void **state)
{
	static struct owner o;
	struct id_index idx = {0};
	memset(&o, 0, sizeof(o));
	o.hash = hash_fnv;
	fill(&idx, &o, 10);
	uint32_t *slot = idx.slot;
	size_t cap = idx.cap;

	/* Ids are stored as id + 1 in 32 bits: more than UINT32_MAX ids cannot be indexed. */
	assert_int_equal(id_index__reserve(&idx, (size_t)UINT32_MAX + 1, owner_hash_of, &o), -ENOMEM);
	assert_int_equal(id_index__reserve(&idx, SIZE_MAX, owner_hash_of, &o), -ENOMEM);
	assert_ptr_equal(idx.slot, slot);	/* untouched on failure */
	assert_int_equal(idx.cap, cap);
	for (size_t i = 0; i < 10; i++)
		assert_int_equal(find(&idx, &o, o.key[i]), (int64_t)i);
	id_index__free(&idx);
}

static void test_index_clear(void **state)
{
	static struct owner o;
	struct id_index idx = {0};
	memset(&o, 0, sizeof(o));
	o.hash = hash_mod4;
	fill(&idx, &o, 300);
	size_t cap = idx.cap;
	uint32_t *slot = idx.slot;

	id_index__clear(&idx);
	assert_int_equal(idx.cap, cap);	/* the memory is kept */
	assert_ptr_equal(idx.slot, slot);
	for (size_t i = 0; i < 300; i++)
		assert_int_equal(find(&idx, &o, o.key[i]), -1);

	/* Reusable: the same keys stored again under other ids. */
	for (size_t i = 0; i < 300; i++) {
		assert_int_equal(id_index__reserve(&idx, i + 1, owner_hash_of, &o), 0);
		o.key[i] = 5000 + 3 * i;
		id_index__insert(&idx, o.hash(o.key[i]), (uint32_t)i);
	}
	for (size_t i = 0; i < 300; i++) {
		assert_int_equal(find(&idx, &o, 5000 + 3 * i), (int64_t)i);
		assert_int_equal(find(&idx, &o, 1000 + 7 * i), -1);	/* the old keys (all below 5000) are gone */
	}

	struct id_index empty = {0};
	id_index__clear(&empty);	/* an index that never grew */
	assert_null(empty.slot);
	assert_int_equal(empty.cap, 0);
	id_index__free(&idx);
}

static void test_index_free(void **state)
{
	static struct owner o;
	struct id_index idx = {0};
	memset(&o, 0, sizeof(o));
	o.hash = hash_fnv;
	fill(&idx, &o, 100);

	id_index__free(&idx);
	assert_null(idx.slot);
	assert_int_equal(idx.cap, 0);
	assert_int_equal(find(&idx, &o, o.key[0]), -1);	/* a freed index is an empty one */
	id_index__free(&idx);	/* twice is harmless */

	fill(&idx, &o, 100);	/* and it grows again from nothing */
	id_index__free(&idx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fnv1a_vectors),
		cmocka_unit_test(test_fnv1a_chains),
		cmocka_unit_test(test_hash_fast_spread),
		cmocka_unit_test(test_index_growth_colliding),
		cmocka_unit_test(test_index_growth_wrapping),
		cmocka_unit_test(test_index_growth_spread),
		cmocka_unit_test(test_index_reserve_in_advance),
		cmocka_unit_test(test_index_reserve_too_many),
		cmocka_unit_test(test_index_clear),
		cmocka_unit_test(test_index_free),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
