// SPDX-License-Identifier: BSD-2-Clause
/* The core that answers readers: collect every running feature into the registry (with loupe's own figures),
 * render /metrics, and render /status: kernel support, features and their state, drops, targets per service
 * (no pids, paths or addresses). */
#include "version.h"
#include "core/core.h"
#include "core/loupe.h"
#include "core/privs.h"
#include "core/selfstats.h"
#include "lib/log.h"

#include <string.h>
#include <time.h>

void loupe__collect_locked(struct loupe *L)
{
	registry__begin_collect(L->reg);
	for (int i = 0; i < L->nfeatures; i++) {
		struct feature *ft = &L->features[i];
		if (ft->state == FEATURE_RUNNING && ft->ops->collect) {
			int err = ft->ops->collect(ft->priv, L->reg);
			if (err)
				log_warn("collect_failed", "feature %s: collection failed: %s", ft->ops->name,
					 strerror(-err));
		}
	}
	selfstats_collect(L, L->reg);
}

void loupe__scrape(struct loupe *L, enum expo_format fmt, struct buf *out)
{
	pthread_mutex_lock(&L->lock);
	loupe__collect_locked(L);
	registry__render(L->reg, fmt, out);
	pthread_mutex_unlock(&L->lock);
}

unsigned loupe__targets_total(const struct loupe *L)
{
	unsigned total = 0;
	for (int s = 1; s <= L->opt->rules.nservices; s++)
		total += L->targets_per_service[s];
	return total;
}

static void status_drop(void *ctx, const char *const *v, double value)
{
	struct buf *b = ctx;
	if (b->len && b->p[b->len - 1] != '{')
		buf__append(b, ",", 1);
	buf__puts(b, "\"");
	buf__json_str(b, v[0]);
	buf__puts(b, ".");
	buf__json_str(b, v[1]);
	buf__printf(b, "\":%.0f", value);
}

static void status_feature(struct buf *b, const struct feature *ft)
{
	buf__printf(b, "{\"name\":\"%s\",\"state\":\"%s\",\"hook\":\"%s\"", ft->ops->name, feature_state_name(ft->state),
		    ft->hook ? ft->hook : "none");
	if (ft->detail[0]) {
		buf__puts(b, ",\"detail\":\"");
		buf__json_str(b, ft->detail);
		buf__puts(b, "\"");
	}
	if (ft->state == FEATURE_RUNNING && ft->ops->status) {
		struct buf extra = {0};
		ft->ops->status(ft->priv, &extra);
		if (extra.len) {
			buf__puts(b, ",");
			buf__append(b, extra.p, extra.len);
		}
		buf__free(&extra);
	}
	buf__puts(b, "}");
}

void loupe__status(struct loupe *L, struct buf *b)
{
	pthread_mutex_lock(&L->lock);
	loupe__collect_locked(L); /* fresh targets and drop counts */
	unsigned total = loupe__targets_total(L);
	buf__printf(b, "{\"version\":\"%s\",\"revision\":\"%s\",\"uptime_seconds\":%.0f,\"ready\":%s,\"state\":\"%s\"",
		    LOUPE_VERSION, LOUPE_COMMIT, ns_to_seconds(now_ns(CLOCK_MONOTONIC) - L->start_ns),
		    L->ready ? "true" : "false", !L->ready ? "starting" : total ? "running" : "waiting_for_targets");
	buf__puts(b, ",\"kernel\":{");
	for (int k = 0; k < KF_NR; k++)
		buf__printf(b, "%s\"%s\":%s", k ? "," : "", kfeature_name((enum kfeature)k),
			    L->kf.r[k].ok ? "true" : "false");
	buf__puts(b, "}");
	privs__status_json(b);
	buf__puts(b, ",\"features\":[");
	for (int i = 0; i < L->nfeatures; i++) {
		if (i)
			buf__puts(b, ",");
		status_feature(b, &L->features[i]);
	}
	buf__puts(b, "],\"drops\":{");
	struct metric_family *drops = registry__find(L->reg, "loupe_events_dropped_total");
	if (drops)
		family__foreach(drops, status_drop, b);
	buf__puts(b, "},\"targets\":{");
	for (int s = 1; s <= L->opt->rules.nservices; s++) {
		buf__printf(b, "%s\"", s > 1 ? "," : "");
		buf__json_str(b, L->opt->rules.service[s]);
		buf__printf(b, "\":%u", L->targets_per_service[s]);
	}
	buf__puts(b, "}}\n");
	pthread_mutex_unlock(&L->lock);
}
