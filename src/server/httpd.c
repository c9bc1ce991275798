// SPDX-License-Identifier: BSD-2-Clause
/* The HTTP server (libmicrohttpd, its own thread): /metrics, /healthz, /readyz, /status and the profile endpoints.
 * It asks the core for metrics and status (src/core/core.h) and the profiler for profiles
 * (src/collectors/profiles.h), and maps their -errno to HTTP statuses; on-demand sessions suspend their
 * connection until the main loop finishes them. */
#include "version.h"
#include "collectors/profiles.h"
#include "core/core.h"
#include "core/loupe.h"
#include "lib/log.h"
#include "server/httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SUSPENDED 8

/* A connection waiting for an on-demand profiling session (suspended until the main loop finishes it). */
struct pending {
	struct httpd *h;
	struct MHD_Connection *c;
	int session;
	bool resumed; /* the session finished (or loupe is stopping): answer on the next call */
};

struct httpd {
	struct loupe *L;
	struct MHD_Daemon *mhd;
	unsigned long requests;
	pthread_mutex_t lock; /* suspended[] */
	struct pending *suspended[MAX_SUSPENDED];
};

int httpd_listen(const char *addr, char *err, size_t errlen)
{
	char host[256];
	const char *port;
	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (!end || end[1] != ':' || (size_t)(end - addr - 1) >= sizeof(host)) {
			snprintf(err, errlen, "bad listen address '%s': expected [IPV6]:PORT", addr);
			return -EINVAL;
		}
		memcpy(host, addr + 1, (size_t)(end - addr - 1));
		host[end - addr - 1] = '\0';
		port = end + 2;
	} else {
		const char *colon = strrchr(addr, ':');
		if (!colon || (size_t)(colon - addr) >= sizeof(host) || strchr(addr, ':') != colon) {
			snprintf(err, errlen, "bad listen address '%s': expected ADDR:PORT, e.g. 127.0.0.1:9476", addr);
			return -EINVAL;
		}
		memcpy(host, addr, (size_t)(colon - addr));
		host[colon - addr] = '\0';
		port = colon + 1;
	}
	char *end;
	long p = strtol(port, &end, 10);
	if (!*port || *end || p < 1 || p > 65535) {
		snprintf(err, errlen, "bad listen address '%s': port must be 1-65535", addr);
		return -EINVAL;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE},
			*res = NULL;
	int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "bad listen address '%s': %s", addr, gai_strerror(rc));
		return -EINVAL;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create socket for %s: %s", addr, strerror(errno));
		freeaddrinfo(res);
		return rc;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 64)) {
		rc = -errno;
		if (rc == -EADDRINUSE)
			snprintf(err, errlen, "cannot listen on %s: port in use (is another loupe running? choose --listen)",
				 addr);
		else if (rc == -EADDRNOTAVAIL)
			snprintf(err, errlen, "cannot listen on %s: no such local address", addr);
		else
			snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(-rc));
		close(fd);
		freeaddrinfo(res);
		return rc;
	}
	freeaddrinfo(res);
	return fd;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, void *body, size_t len,
			     enum MHD_ResponseMemoryMode mode, const char *encoding)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (encoding)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING, encoding);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
	return reply(c, status, "text/plain; charset=utf-8", (void *)text, strlen(text), MHD_RESPMEM_MUST_COPY, NULL);
}

/* The HTTP status of a reader's -errno (src/collectors/profiles.h says which it returns). */
static unsigned status_of(int err)
{
	switch (err) {
	case -EINVAL:
		return 400;
	case -ENODEV:
	case -EBUSY:
	case -ESHUTDOWN:
	case -ENOENT:
		return 503;
	default:
		return 500;
	}
}

