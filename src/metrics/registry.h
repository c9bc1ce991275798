/* SPDX-License-Identifier: BSD-2-Clause */
/* The registry owns every exported series. Families have a fixed label schema and a series budget: a label set
 * past the budget collapses into a series whose labels (all but service_name) read "_other", and
 * loupe_series_dropped_total{metric} counts each distinct label set that was collapsed.
 *
 * Two kinds of family:
 *  - snapshot families are rebuilt on every collection (registry__begin_collect zeroes them, collectors add the
 *    cumulative values they read from kernel maps). Series, once admitted, stay admitted, so values stay monotonic.
 *  - event families are updated as events arrive and never reset.
 * The registry is not thread-safe: callers hold the daemon lock. */
#ifndef LOUPE_REGISTRY_H
#define LOUPE_REGISTRY_H
#include <stddef.h>
#include <stdint.h>

#include "lib/util.h"

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };
enum expo_format { EXPO_PROMETHEUS, EXPO_OPENMETRICS };

#define FAMILY_SNAPSHOT 0x1
#define REGISTRY_MAX_LABELS 8
#define REGISTRY_OTHER "_other"

struct registry;
struct metric_family;

struct registry *registry__new(void);
void registry__free(struct registry *r);

/* Declare (or find, when already declared with the same name) a family. `labels` is NULL-terminated.
 * Counter names end in _total. budget 0 means the default (registry__set_default_budget). */
struct metric_family *registry__family(struct registry *r, const char *name, const char *help, enum metric_type type,
				       const char *const *labels, size_t budget, unsigned flags);
/* Histogram bounds (finite, increasing, in base units); +Inf is implicit. Copied. */
int family__set_buckets(struct metric_family *f, const double *upper, size_t n);

void registry__set_default_budget(struct registry *r, size_t budget);
void registry__begin_collect(struct registry *r);

/* Label values in the order of the family's labels. Return 0, or -ENOMEM. */
int family__add(struct metric_family *f, const char *const *values, double v);
int family__set(struct metric_family *f, const char *const *values, double v);
/* Add per-bucket (non-cumulative) counts, n = buckets + 1 (the last is +Inf), and a sum. */
int family__observe_counts(struct metric_family *f, const char *const *values, const uint64_t *counts, size_t n,
			   double sum);
/* One observation. */
int family__observe(struct metric_family *f, const char *const *values, double v);

/* The series of values as family__add() and family__observe() find it (admitted, or past the budget the family's
 * "_other" series): a handle that stays valid as long as the registry, for a caller that updates the same series
 * again and again without the key's lookup (a prepared statement's executions). NULL without memory. */
struct series;
struct series *family__series(struct metric_family *f, const char *const *values);
/* One observation into s, a series of the histogram family f (from family__series(f, ...)). */
void family__observe_series(struct metric_family *f, struct series *s, double v);
/* Add v to s, a series of the counter or gauge family f (from family__series(f, ...)). */
void family__add_series(struct metric_family *f, struct series *s, double v);

/* Lookup for tests and /status: value of a counter/gauge series or NaN when absent. */
double family__get(struct metric_family *f, const char *const *values);
size_t family__series_count(const struct metric_family *f);

/* Find a declared family by name, or NULL. */
struct metric_family *registry__find(struct registry *r, const char *name);
/* Call fn for each counter/gauge series: label values in family order, and the value. */
void family__foreach(struct metric_family *f, void (*fn)(void *ctx, const char *const *values, double v), void *ctx);

/* Render every family in the given format into out (which is reset first). */
void registry__render(struct registry *r, enum expo_format fmt, struct buf *out);

/* Content type for a format. */
const char *expo_content_type(enum expo_format fmt);
/* Choose the format from an Accept header (NULL = Prometheus text 0.0.4). */
enum expo_format expo_negotiate(const char *accept);

#endif
