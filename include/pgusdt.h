/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* PostgreSQL internals from the USDT probes of the postgres binary (provider "postgresql"). Shared by
 * bpf/pgusdt.bpf.c and src/collectors/pgusdt.c. */
#ifndef LOUPE_PGUSDT_H
#define LOUPE_PGUSDT_H
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Durations kept per service as log2 histograms (include/hist.h): [service][PG_HIST_NR] */
enum pg_hist {
	PG_HIST_LOCK_WAIT,  /* lock__wait__start -> lock__wait__done (heavyweight locks, granted) */
	PG_HIST_CHECKPOINT, /* checkpoint__start -> checkpoint__done */
	PG_HIST_QUERY,	    /* query__start -> query__done (per-query probes, off by default) */
	PG_HIST_NR,
};

/* Counters per service: [service][PG_CNT_NR] */
enum pg_counter {
	PG_CNT_DEADLOCKS,	   /* deadlock__found */
	PG_CNT_XACT_ABORTS,	   /* transaction__abort */
	PG_CNT_XACT_COMMITS,	   /* transaction__commit (per-query probes, off by default) */
	PG_CNT_NR,
};

enum pg_drop {
	PG_DROP_START_MAP_FULL, /* a start time could not be kept: its duration is lost */
	PG_DROP_NO_START,	/* a done probe without its start (attached mid-wait, or a start lost) */
	PG_DROP_NR,
};

#endif
