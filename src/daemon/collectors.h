/* SPDX-License-Identifier: BSD-2-Clause */
/* The collector table (src/daemon/collectors.c) and the rows it is made of, one per signal in src/collectors/. */
#ifndef LOUPE_COLLECTORS_H
#define LOUPE_COLLECTORS_H
#include "core/loupe.h"

extern const struct collector targets_collector;
extern const struct collector syscalls_collector;
extern const struct collector tcp_collector;
extern const struct collector payload_collector;
extern const struct collector pgusdt_collector;
extern const struct collector profiler_collector;

/* In table order: targets first (the others share its map). */
extern const struct collector *const collectors[];
extern const int ncollectors;

/* loupe check: whether an installed or running postgres has USDT probes (src/collectors/pgusdt.c). */
bool pgusdt__check(char *detail, size_t len);

#endif
