// SPDX-License-Identifier: BSD-2-Clause
/* The one logging layer (src/lib/log.h): levelled JSON lines on stderr, rate-limited per event name, and the
 * libbpf print hook that routes libbpf's output through it. */
#include "lib/log.h"
#include "lib/hash.h"
#include "lib/util.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

/* Rate limit: each event name may log LOG_BURST records per LOG_WINDOW_NS; the rest are counted and the
 * count is reported with the next record of that event once the window turns over. Events live in an
 * open-addressed table so that two names hashing alike keep separate budgets; when it is full, the slot whose
 * window started first is reused. */
#define LOG_BURST 20
#define LOG_WINDOW_NS (10 * NSEC_PER_SEC)
#define LOG_SLOTS 64
static struct {
	char event[40];
	uint64_t window_start;
	unsigned count;
	unsigned suppressed;
} slots[LOG_SLOTS];
static unsigned long suppressed_total;

int log_level_parse(const char *s, enum log_level *out)
{
	for (int i = LOG_DEBUG; i <= LOG_OFF; i++) {
		if (!strcasecmp(s, level_names[i])) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (!strcasecmp(s, "warning")) {
		*out = LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

void log_set_level(enum log_level lvl) { min_level = lvl; }
enum log_level log_get_level(void) { return min_level; }
unsigned long log_suppressed_total(void) { return suppressed_total; }

/* The home slot of an event name. The table itself is not lib/hash.h's index: it is a fixed set of LOG_SLOTS
 * rate-limit windows that evicts the oldest when full, a cache rather than a map that must keep every key. */
static unsigned slot_of(const char *event)
{
	return (unsigned)(fnv1a_str(event) % LOG_SLOTS);
}

static bool slot_is(unsigned i, const char *event)
{
	return !strncmp(slots[i].event, event, sizeof(slots[i].event) - 1);
}

/* The slot of event, else the first free one on its probe sequence, else the oldest window. */
static unsigned slot_find(const char *event)
{
	unsigned h = slot_of(event), victim = h;
	for (unsigned k = 0; k < LOG_SLOTS; k++) {
		unsigned i = (h + k) % LOG_SLOTS;
		if (!slots[i].event[0] || slot_is(i, event))
			return i;
		if (slots[i].window_start < slots[victim].window_start)
			victim = i;
	}
	return victim;
}

/* Whether a record of event may be written now; when it opens a new window, *suppressed_before is how many
 * records of the last one were dropped (to report with it), else 0. */
static bool rate_admit(const char *event, unsigned *suppressed_before)
{
	unsigned i = slot_find(event);
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	bool same = slot_is(i, event);
	*suppressed_before = 0;
	if (!same || now - slots[i].window_start > LOG_WINDOW_NS) {
		*suppressed_before = same ? slots[i].suppressed : 0;
		snprintf(slots[i].event, sizeof(slots[i].event), "%s", event);
		slots[i].window_start = now;
		slots[i].count = 1;
		slots[i].suppressed = 0;
		return true;
	}
	if (++slots[i].count > LOG_BURST) {
		slots[i].suppressed++;
		suppressed_total++;
		return false;
	}
	return true;
}

static void log_vmsg(enum log_level lvl, const char *event, const char *fmt, va_list ap)
{
	if (lvl < min_level || min_level == LOG_OFF)
		return;
	pthread_mutex_lock(&log_lock);
	unsigned dropped;
	if (!rate_admit(event, &dropped)) {
		pthread_mutex_unlock(&log_lock);
		return;
	}
	struct buf msg = {0}, line = {0};
	buf__vprintf(&msg, fmt, ap);
	while (msg.len && (msg.p[msg.len - 1] == '\n' || msg.p[msg.len - 1] == ' '))
		msg.p[--msg.len] = '\0';

	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char when[40];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	buf__printf(&line, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"event\":\"", when, ts.tv_nsec / (long)NSEC_PER_MSEC,
		    level_names[lvl]);
	buf__json_str(&line, event);
	buf__puts(&line, "\",\"msg\":\"");
	buf__json_str(&line, msg.p ? msg.p : "");
	buf__puts(&line, "\"");
	if (dropped > 0)
		buf__printf(&line, ",\"suppressed_before\":%u", dropped);
	buf__puts(&line, "}\n");
	if (!line.oom) {
		ssize_t off = 0;
		while (off < (ssize_t)line.len) {
			ssize_t n = write(STDERR_FILENO, line.p + off, line.len - (size_t)off);
			if (n <= 0)
				break;
			off += n;
		}
	}
	buf__free(&msg);
	buf__free(&line);
	pthread_mutex_unlock(&log_lock);
}

void log_msg(enum log_level lvl, const char *event, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(lvl, event, fmt, ap);
	va_end(ap);
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	/* Debug chatter under its own event name: sharing the rate limit's budget, it used to suppress the warning
	 * that mattered (a verifier log). */
	bool warn = level == LIBBPF_WARN;
	log_vmsg(warn ? LOG_WARN : LOG_DEBUG, warn ? "libbpf" : "libbpf_debug", fmt, ap);
	return 0;
}

void log_hook_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}