/* A profile's answer: its body with ctype when err is 0, else the error's status and msg as text. Takes body. */
static enum MHD_Result reply_profile(struct MHD_Connection *c, int err, const char *msg, struct buf *body,
				     const char *ctype)
{
	if (err) {
		char text[256];
		buf__free(body);
		snprintf(text, sizeof(text), "%s\n", msg);
		return reply_text(c, status_of(err), text);
	}
	return reply(c, 200, ctype, body->p ? body->p : (char *)"", body->len,
		     body->p ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT, NULL);
}

static bool accepts_gzip(struct MHD_Connection *c)
{
	const char *ae = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING);
	if (!ae)
		return false;
	/* "gzip" listed and not refused with q=0 */
	const char *g = strcasestr(ae, "gzip");
	if (!g)
		return false;
	const char *q = strstr(g, "q=");
	const char *comma = strchr(g, ',');
	return !(q && (!comma || q < comma) && strtod(q + 2, NULL) == 0.0);
}

static enum MHD_Result serve_metrics(struct httpd *h, struct MHD_Connection *c)
{
	enum expo_format fmt = expo_negotiate(MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT));
	struct buf body = {0};
	loupe__scrape(h->L, fmt, &body);
	if (body.oom) {
		buf__free(&body);
		return reply_text(c, 500, "out of memory while rendering metrics\n");
	}
	if (accepts_gzip(c)) {
		struct buf gz = {0};
		if (!gzip_buf(body.p, body.len, &gz)) {
			buf__free(&body);
			return reply(c, 200, expo_content_type(fmt), gz.p, gz.len, MHD_RESPMEM_MUST_FREE, "gzip");
		}
		buf__free(&gz);
	}
	return reply(c, 200, expo_content_type(fmt), body.p ? body.p : (char *)"", body.len,
		     body.p ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT, NULL);
}

/* "90", "90s", "5m": seconds into *out; false when not a duration of 1 s .. 10 min (the continuous profile kept). */
static bool parse_window(const char *v, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (end == v || errno || v[0] == '-')
		return false;
	if (*end == 'm')
		n *= 60, end++;
	else if (*end == 's')
		end++;
	if (*end || n < 1 || n > 600)
		return false;
	*out = (unsigned)n;
	return true;
}

/* /debug/pprof/profile, /debug/pprof/offcpu (pprof, or ?format=folded) and /flamegraph.svg?kind=cpu|offcpu:
 * the continuous profile of the last ?window= (default 1m), optionally of one ?service=. */
static void session_done(void *arg)
{
	struct pending *pd = arg;
	pthread_mutex_lock(&pd->h->lock);
	if (!pd->resumed) {
		pd->resumed = true;
		MHD_resume_connection(pd->c);
	}
	pthread_mutex_unlock(&pd->h->lock);
}

/* ?seconds=N[&hz=H]: start a session and suspend the connection until it ends (net/http/pprof's semantics). */
static enum MHD_Result start_session(struct httpd *h, struct MHD_Connection *c, const struct profile_request *q,
				     const char *seconds, const char *hz, void **con_cls)
{
	char *end, err[200];
	unsigned long secs = strtoul(seconds, &end, 10), rate = 99;
	if (!*seconds || *end || seconds[0] == '-' || secs < 1 || secs > 600)
		return reply_text(c, 400, "bad seconds: expected 1 .. 600\n");
	if (hz && (rate = strtoul(hz, &end, 10), !*hz || *end || hz[0] == '-' || rate < 1 || rate > 1000))
		return reply_text(c, 400, "bad hz: expected 1 .. 1000\n");
	struct pending *pd = calloc(1, sizeof(*pd));
	if (!pd)
		return reply_text(c, 500, "out of memory\n");
	pd->h = h;
	pd->c = c;
	pthread_mutex_lock(&h->lock);
	int slot = -1;
	for (int i = 0; i < MAX_SUSPENDED && slot < 0; i++)
		if (!h->suspended[i])
			slot = i;
	if (slot >= 0)
		h->suspended[slot] = pd;
	pthread_mutex_unlock(&h->lock);
	if (slot < 0) {
		free(pd);
		return reply_text(c, 503, "too many profiling sessions waiting: try again later\n");
	}
	MHD_suspend_connection(c); /* before the session can end and resume it */
	*con_cls = pd;
	pd->session = profiler__session_start(h->L, q, (unsigned)secs, (unsigned)rate, session_done, pd, err, sizeof(err));
	if (pd->session < 0) {
		pthread_mutex_lock(&h->lock);
		h->suspended[slot] = NULL;
		pthread_mutex_unlock(&h->lock);
		*con_cls = (void *)1;
		MHD_resume_connection(c);
		int rc = pd->session;
		free(pd);
		return reply_profile(c, rc, err, &(struct buf){0}, NULL);
	}
	return MHD_YES;
}

