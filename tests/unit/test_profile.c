// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/profile/profile.c: samples aggregate by (service, thread, stack), limits keep totals exact, and
 * folded output is the exact text flame graph tools read. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "profile/profile.h"
#include "profile_stacks.h"

/* The sample of (svc, thr) whose stack, root first, is stack; NULL when absent. */
static const struct profile_sample *find(const struct profile *p, const char *svc, const char *thr,
					 const char *stack)
{
	static struct profile_sample s;
	for (size_t i = 0; i < profile__sample_count(p); i++) {
		char text[1024] = "";
		assert_int_equal(profile__sample(p, i, &s), 0);
		for (uint32_t d = s.depth; d-- > 0;) {
			strcat(text, profile__frame_name(p, s.frames[d]));
			if (d)
				strcat(text, ";");
		}
		if (!strcmp(s.service, svc) && !strcmp(s.thread, thr) && !strcmp(text, stack))
			return &s;
	}
	return NULL;
}

static void test_same_stack_merges(void **state)
{
	struct profile *p = profile__new(PROFILE_CPU, 99);
	assert_non_null(p);
	for (int i = 0; i < 5; i++)
		assert_int_equal(add_stack(p, "api", "uvicorn", "main;serve;handler", 1, 10101010), 0);
	assert_int_equal(add_stack(p, "api", "uvicorn", "main;serve;handler", 3, 30303030), 0);
	assert_int_equal(profile__sample_count(p), 1);
	const struct profile_sample *s = find(p, "api", "uvicorn", "main;serve;handler");
	assert_non_null(s);
	assert_int_equal(s->count, 8);
	assert_int_equal(s->ns, 5 * 10101010ull + 30303030ull);
	assert_int_equal(s->depth, 3);
	/* Leaf first in the store. */
	assert_string_equal(profile__frame_name(p, s->frames[0]), "handler");
	assert_string_equal(profile__frame_name(p, s->frames[2]), "main");
	assert_int_equal(profile__frame_count(p), 3);
	assert_null(profile__frame_name(p, 3));
	assert_int_equal(profile__dropped(p), 0);
	profile__free(p);
}

static void test_keys_separate(void **state)
{
	struct profile *p = profile__new(PROFILE_CPU, 19);
	assert_int_equal(add_stack(p, "api", "uvicorn", "main;work", 2, 2), 0);
	assert_int_equal(add_stack(p, "postgres", "uvicorn", "main;work", 3, 3), 0);	/* other service */
	assert_int_equal(add_stack(p, "api", "worker-1", "main;work", 5, 5), 0);	/* other thread */
	assert_int_equal(add_stack(p, "api", "uvicorn", "main;work;leaf", 7, 7), 0);	/* deeper stack */
	assert_int_equal(add_stack(p, "api", "uvicorn", "work;main", 11, 11), 0);	/* same names, other order */
	assert_int_equal(add_stack(p, "api", "uvicorn", "main;work", 13, 13), 0);	/* merges with the first */
	assert_int_equal(profile__sample_count(p), 5);
	assert_int_equal(find(p, "api", "uvicorn", "main;work")->count, 15);
	assert_int_equal(find(p, "postgres", "uvicorn", "main;work")->count, 3);
	assert_int_equal(find(p, "api", "worker-1", "main;work")->count, 5);
	assert_int_equal(find(p, "api", "uvicorn", "main;work;leaf")->count, 7);
	assert_int_equal(find(p, "api", "uvicorn", "work;main")->ns, 11);
	/* Functions are shared between keys: main, work, leaf. */
	assert_int_equal(profile__frame_count(p), 3);
	uint64_t count, ns;
	profile__totals(p, &count, &ns);
	assert_int_equal(count, 2 + 3 + 5 + 7 + 11 + 13);
	assert_int_equal(ns, count);
	profile__free(p);
}

static void test_unknown_names(void **state)
{
	struct profile *p = profile__new(PROFILE_OFFCPU, 0);
	assert_non_null(p);
	struct profile_frame f[3] = { { .name = NULL }, { .name = "" }, { .name = "main" } };
	assert_int_equal(profile__add(p, NULL, NULL, f, 3, 1, 100), 0);
	assert_int_equal(profile__add(p, "api", "t", NULL, 0, 1, 50), 0);	/* no stack at all */
	assert_int_equal(profile__add(p, "api", "t", NULL, 2, 1, 50), -EINVAL);
	assert_int_equal(profile__add(NULL, "api", "t", f, 1, 1, 50), -EINVAL);
	const struct profile_sample *s = find(p, "", "", "main;[unknown];[unknown]");
	assert_non_null(s);
	assert_int_equal(s->ns, 100);
	s = find(p, "api", "t", "[unknown]");
	assert_non_null(s);
	assert_int_equal(s->depth, 1);
	profile__free(p);
}

