// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/metrics/registry.c: families and series, snapshot resets, the series budget, and the exposition
 * formats (Prometheus text 0.0.4 and OpenMetrics 1.0), checked line by line against the text we expect. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <cmocka.h>

#include "metrics/registry.h"

static int reg_setup(void **state)
{
	*state = registry__new();
	return *state ? 0 : -1;
}

static int reg_teardown(void **state)
{
	registry__free(*state);
	return 0;
}

/* Render and compare with the expected lines, one by one; the text must end with a newline. Unless `want`
 * itself shows the loupe_series_dropped family (which every registry has, with a 0 series per family), its
 * lines are left out of the comparison. */
static void assert_render(struct registry *r, enum expo_format fmt, const char *const *want, size_t nwant)
{
	struct buf out = {0};
	registry__render(r, fmt, &out);
	assert_false(out.oom);
	bool keep_dropped = false;
	for (size_t k = 0; k < nwant; k++)
		keep_dropped |= !strncmp(want[k], "# HELP loupe_series_dropped", 27);
	const char *p = out.p ? out.p : "";
	size_t i = 0;
	while (*p) {
		const char *nl = strchr(p, '\n');
		if (!nl)
			fail_msg("line %zu has no newline: '%s'", i + 1, p);
		if (!keep_dropped && (!strncmp(p, "loupe_series_dropped", 20) ||
				      !strncmp(p, "# HELP loupe_series_dropped", 27) ||
				      !strncmp(p, "# TYPE loupe_series_dropped", 27))) {
			p = nl + 1;
			continue;
		}
		if (i >= nwant)
			fail_msg("line %zu: unexpected '%.*s'", i + 1, (int)(nl - p), p);
		if (strlen(want[i]) != (size_t)(nl - p) || strncmp(p, want[i], (size_t)(nl - p)))
			fail_msg("line %zu: got '%.*s', want '%s'", i + 1, (int)(nl - p), p, want[i]);
		i++;
		p = nl + 1;
	}
	if (i != nwant)
		fail_msg("%zu lines, want %zu (first missing: '%s')", i, nwant, want[i]);
	buf__free(&out);
}

/* The rendered line for a sample name, or NULL. */
static char *render_line(struct registry *r, enum expo_format fmt, const char *prefix, char *dst, size_t n)
{
	struct buf out = {0};
	char *found = NULL;
	registry__render(r, fmt, &out);
	for (char *line = out.p, *nl; line && *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!strncmp(line, prefix, strlen(prefix))) {
			snprintf(dst, n, "%.*s", (int)(nl - line), line);
			found = dst;
			break;
		}
	}
	buf__free(&out);
	return found;
}

static const char *const L_SVC_ROUTE[] = {"service_name", "route", NULL};

/* ---- families and values ---- */

