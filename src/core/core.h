/* SPDX-License-Identifier: BSD-2-Clause */
/* The core's answers to its readers (the HTTP server, the main loop): every running feature collected into the
 * registry, rendered as metrics or as the /status document. */
#ifndef LOUPE_CORE_H
#define LOUPE_CORE_H
#include "metrics/registry.h"

struct loupe;

/* Refresh every series from the kernel maps and the features' state; the caller holds L->lock. */
void loupe__collect_locked(struct loupe *L);
/* Collect and render the metrics in fmt into out (takes L->lock). */
void loupe__scrape(struct loupe *L, enum expo_format fmt, struct buf *out);
/* Collect and render the /status JSON document into out (takes L->lock). */
void loupe__status(struct loupe *L, struct buf *out);
/* Target processes found so far, over every service. */
unsigned loupe__targets_total(const struct loupe *L);

#endif