/* The second call for a resumed connection: answer with the session's result. */
static enum MHD_Result finish_session(struct httpd *h, struct MHD_Connection *c, struct pending *pd)
{
	struct buf body = {0};
	const char *ctype = "application/octet-stream";
	char err[200];
	int rc = profiler__session_take(h->L, pd->session, &body, &ctype, err, sizeof(err));
	pd->session = -1; /* taken */
	return reply_profile(c, rc, err, &body, ctype);
}

/* A request is over: forget its pending session (taking an unanswered result, e.g. the client went away). */
static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct httpd *h = cls;
	(void)c;
	(void)toe;
	if (!*con_cls || *con_cls == (void *)1)
		return;
	struct pending *pd = *con_cls;
	pthread_mutex_lock(&h->lock);
	for (int i = 0; i < MAX_SUSPENDED; i++)
		if (h->suspended[i] == pd)
			h->suspended[i] = NULL;
	pthread_mutex_unlock(&h->lock);
	if (pd->session >= 0)
		profiler__session_take(h->L, pd->session, NULL, NULL, (char[8]){0}, 8);
	free(pd);
	*con_cls = NULL;
}

static enum MHD_Result serve_profile(struct httpd *h, struct MHD_Connection *c, const char *url, void **con_cls)
{
	struct profile_request q = {.kind = PROFILE_CPU, .format = PROFILE_FORMAT_PPROF, .window_s = 60};
	char err[200];
	const char *v;
	if (!strcmp(url, "/debug/pprof/offcpu"))
		q.kind = PROFILE_OFFCPU;
	if (!strcmp(url, "/flamegraph.svg")) {
		q.format = PROFILE_FORMAT_SVG;
		if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "kind"))) {
			if (strcmp(v, "cpu") && strcmp(v, "offcpu"))
				return reply_text(c, 400, "bad kind: expected cpu or offcpu\n");
			q.kind = strcmp(v, "offcpu") ? PROFILE_CPU : PROFILE_OFFCPU;
		}
	} else if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "format"))) {
		if (strcmp(v, "pprof") && strcmp(v, "folded"))
			return reply_text(c, 400, "bad format: expected pprof or folded\n");
		q.format = strcmp(v, "folded") ? PROFILE_FORMAT_PPROF : PROFILE_FORMAT_FOLDED;
	}
	q.service = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "service");
	q.focus = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "focus");
	if (q.focus && (!*q.focus || strlen(q.focus) > 256))
		return reply_text(c, 400, "bad focus: expected a regular expression of 1 .. 256 characters\n");
	if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "seconds")))
		return start_session(h, c, &q, v, MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "hz"), con_cls);
	if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "window")) && !parse_window(v, &q.window_s))
		return reply_text(c, 400, "bad window: expected 1s .. 10m, e.g. 90s or 5m\n");
	struct buf body = {0};
	const char *ctype = "application/octet-stream";
	int rc = profiler__profile(h->L, &q, &body, &ctype, err, sizeof(err));
	return reply_profile(c, rc, err, &body, ctype);
}