static void test_family_declare(void **state)
{
	struct registry *r = *state;

	struct metric_family *c = registry__family(r, "x_total", "X.", METRIC_COUNTER, L_SVC_ROUTE, 0, 0);
	assert_non_null(c);
	assert_ptr_equal(registry__family(r, "x_total", "X.", METRIC_COUNTER, L_SVC_ROUTE, 0, 0), c);
	assert_null(registry__family(r, "x_total", "X.", METRIC_GAUGE, L_SVC_ROUTE, 0, 0));
	assert_ptr_equal(registry__find(r, "x_total"), c);
	assert_null(registry__find(r, "y_total"));
	assert_non_null(registry__find(r, "loupe_series_dropped_total"));

	static const char *const nine[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", NULL};
	assert_null(registry__family(r, "too_many_labels", "T.", METRIC_GAUGE, nine, 0, 0));
	assert_null(registry__find(r, "too_many_labels"));
	static const char *const eight[] = {"a", "b", "c", "d", "e", "f", "g", "h", NULL};
	assert_non_null(registry__family(r, "eight_labels", "E.", METRIC_GAUGE, eight, 0, 0));
}

static void collect_fn(void *ctx, const char *const *values, double v)
{
	struct buf *b = ctx;
	buf__printf(b, "%s/%s=%g;", values[0], values[1], v);
}

static void test_counter_gauge(void **state)
{
	struct registry *r = *state;
	const char *a[] = {"api", "/users/{id}"}, *b[] = {"api", "/health"}, *none[] = {"api", "/nope"};

	struct metric_family *c = registry__family(r, "req_total", "Requests.", METRIC_COUNTER, L_SVC_ROUTE, 0, 0);
	assert_true(isnan(family__get(c, a)));
	assert_int_equal(family__add(c, a, 1), 0);
	assert_int_equal(family__add(c, a, 2.5), 0);
	assert_int_equal(family__add(c, b, 7), 0);
	assert_true(family__get(c, a) == 3.5);
	assert_true(family__get(c, b) == 7);
	assert_true(isnan(family__get(c, none)));
	assert_int_equal(family__series_count(c), 2);

	struct metric_family *g = registry__family(r, "conns", "Connections.", METRIC_GAUGE, L_SVC_ROUTE, 0, 0);
	assert_int_equal(family__set(g, a, 10), 0);
	assert_int_equal(family__set(g, a, -4), 0);
	assert_true(family__get(g, a) == -4);
	assert_int_equal(family__add(g, a, 1), 0);
	assert_true(family__get(g, a) == -3);

	/* foreach: every series, in the order it was created */
	struct buf seen = {0};
	family__foreach(c, collect_fn, &seen);
	assert_string_equal(seen.p, "api//users/{id}=3.5;api//health=7;");
	buf__free(&seen);

	/* NULL label values read as empty strings. */
	const char *nulls[] = {"api", NULL}, *empty[] = {"api", ""};
	assert_int_equal(family__add(c, nulls, 1), 0);
	assert_true(family__get(c, empty) == 1);
}

static void test_snapshot_reset(void **state)
{
	struct registry *r = *state;
	const char *a[] = {"api", "read"}, *b[] = {"postgres", "write"};
	static const char *const L[] = {"service_name", "syscall", NULL};

	struct metric_family *snap = registry__family(r, "snap_total", "S.", METRIC_COUNTER, L, 0, FAMILY_SNAPSHOT);
	struct metric_family *ev = registry__family(r, "ev_total", "E.", METRIC_COUNTER, L, 0, 0);
	struct metric_family *h = registry__family(r, "snap_seconds", "H.", METRIC_HISTOGRAM, L, 0, FAMILY_SNAPSHOT);
	const double bounds[] = {0.5, 1};
	assert_int_equal(family__set_buckets(h, bounds, 2), 0);

	/* Collection 1: the kernel maps read 5 and 2. */
	registry__begin_collect(r);
	family__add(snap, a, 5);
	family__add(snap, b, 2);
	family__add(ev, a, 1);
	family__observe(h, a, 0.25);
	/* Collection 2: cumulative values 8 for a; b not seen this time. */
	registry__begin_collect(r);
	assert_true(family__get(snap, a) == 0);
	assert_true(family__get(snap, b) == 0);
	assert_int_equal(family__series_count(snap), 2); /* series stay */
	assert_true(family__get(ev, a) == 1);             /* event families are not reset */
	family__add(snap, a, 8);
	family__add(ev, a, 1);
	family__observe(h, a, 0.75);

	assert_true(family__get(snap, a) == 8);
	assert_true(family__get(ev, a) == 2);
	static const char *const want[] = {
		"# HELP snap_total S.",
		"# TYPE snap_total counter",
		"snap_total{service_name=\"api\",syscall=\"read\"} 8",
		"snap_total{service_name=\"postgres\",syscall=\"write\"} 0",
		"# HELP ev_total E.",
		"# TYPE ev_total counter",
		"ev_total{service_name=\"api\",syscall=\"read\"} 2",
		"# HELP snap_seconds H.",
		"# TYPE snap_seconds histogram",
		"snap_seconds_bucket{service_name=\"api\",syscall=\"read\",le=\"0.5\"} 0",
		"snap_seconds_bucket{service_name=\"api\",syscall=\"read\",le=\"1\"} 1",
		"snap_seconds_bucket{service_name=\"api\",syscall=\"read\",le=\"+Inf\"} 1",
		"snap_seconds_sum{service_name=\"api\",syscall=\"read\"} 0.75",
		"snap_seconds_count{service_name=\"api\",syscall=\"read\"} 1",
	};
	assert_render(r, EXPO_PROMETHEUS, want, ARRAY_SIZE(want));
}

/* ---- series budget ---- */

static void test_budget(void **state)
{
	struct registry *r = *state;
	struct metric_family *f = registry__family(r, "http_total", "H.", METRIC_COUNTER, L_SVC_ROUTE, 2, 0);
	struct metric_family *dropped = registry__find(r, "loupe_series_dropped_total");
	const char *metric[] = {"http_total"};

	const char *r1[] = {"api", "/a"}, *r2[] = {"api", "/b"}, *r3[] = {"api", "/c"}, *r4[] = {"api", "/d"};
	const char *w1[] = {"worker", "/x"}, *other_api[] = {"api", "_other"}, *other_w[] = {"worker", "_other"};

	family__add(f, r1, 1);
	family__add(f, r2, 2);
	assert_true(family__get(dropped, metric) == 0); /* present, at 0, before any drop */

	/* Past the budget: each new label set lands in the _other series of its own service. */
	family__add(f, r3, 4);
	family__add(f, r4, 8);
	family__add(f, w1, 16);
	assert_true(isnan(family__get(f, r3)));
	assert_true(family__get(f, other_api) == 12);
	assert_true(family__get(f, other_w) == 16);
	assert_true(family__get(dropped, metric) == 3);

	/* The same refused label set again: its value adds up, the drop count does not move. */
	family__add(f, r3, 32);
	family__add(f, w1, 64);
	assert_true(family__get(f, other_api) == 44);
	assert_true(family__get(f, other_w) == 80);
	assert_true(family__get(dropped, metric) == 3);

	/* Admitted series keep working. */
	family__add(f, r1, 1);
	assert_true(family__get(f, r1) == 2);
	assert_int_equal(family__series_count(f), 4); /* 2 admitted + 2 _other */

	/* Conservation: what went in is what comes out. */
	double total = 0;
	const char *const *all[] = {r1, r2, other_api, other_w};
	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		total += family__get(f, all[i]);
	assert_true(total == 1 + 2 + 4 + 8 + 16 + 32 + 64 + 1);

	static const char *const want[] = {
		"# HELP loupe_series_dropped_total Distinct label sets that exceeded a metric's series budget and were "
		"collapsed into _other.",
		"# TYPE loupe_series_dropped_total counter",
		"loupe_series_dropped_total{metric=\"http_total\"} 3",
		"# HELP http_total H.",
		"# TYPE http_total counter",
		"http_total{service_name=\"api\",route=\"/a\"} 2",
		"http_total{service_name=\"api\",route=\"/b\"} 2",
		"http_total{service_name=\"api\",route=\"_other\"} 44",
		"http_total{service_name=\"worker\",route=\"_other\"} 80",
	};
	assert_render(r, EXPO_PROMETHEUS, want, ARRAY_SIZE(want));
}

static void test_budget_labels_without_service(void **state)
{
	struct registry *r = *state;
	static const char *const L[] = {"peer", "direction", NULL};
	struct metric_family *f = registry__family(r, "tcp_total", "T.", METRIC_COUNTER, L, 1, 0);
	struct metric_family *g = registry__family(r, "gauge_x", "G.", METRIC_GAUGE, L, 1, 0);
	const char *a[] = {"loopback", "in"}, *b[] = {"public", "out"}, *c[] = {"private", "in"};
	const char *other[] = {"_other", "_other"};

	family__add(f, a, 1);
	family__add(f, b, 2);
	family__add(f, c, 3);
	assert_true(family__get(f, other) == 5);
	const char *m[] = {"tcp_total"};
	assert_true(family__get(registry__find(r, "loupe_series_dropped_total"), m) == 2);

	/* Setting a collapsed gauge adds: it stands for several label sets at once. */
	family__set(g, a, 1);
	family__set(g, b, 10);
	family__set(g, c, 20);
	assert_true(family__get(g, a) == 1);
	assert_true(family__get(g, other) == 30);
}

static void test_budget_snapshot(void **state)
{
	struct registry *r = *state;
	struct metric_family *f = registry__family(r, "snap_total", "S.", METRIC_COUNTER, L_SVC_ROUTE, 1,
						   FAMILY_SNAPSHOT);
	struct metric_family *dropped = registry__find(r, "loupe_series_dropped_total");
	const char *a[] = {"api", "/a"}, *b[] = {"api", "/b"}, *c[] = {"api", "/c"}, *other[] = {"api", "_other"};
	const char *m[] = {"snap_total"};

	/* Every collection re-adds the same cumulative values; nothing grows but what the kernel counted. */
	for (int round = 1; round <= 3; round++) {
		registry__begin_collect(r);
		family__add(f, a, 1 * round);
		family__add(f, b, 10 * round);
		family__add(f, c, 100 * round);
		assert_true(family__get(f, a) == 1 * round);
		assert_true(family__get(f, other) == 110 * round);
		assert_true(family__get(dropped, m) == 2);
	}
	assert_int_equal(family__series_count(f), 2);
}

static void test_budget_default(void **state)
{
	struct registry *r = *state;
	registry__set_default_budget(r, 3);
	struct metric_family *f = registry__family(r, "d_total", "D.", METRIC_COUNTER, L_SVC_ROUTE, 0, 0);
	char route[16];

	for (int i = 0; i < 10; i++) {
		snprintf(route, sizeof(route), "/r%d", i);
		const char *v[] = {"api", route};
		family__add(f, v, 1);
	}
	const char *r2[] = {"api", "/r2"}, *r3[] = {"api", "/r3"}, *other[] = {"api", "_other"};
	const char *m[] = {"d_total"};
	assert_true(family__get(f, r2) == 1);
	assert_true(isnan(family__get(f, r3)));
	assert_true(family__get(f, other) == 7);
	assert_true(family__get(registry__find(r, "loupe_series_dropped_total"), m) == 7);
}

/* ---- exposition: Prometheus text 0.0.4 ---- */

static void test_render_text(void **state)
{
	struct registry *r = *state;
	static const char *const L[] = {"service_name", "path", NULL};

	struct metric_family *c = registry__family(r, "loupe_events_total", "Events seen\\counted,\nper \"kind\".",
						   METRIC_COUNTER, L, 0, 0);
	struct metric_family *g = registry__family(r, "loupe_up", "Always 1.", METRIC_GAUGE, NULL, 0, 0);
	registry__family(r, "loupe_empty", "Declared, never set.", METRIC_GAUGE, L, 0, 0);
	const char *esc[] = {"api", "C:\\tmp\\\"x\"\nnext"};
	const char *plain[] = {"api", "/ok"};
	family__add(c, esc, 3);
	family__add(c, plain, 1);
	family__set(g, NULL, 1);

	static const char *const want[] = {
		"# HELP loupe_events_total Events seen\\\\counted,\\nper \"kind\".",
		"# TYPE loupe_events_total counter",
		"loupe_events_total{service_name=\"api\",path=\"C:\\\\tmp\\\\\\\"x\\\"\\nnext\"} 3",
		"loupe_events_total{service_name=\"api\",path=\"/ok\"} 1",
		"# HELP loupe_up Always 1.",
		"# TYPE loupe_up gauge",
		"loupe_up 1",
		"# HELP loupe_empty Declared, never set.",
		"# TYPE loupe_empty gauge",
	};
	assert_render(r, EXPO_PROMETHEUS, want, ARRAY_SIZE(want));
}

static void test_render_histogram(void **state)
{
	struct registry *r = *state;
	static const char *const L[] = {"service_name", NULL};
	struct metric_family *h = registry__family(r, "lat_seconds", "Latency.", METRIC_HISTOGRAM, L, 0, 0);
	const double bounds[] = {0.125, 0.5, 1};
	assert_int_equal(family__set_buckets(h, bounds, 3), 0);
	const char *api[] = {"api"}, *db[] = {"db"};

	/* Bounds are inclusive (le): 0.125 lands in the first bucket. Binary fractions keep the sum exact. */
	assert_int_equal(family__observe(h, api, 0.0625), 0);
	assert_int_equal(family__observe(h, api, 0.125), 0);
	assert_int_equal(family__observe(h, api, 0.25), 0);
	assert_int_equal(family__observe(h, api, 2), 0);
	/* Per-bucket counts from a kernel map: 1 + 0 + 2 + 5 (+Inf). */
	const uint64_t counts[] = {1, 0, 2, 5};
	assert_int_equal(family__observe_counts(h, db, counts, 4, 10.5), 0);
	assert_int_equal(family__observe_counts(h, db, counts, 3, 1), -EINVAL);

	static const char *const want[] = {
		"# HELP lat_seconds Latency.",
		"# TYPE lat_seconds histogram",
		"lat_seconds_bucket{service_name=\"api\",le=\"0.125\"} 2",
		"lat_seconds_bucket{service_name=\"api\",le=\"0.5\"} 3",
		"lat_seconds_bucket{service_name=\"api\",le=\"1\"} 3",
		"lat_seconds_bucket{service_name=\"api\",le=\"+Inf\"} 4",
		"lat_seconds_sum{service_name=\"api\"} 2.4375",
		"lat_seconds_count{service_name=\"api\"} 4",
		"lat_seconds_bucket{service_name=\"db\",le=\"0.125\"} 1",
		"lat_seconds_bucket{service_name=\"db\",le=\"0.5\"} 1",
		"lat_seconds_bucket{service_name=\"db\",le=\"1\"} 3",
		"lat_seconds_bucket{service_name=\"db\",le=\"+Inf\"} 8",
		"lat_seconds_sum{service_name=\"db\"} 10.5",
		"lat_seconds_count{service_name=\"db\"} 8",
	};
	assert_render(r, EXPO_PROMETHEUS, want, ARRAY_SIZE(want));

	/* A histogram without labels. */
	struct registry *r2 = registry__new();
	struct metric_family *u = registry__family(r2, "u_seconds", "U.", METRIC_HISTOGRAM, NULL, 0, 0);
	const double one[] = {1e-6};
	assert_int_equal(family__set_buckets(u, one, 1), 0);
	assert_int_equal(family__observe(u, NULL, 0.5), 0);
	static const char *const want2[] = {
		"# HELP u_seconds U.",
		"# TYPE u_seconds histogram",
		"u_seconds_bucket{le=\"1e-06\"} 0",
		"u_seconds_bucket{le=\"+Inf\"} 1",
		"u_seconds_sum 0.5",
		"u_seconds_count 1",
	};
	assert_render(r2, EXPO_PROMETHEUS, want2, ARRAY_SIZE(want2));
	registry__free(r2);
}

static void test_histogram_misuse(void **state)
{
	struct registry *r = *state;
	static const char *const L[] = {"service_name", NULL};
	struct metric_family *c = registry__family(r, "c_total", "C.", METRIC_COUNTER, L, 0, 0);
	struct metric_family *h = registry__family(r, "h_seconds", "H.", METRIC_HISTOGRAM, L, 0, 0);
	const char *api[] = {"api"};
	const uint64_t counts[] = {1, 1, 1};

	assert_int_equal(family__observe(c, api, 1), -EINVAL);
	assert_int_equal(family__observe_counts(c, api, counts, 1, 1), -EINVAL);
	assert_int_equal(family__series_count(c), 0);

	const double bad_order[] = {1, 0.5}, dup[] = {1, 1}, inf[] = {1, INFINITY}, nan[] = {NAN};
	assert_int_equal(family__set_buckets(h, bad_order, 2), -EINVAL);
	assert_int_equal(family__set_buckets(h, dup, 2), -EINVAL);
	assert_int_equal(family__set_buckets(h, inf, 2), -EINVAL);
	assert_int_equal(family__set_buckets(h, nan, 1), -EINVAL);

	const double two[] = {0.1, 1}, three[] = {0.1, 1, 10}, two_again[] = {0.2, 2};
	assert_int_equal(family__set_buckets(h, two, 2), 0);
	assert_int_equal(family__observe_counts(h, api, counts, 3, 3), 0);
	/* Series exist: the bucket count cannot change under them (same count is fine). */
	assert_int_equal(family__set_buckets(h, three, 3), -EBUSY);
	assert_int_equal(family__set_buckets(h, two_again, 2), 0);
	assert_int_equal(family__observe_counts(h, api, counts, 3, 3), 0);
	char line[256];
	assert_non_null(render_line(r, EXPO_PROMETHEUS, "h_seconds_bucket{service_name=\"api\",le=\"+Inf\"}", line,
				    sizeof(line)));
	assert_string_equal(line, "h_seconds_bucket{service_name=\"api\",le=\"+Inf\"} 6");
}

static void test_value_format(void **state)
{
	struct registry *r = *state;
	static const char *const L[] = {"case", NULL};
	struct metric_family *g = registry__family(r, "v", "Values.", METRIC_GAUGE, L, 0, 0);
	static const struct {
		double v;
		const char *text;
	} cases[] = {
		{0, "0"},
		{-0.0, "0"},
		{42, "42"},
		{-7, "-7"},
		{1e14, "100000000000000"},
		{123456789012345, "123456789012345"},
		{0.1, "0.1"},
		{2.5, "2.5"},
		{-0.25, "-0.25"},
		{1.0 / 3, "0.3333333333333333"},
		{123456789.125, "123456789.125"},
		{1e-9, "1e-09"},
		{1e15, "1e+15"},
		{1e19, "1e+19"},
		{1e300, "1e+300"},
		{NAN, "NaN"},
		{INFINITY, "+Inf"},
		{-INFINITY, "-Inf"},
	};
	char name[16], prefix[32], line[128], want[128];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		snprintf(name, sizeof(name), "c%zu", i);
		const char *v[] = {name};
		family__set(g, v, cases[i].v);
	}
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		snprintf(prefix, sizeof(prefix), "v{case=\"c%zu\"} ", i);
		snprintf(want, sizeof(want), "%s%s", prefix, cases[i].text);
		assert_non_null(render_line(r, EXPO_PROMETHEUS, prefix, line, sizeof(line)));
		assert_string_equal(line, want);
		/* Finite values read back exactly. */
		if (isfinite(cases[i].v))
			assert_true(strtod(line + strlen(prefix), NULL) == cases[i].v);
	}
}