static void test_modules(void **state)
{
	struct profile *p = profile__new(PROFILE_CPU, 99);
	struct profile_frame a[2] = { { "leaf", NULL }, { "main", "/usr/bin/python3.11" } };
	struct profile_frame b[2] = { { "leaf", "libc.so.6" }, { "main", "other" } };
	assert_int_equal(profile__add(p, "api", "t", a, 2, 1, 1), 0);
	assert_int_equal(profile__add(p, "api", "t", b, 2, 1, 1), 0);	/* same stack: names decide */
	assert_int_equal(profile__sample_count(p), 1);
	/* The first known module of a function stays; an unknown one is filled in later. */
	assert_string_equal(profile__frame_module(p, 0), "libc.so.6");
	assert_string_equal(profile__frame_module(p, 1), "/usr/bin/python3.11");
	assert_string_equal(profile__frame_name(p, 0), "leaf");
	assert_null(profile__frame_module(p, 2));
	profile__free(p);
}

static void test_stack_limit(void **state)
{
	struct profile *p = profile__new(PROFILE_CPU, 99);
	profile__set_max_stacks(p, 3);
	assert_int_equal(add_stack(p, "api", "t1", "main;a", 1, 10), 0);
	assert_int_equal(add_stack(p, "api", "t1", "main;b", 1, 10), 0);
	assert_int_equal(add_stack(p, "db", "t2", "main;c", 1, 10), 0);
	/* Full: new stacks go to [other] of their service; known ones still merge. */
	assert_int_equal(add_stack(p, "api", "t1", "main;d", 2, 20), 0);
	assert_int_equal(add_stack(p, "api", "t9", "main;e", 3, 30), 0);
	assert_int_equal(add_stack(p, "db", "t2", "main;f", 4, 40), 0);
	assert_int_equal(add_stack(p, "api", "t1", "main;a", 5, 50), 0);
	assert_int_equal(profile__sample_count(p), 5);
	assert_int_equal(find(p, "api", "t1", "main;a")->count, 6);
	assert_int_equal(find(p, "api", PROFILE_OTHER, PROFILE_OTHER)->count, 5);
	assert_int_equal(find(p, "api", PROFILE_OTHER, PROFILE_OTHER)->ns, 50);
	assert_int_equal(find(p, "db", PROFILE_OTHER, PROFILE_OTHER)->count, 4);
	assert_null(find(p, "api", "t1", "main;d"));
	assert_int_equal(profile__dropped(p), 9);
	uint64_t count, ns;
	profile__totals(p, &count, &ns);
	assert_int_equal(count, 1 + 1 + 1 + 2 + 3 + 4 + 5);
	assert_int_equal(ns, count * 10);
	profile__free(p);
}

static void test_depth_limit(void **state)
{
	struct profile *p = profile__new(PROFILE_CPU, 99);
	static struct profile_frame f[PROFILE_MAX_DEPTH + 10];
	static char names[PROFILE_MAX_DEPTH + 10][16];
	for (size_t i = 0; i < PROFILE_MAX_DEPTH + 10; i++) {
		snprintf(names[i], sizeof(names[i]), "f%zu", i);
		f[i].name = names[i];
	}
	assert_int_equal(profile__add(p, "api", "t", f, PROFILE_MAX_DEPTH + 10, 1, 1), 0);
	struct profile_sample s;
	assert_int_equal(profile__sample(p, 0, &s), 0);
	assert_int_equal(s.depth, PROFILE_MAX_DEPTH);
	assert_string_equal(profile__frame_name(p, s.frames[0]), "f0");	/* the leaf survives */
	assert_string_equal(profile__frame_name(p, s.frames[PROFILE_MAX_DEPTH - 1]), "f255");
	assert_int_equal(profile__sample(p, 1, &s), -ERANGE);
	profile__free(p);
}