static const char index_page[] = "loupe " LOUPE_VERSION "\n"
				 "  /metrics   Prometheus metrics (text 0.0.4; OpenMetrics on Accept; gzip)\n"
				 "  /healthz   liveness\n"
				 "  /readyz    readiness (BPF programs attached)\n"
				 "  /status    features, drops and targets per service (JSON)\n"
				 "  /debug/pprof/profile?window=5m&service=S   CPU profile of the last minutes (pprof, gzip;\n"
				 "                                             &format=folded for folded stacks)\n"
				 "  /debug/pprof/profile?seconds=30&hz=99       an on-demand session: answers when it ends\n"
				 "  /debug/pprof/offcpu?window=5m&service=S    off-CPU profile (needs --offcpu)\n"
				 "  /flamegraph.svg?window=5m&service=S&kind=cpu|offcpu   flame graph\n"
				 "  (each profile also takes &focus=REGEX: only the stacks through a function it matches)\n";

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			      const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct httpd *h = cls;
	if (!*con_cls) { /* first call: headers only */
		*con_cls = (void *)1;
		return MHD_YES;
	}
	if (*con_cls != (void *)1) { /* a profiling session's connection, resumed */
		struct pending *pd = *con_cls;
		return pd->resumed ? finish_session(h, c, pd) : MHD_YES;
	}
	if (*upload_size) { /* we take no bodies */
		*upload_size = 0;
		return MHD_YES;
	}
	__atomic_add_fetch(&h->requests, 1, __ATOMIC_RELAXED);
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return reply_text(c, 405, "method not allowed: use GET\n");
	if (!strcmp(url, "/metrics"))
		return serve_metrics(h, c);
	if (!strcmp(url, "/healthz")) {
		uint64_t age = now_ns(CLOCK_MONOTONIC) - __atomic_load_n(&h->L->heartbeat_ns, __ATOMIC_RELAXED);
		return age < 5 * NSEC_PER_SEC ? reply_text(c, 200, "ok\n")
					   : reply_text(c, 503, "main loop stalled for more than 5 s\n");
	}
	if (!strcmp(url, "/readyz"))
		return h->L->ready ? reply_text(c, 200, "ready\n")
				   : reply_text(c, 503, "not ready: BPF programs not attached yet\n");
	if (!strcmp(url, "/status")) {
		struct buf body = {0};
		loupe__status(h->L, &body);
		if (body.oom || !body.p) {
			buf__free(&body);
			return reply_text(c, 500, "out of memory\n");
		}
		return reply(c, 200, "application/json", body.p, body.len, MHD_RESPMEM_MUST_FREE, NULL);
	}
	if (!strcmp(url, "/debug/pprof/profile") || !strcmp(url, "/debug/pprof/offcpu") || !strcmp(url, "/flamegraph.svg"))
		return serve_profile(h, c, url, con_cls);
	if (!strcmp(url, "/"))
		return reply_text(c, 200, index_page);
	return reply_text(c, 404, "not found: see / for the endpoints\n");
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[256];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_warn("http", "%s", msg);
}

struct httpd *httpd__start(struct loupe *L, int listen_fd)
{
	struct httpd *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->L = L;
	pthread_mutex_init(&h->lock, NULL);
	h->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
					  MHD_ALLOW_SUSPEND_RESUME,
				  0, NULL, NULL, handle, h, MHD_OPTION_NOTIFY_COMPLETED, completed, h,
				  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET,
				  listen_fd, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_CONNECTION_LIMIT,
				  (unsigned)64, MHD_OPTION_END);
	if (!h->mhd) {
		free(h);
		errno = EIO;
		return NULL;
	}
	return h;
}

void httpd__stop(struct httpd *h)
{
	if (!h)
		return;
	/* Suspended connections must be resumed before the daemon stops; they are answered 503. */
	pthread_mutex_lock(&h->lock);
	for (int i = 0; i < MAX_SUSPENDED; i++) {
		struct pending *pd = h->suspended[i];
		if (pd && !pd->resumed) {
			pd->resumed = true;
			MHD_resume_connection(pd->c);
		}
	}
	pthread_mutex_unlock(&h->lock);
	MHD_stop_daemon(h->mhd);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