/* ---- exposition: OpenMetrics ---- */

static void test_render_openmetrics(void **state)
{
	struct registry *r = *state;
	static const char *const L[] = {"service_name", NULL};
	struct metric_family *c = registry__family(r, "http_requests_total", "Requests \"served\".", METRIC_COUNTER,
						   L, 1, 0);
	struct metric_family *g = registry__family(r, "temp_celsius", "Temperature.", METRIC_GAUGE, NULL, 0, 0);
	struct metric_family *h = registry__family(r, "d_seconds", "D.", METRIC_HISTOGRAM, NULL, 0, 0);
	const double b[] = {0.5};
	family__set_buckets(h, b, 1);
	const char *api[] = {"api"}, *db[] = {"db"};
	family__add(c, api, 3);
	family__add(c, db, 1); /* over the budget of 1: collapses, and the drop counter appears */
	family__set(g, NULL, 21.5);
	family__observe(h, NULL, 0.25);

	static const char *const want[] = {
		"# HELP loupe_series_dropped Distinct label sets that exceeded a metric's series budget and were "
		"collapsed into _other.",
		"# TYPE loupe_series_dropped counter",
		"loupe_series_dropped_total{metric=\"http_requests_total\"} 1",
		"loupe_series_dropped_total{metric=\"temp_celsius\"} 0",
		"loupe_series_dropped_total{metric=\"d_seconds\"} 0",
		"# HELP http_requests Requests \\\"served\\\".",
		"# TYPE http_requests counter",
		"http_requests_total{service_name=\"api\"} 3",
		"http_requests_total{service_name=\"db\"} 1",
		"# HELP temp_celsius Temperature.",
		"# TYPE temp_celsius gauge",
		"temp_celsius 21.5",
		"# HELP d_seconds D.",
		"# TYPE d_seconds histogram",
		"d_seconds_bucket{le=\"0.5\"} 1",
		"d_seconds_bucket{le=\"+Inf\"} 1",
		"d_seconds_sum 0.25",
		"d_seconds_count 1",
		"# EOF",
	};
	assert_render(r, EXPO_OPENMETRICS, want, ARRAY_SIZE(want));

	/* The same registry in text 0.0.4: the counter family keeps _total, quotes stay raw, no EOF. */
	char line[256];
	assert_non_null(render_line(r, EXPO_PROMETHEUS, "# HELP http_requests", line, sizeof(line)));
	assert_string_equal(line, "# HELP http_requests_total Requests \"served\".");
	assert_non_null(render_line(r, EXPO_PROMETHEUS, "# TYPE http_requests", line, sizeof(line)));
	assert_string_equal(line, "# TYPE http_requests_total counter");
	assert_null(render_line(r, EXPO_PROMETHEUS, "# EOF", line, sizeof(line)));
}