static void test_many_stacks(void **state)
{
	/* Enough keys to grow every table several times; each key read back exactly. */
	struct profile *p = profile__new(PROFILE_OFFCPU, 0);
	char stack[64];
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < 5000; i++) {
			snprintf(stack, sizeof(stack), "main;fn%d;leaf%d", i % 700, i);
			assert_int_equal(add_stack(p, i % 2 ? "api" : "db", "t", stack, 1, (uint64_t)i), 0);
		}
	assert_int_equal(profile__sample_count(p), 5000);
	assert_int_equal(profile__frame_count(p), 1 + 700 + 5000);
	const struct profile_sample *s = find(p, "api", "t", "main;fn3;leaf4203");
	assert_non_null(s);
	assert_int_equal(s->count, 2);
	assert_int_equal(s->ns, 2 * 4203);
	profile__free(p);
}

static void test_merge(void **state)
{
	struct profile *a = profile__new(PROFILE_CPU, 99), *b = profile__new(PROFILE_CPU, 99);
	struct profile *off = profile__new(PROFILE_OFFCPU, 0);
	struct profile_frame f[2] = { { "leaf", "libx.so" }, { "main", NULL } };
	assert_int_equal(profile__add(a, "api", "t", f, 2, 2, 20), 0);
	assert_int_equal(add_stack(a, "db", "t", "main;q", 3, 30), 0);
	assert_int_equal(add_stack(b, "api", "t", "main;leaf", 1, 10), 0);
	assert_int_equal(profile__merge(b, a, "api"), 0);
	assert_int_equal(profile__sample_count(b), 1);
	assert_int_equal(find(b, "api", "t", "main;leaf")->count, 3);
	/* b knew leaf (frame 0, created first: stacks are stored leaf first) without a module; the merge fills it. */
	assert_string_equal(profile__frame_module(b, 0), "libx.so");
	assert_null(profile__frame_module(b, 1));
	assert_int_equal(profile__merge(b, a, NULL), 0);
	assert_int_equal(find(b, "api", "t", "main;leaf")->count, 5);
	assert_int_equal(find(b, "db", "t", "main;q")->ns, 30);
	assert_int_equal(profile__merge(off, a, NULL), -EINVAL);
	profile__free(a);
	profile__free(b);
	profile__free(off);
}

static void test_kind_period(void **state)
{
	assert_null(profile__new(PROFILE_CPU, 0));
	struct profile *cpu = profile__new(PROFILE_CPU, 99), *off = profile__new(PROFILE_OFFCPU, 0);
	assert_int_equal(profile__period_ns(cpu), 10101010);
	assert_int_equal(profile__period_ns(off), 1);
	assert_int_equal(profile__value(cpu, PROFILE_VALUE_DEFAULT), PROFILE_VALUE_COUNT);
	assert_int_equal(profile__value(off, PROFILE_VALUE_DEFAULT), PROFILE_VALUE_NS);
	assert_int_equal(profile__value(off, PROFILE_VALUE_COUNT), PROFILE_VALUE_COUNT);
	assert_int_equal(profile__start_ns(cpu), 0);
	profile__set_time(cpu, 1700000000123456789ull, 30000000000ull);
	assert_int_equal(profile__start_ns(cpu), 1700000000123456789ull);
	assert_int_equal(profile__duration_ns(cpu), 30000000000ull);
	profile__free(cpu);
	profile__free(off);
	profile__free(NULL);
}

/* A known set of samples: the ground truth of the folded tests. */
static struct profile *known(void)
{
	struct profile *p = profile__new(PROFILE_CPU, 99);
	add_stack(p, "api", "uvicorn", "main;serve;handler;json_dumps", 4, 40);
	add_stack(p, "api", "uvicorn", "main;serve;handler", 2, 20);
	add_stack(p, "api", "worker", "main;serve;handler", 1, 10);
	add_stack(p, "db", "postgres", "main;PostgresMain;exec_simple_query", 3, 30);
	add_stack(p, "db", "postgres", "main;zero", 0, 0);
	add_stack(p, "api", "uvicorn", "main;idle", 0, 7);
	return p;
}

