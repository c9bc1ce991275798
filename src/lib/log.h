/* SPDX-License-Identifier: BSD-2-Clause */
/* One logging layer: JSON lines on stderr, levelled, rate-limited per event name.
 * Messages carry no concrete references (no IPs, paths, pids of other processes' commands, SQL):
 * callers log abstractions (service names, feature names, counts, errno names). */
#ifndef LOUPE_LOG_H
#define LOUPE_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

/* Parse "debug|info|warn|error"; -EINVAL if unknown. */
int log_level_parse(const char *s, enum log_level *out);
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Route libbpf's messages through this layer (debug output only at debug level). */
void log_hook_libbpf(void);
/* Messages dropped by rate limiting since start. */
unsigned long log_suppressed_total(void);

/* `event` is a short stable name ("attach_failed"); it keys the rate limiter and is a field of the record. */
void log_msg(enum log_level lvl, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_debug(ev, ...) log_msg(LOG_DEBUG, ev, __VA_ARGS__)
#define log_info(ev, ...) log_msg(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_msg(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_msg(LOG_ERROR, ev, __VA_ARGS__)

#endif