static void test_render_empty(void **state)
{
	struct registry *r = *state;

	/* A fresh registry holds only the drop counter, with no series until a family is declared. */
	assert_render(r, EXPO_PROMETHEUS, NULL, 0);
	static const char *const eof[] = {"# EOF"};
	assert_render(r, EXPO_OPENMETRICS, eof, 1);

	/* render resets its output buffer */
	struct buf out = {0};
	buf__puts(&out, "stale");
	registry__render(r, EXPO_OPENMETRICS, &out);
	assert_string_equal(out.p, "# HELP loupe_series_dropped Distinct label sets that exceeded a metric's series "
				   "budget and were collapsed into _other.\n"
				   "# TYPE loupe_series_dropped counter\n"
				   "# EOF\n");
	buf__free(&out);
}

static void test_negotiate(void **state)
{
	static const struct {
		const char *accept;
		enum expo_format want;
	} cases[] = {
		{NULL, EXPO_PROMETHEUS},
		{"", EXPO_PROMETHEUS},
		{"*/*", EXPO_PROMETHEUS},
		{"text/plain", EXPO_PROMETHEUS},
		{"text/plain;version=0.0.4;q=1,*/*;q=0.1", EXPO_PROMETHEUS},
		{"application/openmetrics-text", EXPO_OPENMETRICS},
		{"application/openmetrics-text; version=1.0.0; charset=utf-8", EXPO_OPENMETRICS},
		/* Prometheus 2.x default scrape_protocols */
		{"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
		 "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
		 EXPO_OPENMETRICS},
		/* Prometheus 3.x default */
		{"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
		 "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
		 "text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
		 EXPO_OPENMETRICS},
		/* scrape_protocols: [PrometheusText0.0.4, OpenMetricsText1.0.0] */
		{"text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,*/*;q=0.3",
		 EXPO_PROMETHEUS},
		/* media types are case-insensitive */
		{"Application/OpenMetrics-Text; Version=1.0.0", EXPO_OPENMETRICS},
		/* q=0: not acceptable */
		{"application/openmetrics-text;q=0, text/plain", EXPO_PROMETHEUS},
		{"application/openmetrics-text; q=0.0", EXPO_PROMETHEUS},
		/* a different media type that merely starts alike */
		{"application/openmetrics-textual", EXPO_PROMETHEUS},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (expo_negotiate(cases[i].accept) != cases[i].want)
			fail_msg("Accept '%s': got %d, want %d", cases[i].accept ? cases[i].accept : "(none)",
				 expo_negotiate(cases[i].accept), cases[i].want);

	assert_string_equal(expo_content_type(EXPO_PROMETHEUS), "text/plain; version=0.0.4; charset=utf-8");
	assert_string_equal(expo_content_type(EXPO_OPENMETRICS),
			    "application/openmetrics-text; version=1.0.0; charset=utf-8");
}

/* ---- scale ---- */

static void test_many_series(void **state)
{
	struct registry *r = *state;
	struct metric_family *f = registry__family(r, "many_total", "M.", METRIC_COUNTER, L_SVC_ROUTE, 5000, 0);
	char route[32];

	/* Enough series to grow the hash table several times; every one must still be found. */
	for (int i = 0; i < 6000; i++) {
		snprintf(route, sizeof(route), "/r/%d", i);
		const char *v[] = {"api", route};
		assert_int_equal(family__add(f, v, i), 0);
	}
	assert_int_equal(family__series_count(f), 5001);
	double other_sum = 0;
	for (int i = 0; i < 6000; i++) {
		snprintf(route, sizeof(route), "/r/%d", i);
		const char *v[] = {"api", route};
		if (i < 5000)
			assert_true(family__get(f, v) == i);
		else
			other_sum += i;
	}
	const char *other[] = {"api", "_other"}, *m[] = {"many_total"};
	assert_true(family__get(f, other) == other_sum);
	assert_true(family__get(registry__find(r, "loupe_series_dropped_total"), m) == 1000);
}

/* A series handle (family__series) observes into the series family__observe() would find: it stays valid while
 * thousands of series are added after it (the table grows under it), and past the budget it is the _other series. */
static void test_series_handle(void **state)
{
	struct registry *r = *state;
	static const char *const L[] = {"service_name", "route", NULL};
	struct metric_family *h = registry__family(r, "lat_seconds", "L.", METRIC_HISTOGRAM, L, 3000, 0);
	const double bounds[] = {0.1, 1};
	assert_int_equal(family__set_buckets(h, bounds, 2), 0);
	const char *first[] = {"api", "/first"};
	struct series *s = family__series(h, first);
	assert_non_null(s);
	char route[32];
	for (int i = 0; i < 4000; i++) {
		snprintf(route, sizeof(route), "/r/%d", i);
		const char *v[] = {"api", route};
		assert_int_equal(family__observe(h, v, 0.5), 0);
	}
	assert_ptr_equal(family__series(h, first), s);
	family__observe_series(h, s, 0.05);
	family__observe_series(h, s, 5);
	assert_int_equal(family__observe(h, first, 0.5), 0);
	char line[256];
	assert_non_null(render_line(r, EXPO_PROMETHEUS, "lat_seconds_bucket{service_name=\"api\",route=\"/first\",le=\"0.1\"}",
				    line, sizeof(line)));
	assert_string_equal(line, "lat_seconds_bucket{service_name=\"api\",route=\"/first\",le=\"0.1\"} 1");
	assert_non_null(render_line(r, EXPO_PROMETHEUS, "lat_seconds_count{service_name=\"api\",route=\"/first\"}", line,
				    sizeof(line)));
	assert_string_equal(line, "lat_seconds_count{service_name=\"api\",route=\"/first\"} 3");

	/* Past the budget (3000 admitted: /first and 2999 of the loop), a new label set's handle is _other's. */
	const char *late[] = {"api", "/late"};
	struct series *o = family__series(h, late);
	assert_non_null(o);
	family__observe_series(h, o, 0.05);
	assert_non_null(render_line(r, EXPO_PROMETHEUS, "lat_seconds_count{service_name=\"api\",route=\"_other\"}", line,
				    sizeof(line)));
	assert_string_equal(line, "lat_seconds_count{service_name=\"api\",route=\"_other\"} 1002");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, reg_setup, reg_teardown)
	const struct CMUnitTest tests[] = {
		T(test_family_declare),
		T(test_counter_gauge),
		T(test_snapshot_reset),
		T(test_budget),
		T(test_budget_labels_without_service),
		T(test_budget_snapshot),
		T(test_budget_default),
		T(test_render_text),
		T(test_render_histogram),
		T(test_histogram_misuse),
		T(test_value_format),
		T(test_render_openmetrics),
		T(test_render_empty),
		cmocka_unit_test(test_negotiate),
		T(test_many_series),
		T(test_series_handle),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