static void test_folded_exact(void **state)
{
	struct profile *p = known();
	struct buf b = {0};
	/* Without prefixes, keys rendering the same line are summed (handler: 2 + 1), zero values are left out. */
	assert_int_equal(profile__folded(p, PROFILE_VALUE_DEFAULT, 0, &b), 0);
	assert_string_equal(b.p, "main;PostgresMain;exec_simple_query 3\n"
				 "main;serve;handler 3\n"
				 "main;serve;handler;json_dumps 4\n");
	buf__reset(&b);
	assert_int_equal(profile__folded(p, PROFILE_VALUE_COUNT, PROFILE_FOLD_SERVICE | PROFILE_FOLD_THREAD, &b), 0);
	assert_string_equal(b.p, "api;uvicorn;main;serve;handler 2\n"
				 "api;uvicorn;main;serve;handler;json_dumps 4\n"
				 "api;worker;main;serve;handler 1\n"
				 "db;postgres;main;PostgresMain;exec_simple_query 3\n");
	buf__reset(&b);
	assert_int_equal(profile__folded(p, PROFILE_VALUE_NS, PROFILE_FOLD_SERVICE, &b), 0);
	assert_string_equal(b.p, "api;main;idle 7\n"
				 "api;main;serve;handler 30\n"
				 "api;main;serve;handler;json_dumps 40\n"
				 "db;main;PostgresMain;exec_simple_query 30\n");
	buf__reset(&b);
	assert_int_equal(profile__folded(p, PROFILE_VALUE_COUNT, PROFILE_FOLD_THREAD, &b), 0);
	assert_string_equal(b.p, "postgres;main;PostgresMain;exec_simple_query 3\n"
				 "uvicorn;main;serve;handler 2\n"
				 "uvicorn;main;serve;handler;json_dumps 4\n"
				 "worker;main;serve;handler 1\n");
	buf__free(&b);
	profile__free(p);
}

static void test_folded_offcpu_and_names(void **state)
{
	struct profile *p = profile__new(PROFILE_OFFCPU, 0);
	struct profile_frame f[3] = { { "std::map<int, int>::find(a;b)" }, { "line\nbreak\t" }, { "main" } };
	assert_int_equal(profile__add(p, "", "", f, 3, 2, 1500000), 0);
	assert_int_equal(profile__add(p, "api", "t", f + 2, 1, 1, 250), 0);
	struct buf b = {0};
	/* Off-CPU shows nanoseconds by default; ';' and control characters cannot break a line. */
	assert_int_equal(profile__folded(p, PROFILE_VALUE_DEFAULT, 0, &b), 0);
	assert_string_equal(b.p, "main 250\n"
				 "main;line?break?;std::map<int, int>::find(a:b) 1500000\n");
	buf__reset(&b);
	assert_int_equal(profile__folded(p, PROFILE_VALUE_COUNT, PROFILE_FOLD_SERVICE | PROFILE_FOLD_THREAD, &b), 0);
	assert_string_equal(b.p, "[unknown];[unknown];main;line?break?;std::map<int, int>::find(a:b) 2\n"
				 "api;t;main 1\n");
	buf__free(&b);
	/* An empty profile folds to nothing. */
	struct profile *e = profile__new(PROFILE_CPU, 19);
	assert_int_equal(profile__folded(e, PROFILE_VALUE_DEFAULT, 0, &b), 0);
	assert_true(b.len == 0);
	buf__free(&b);
	profile__free(e);
	profile__free(p);
}

/* ?window= over per-minute profiles: the minutes merged cover the whole window, across minute boundaries. */
static void test_window_minutes(void **state)
{
	/* 2 s into minute 2 (unix second 122): a 5 s window reaches back into minute 1. The old computation
	 * (whole minutes counted from the current one) gave minute 2 alone and lost 3 of the 5 seconds. */
	assert_int_equal(profile__first_minute(122, 5, 10), 1);
	assert_int_equal(profile__first_minute(179, 5, 10), 2);	/* well inside minute 2 */
	assert_int_equal(profile__first_minute(180, 60, 10), 2);	/* 1m at a boundary: the whole previous minute */
	assert_int_equal(profile__first_minute(181, 60, 10), 2);
	assert_int_equal(profile__first_minute(3600, 300, 10), 55);	/* 5m: minutes 55..60 */
	/* No more than the minutes kept; no underflow near the epoch. */
	assert_int_equal(profile__first_minute(3600, 600, 10), 51);
	assert_int_equal(profile__first_minute(3659, 600, 10), 51);
	assert_int_equal(profile__first_minute(30, 600, 10), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_stack_merges),
		cmocka_unit_test(test_keys_separate),
		cmocka_unit_test(test_unknown_names),
		cmocka_unit_test(test_modules),
		cmocka_unit_test(test_stack_limit),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_many_stacks),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_kind_period),
		cmocka_unit_test(test_folded_exact),
		cmocka_unit_test(test_folded_offcpu_and_names),
		cmocka_unit_test(test_window_minutes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
