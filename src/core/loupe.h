/* SPDX-License-Identifier: BSD-2-Clause */
/* The daemon's shared context (struct loupe, its options and features), the collector interface every signal
 * module implements, and what collectors may ask of the core (src/core/feature.c). */
#ifndef LOUPE_LOUPE_H
#define LOUPE_LOUPE_H
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/probe.h"
#include "metrics/registry.h"
#include "parsers/target_rules.h"
#include "lib/util.h"

struct bpf_object;
struct loupe;
struct web_config;

enum feature_state { FEATURE_OFF, FEATURE_LOADED, FEATURE_RUNNING, FEATURE_FAILED };

/* One row of the collector table (src/daemon/collectors.c). Order matters: targets comes first, others use its map. */
struct collector {
	const char *name; /* feature name: logs, /status, loupe_feature_enabled{feature} */
	/* Open, configure (rodata, map sizes, program variants by feature) and load. Returns 0, -errno, or
	 * LOUPE_FEATURE_DISABLED when options turned the feature off (detail says how). */
	int (*open)(struct loupe *L, void **priv);
	int (*attach)(void *priv);
	/* Ring buffers ready to read: consume them (non-blocking). May be NULL. */
	int (*poll)(void *priv);
	/* Epoll fd of its ring buffers, or -1. May be NULL. */
	int (*poll_fd)(void *priv);
	/* Also call poll() this often (ms), wakeups or not: for ring buffers whose producers skip most wakeups.
	 * 0: only on wakeups. */
	unsigned poll_period_ms;
	/* CLOCK_MONOTONIC time (ns) it wants poll() called by, sooner than its period (e.g. a profiling session's
	 * end), or UINT64_MAX; called under the daemon lock. May be NULL. */
	uint64_t (*poll_due_ns)(void *priv);
	/* Add its series to the registry (called under the daemon lock on every scrape). */
	int (*collect)(void *priv, struct registry *reg);
	/* Extra JSON members for /status (without braces, may be empty). May be NULL. */
	void (*status)(void *priv, struct buf *json);
	void (*close)(void *priv);
};

/* open() returns it (a negative errno like every other failure, one libbpf does not use) when the options turned
 * the feature off. */
#define LOUPE_FEATURE_DISABLED (-ECANCELED)

struct feature {
	const struct collector *ops;
	void *priv;
	enum feature_state state;
	const char *hook;   /* tp_btf, raw_tp ... */
	uint64_t next_poll_ns; /* poll_period_ms: when poll() is due */
	char detail[200];   /* why it failed */
};

#define LOUPE_MAX_OBJECTS 16

#define BPF_STATS_WINDOW_S 2
#define BPF_STATS_FIRST_WINDOW_S 10
#define BPF_STATS_PERIOD_S 20

/* Syscalls counted but not timed by default: the bulk of a Python service's calls (thread hand-offs, pid checks),
 * whose latency says little and whose timing would cost two clock reads and two task-storage lookups each. */
#define LOUPE_DEFAULT_UNTIMED "futex,getpid,gettid,getppid,sched_yield"

struct loupe_options {
	const char *listen;
	struct target_rules rules;
	enum { SCOPE_TARGETS, SCOPE_ALL } scope;
	size_t series_budget;
	enum { BPF_STATS_SAMPLED, BPF_STATS_ALWAYS, BPF_STATS_OFF } bpf_stats;
	const char *tracepoints; /* forced flavour (tp_btf, raw_tp) or NULL for auto */
	unsigned capture_bytes;	 /* payload bytes captured per socket call (0: capture off) */
	enum { SYSCALLS_ON, SYSCALLS_SAMPLED, SYSCALLS_OFF } syscalls; /* --syscalls: latency timing */
	const char *untimed_syscalls; /* --untimed-syscalls as given (NULL: LOUPE_DEFAULT_UNTIMED) */
	uint64_t untimed[8];	 /* its bitmap by syscall number (SYSCALL_MAX_NR bits) */
	unsigned route_budget;	 /* HTTP route templates per service before "_other" */
	unsigned fingerprint_budget; /* SQL fingerprints per service before "_other" */
	bool pg_usdt_query;	 /* per-query PostgreSQL USDT probes (a trap per query: off by default) */
	enum { UPROBE_AUTO, UPROBE_MULTI, UPROBE_PERF } uprobe_attach; /* --uprobe-attach: how USDT probes attach */
	const char *user;	 /* --user: switch to this user once attached (keeping the capabilities needed) */
	unsigned profile_hz;	 /* continuous CPU sampling frequency (0: off) */
	bool offcpu;		 /* off-CPU time of target threads (sched_switch) */
	const char *only_features; /* names of the features to run (loupe profile), or NULL: all */
	/* The HTTP server's protection (src/server/httpd.c, docs/security.md). */
	const struct web_config *web; /* --web-config (TLS, basic-auth users), or NULL: plain HTTP, open */
	unsigned sessions_per_minute; /* --sessions-per-minute: on-demand profiling sessions started, all clients
				       * together, per sliding minute (0: no limit) */
	/* --auth-scope: with basic-auth users, what needs credentials (/healthz and /readyz never do) */
	enum { AUTH_SCOPE_ALL, AUTH_SCOPE_PROFILES, AUTH_SCOPE_SESSIONS } auth_scope;
};

