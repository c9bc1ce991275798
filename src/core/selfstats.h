/* SPDX-License-Identifier: BSD-2-Clause */
/* Loupe's own metrics (src/core/selfstats.c). */
#ifndef LOUPE_SELFSTATS_H
#define LOUPE_SELFSTATS_H
#include "core/loupe.h"


/* Add loupe's own series to reg; the caller holds L->lock. */
void selfstats_collect(struct loupe *L, struct registry *reg);

#endif