struct loupe {
	struct loupe_options *opt;
	struct kfeatures kf;
	const char *tp_flavour; /* tracepoint programs to load: tp_btf or raw_tp */
	struct registry *reg;
	pthread_mutex_t lock; /* held by the main loop while it handles records, and by scrapes */

	struct feature *features;
	int nfeatures;
	struct feature *opening; /* the feature whose collector is being opened */

	/* Shared BPF state. */
	int target_svc_fd; /* tgid -> service array, owned by the targets collector */
	int target_procs_fd; /* tgid -> struct target_info hash of live target processes, owned by it too */
	uint64_t target_gen; /* bumped by the targets collector whenever it sees target_procs change (a target's
			      * fork, exec or exit record; its own inserts and removals): a walk of the map, 16384
			      * buckets, can be skipped while it stays the same */
	uint32_t pid_max;
	struct bpf_object *objects[LOUPE_MAX_OBJECTS];
	int nobjects;

	/* Filled by the targets collector; read by /status. */
	unsigned targets_per_service[LOUPE_MAX_SERVICES + 1];
	bool ready;
	/* Kernel BPF statistics (run time and count per program). Each program run pays two clock reads while they
	 * are on, so by default they are on in windows (BPF_STATS_WINDOW_S every BPF_STATS_PERIOD_S). */
	bool bpf_stats_on;	       /* a mode other than off (else loupe_bpf_program_* are not exported) */
	int bpf_stats_fd;	       /* held while a window is open */
	bool bpf_stats_host;	       /* no CAP_SYS_ADMIN, but the host's kernel.bpf_stats_enabled is 1: always on */
	uint64_t bpf_stats_since_ns;   /* start of the open window */
	uint64_t bpf_stats_next_ns;    /* next window start (sampled mode) */
	double bpf_stats_seconds;      /* closed windows so far */
	uint64_t heartbeat_ns; /* last main loop turn (CLOCK_MONOTONIC) */
	/* The HTTP server's refusals (atomic: its own thread): connections shut for not sending a request head in
	 * time, requests refused for an oversized URI (src/server/httpd.c). */
	uint64_t http_head_timeouts, http_uri_too_long;
	/* Client certificates refused in the TLS handshake; requests answered 401 without credentials or with wrong
	 * ones, 429 because uncached password checks used their time budget or sessions their rate. */
	uint64_t http_client_cert_refused, http_auth_missing, http_auth_failed, http_auth_throttled, http_session_rate;
	uint64_t start_ns;
};

/* Defaults of loupe run (loupe profile starts from them too). */
extern const struct loupe_options loupe_default_options;

/* "off", "loaded", "running" or "failed". */
const char *feature_state_name(enum feature_state s);
/* Register a loaded object for per-program BPF statistics. */
void loupe__add_object(struct loupe *L, struct bpf_object *obj);
/* Choose the tracepoint flavour: autoload programs whose names end in "_btf" or "_raw" accordingly. */
int loupe__select_tp_flavour(struct loupe *L, struct bpf_object *obj, const char **hook);

/* Every collector defines its row (const struct collector NAME_collector); src/daemon/collectors.h lists them. */

/* The shared events-dropped family: loupe_events_dropped_total{feature,reason}. */
struct metric_family *loupe_drops_family(struct registry *reg);
/* Add a per-CPU drop-counter array (one u64 per reason, indexed by reason) to it. */
int loupe_export_drops(struct registry *reg, const char *feature, int map_fd, const char *const *reasons,
		       unsigned nreasons);

#endif
