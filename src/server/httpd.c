// SPDX-License-Identifier: BSD-2-Clause
/* The HTTP server (libmicrohttpd, its own thread): /metrics, /healthz, /readyz, /status and the profile endpoints.
 * It asks the core for metrics and status (src/core/core.h) and the profiler for profiles
 * (src/collectors/profiles.h), and maps their -errno to HTTP statuses; on-demand sessions suspend their
 * connection until the main loop finishes them. With --web-config it serves HTTPS (libmicrohttpd's GnuTLS
 * support), applies client_auth_type in the handshake and asks for basic-auth credentials
 * (src/server/basic_auth.c); --sessions-per-minute limits profiling sessions (docs/security.md). */
#include "version.h"
#include "collectors/profiles.h"
#include "core/core.h"
#include "core/loupe.h"
#include "lib/log.h"
#include "parsers/params.h"
#include "server/basic_auth.h"
#include "server/httpd.h"
#include "server/webconfig.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SUSPENDED 8
/* Connection exhaustion (slowloris, idle floods): a client address holds at most PER_CLIENT connections, all
 * clients CONNECTIONS_MAX; a connection must deliver a request's head within HEAD_DEADLINE_S of connecting or of its
 * previous response, however slowly it trickles bytes (libmicrohttpd's own timeout restarts at every byte), else
 * the guard thread shuts it down. Requests being answered (profiling sessions: minutes) are not timed. */
#define PER_CLIENT 16
#define CONNECTIONS_MAX 256
#define HEAD_DEADLINE_S 10
#define GUARD_PERIOD_MS 250
#define LISTEN_BACKLOG 1024
/* Request URIs refused before their arguments are parsed (uri_check()). */
#define URI_MAX 2048
#define URI_PARAMS_MAX 16
#define REJECTED ((void *)2) /* *con_cls of a request uri_check() answered */
#define STR_(x) #x
#define STR(x) STR_(x)
/* The realm of WWW-Authenticate (RFC 7617). */
#define AUTH_REALM "loupe"
#define SESSION_RATE_WINDOW_NS (60 * NSEC_PER_SEC)

/* A connection waiting for an on-demand profiling session (suspended until the main loop finishes it). */
struct pending {
	struct httpd *h;
	struct MHD_Connection *c;
	int session;
	bool resumed; /* the session finished (or loupe is stopping): answer on the next call */
};

/* A connection as the guard sees it. */
struct tracked {
	struct httpd *h;
	int fd;
	bool busy;	    /* a request's head arrived and it is not answered yet */
	bool shut;	    /* the guard shut it down */
	uint64_t since_ns;  /* when it began waiting for a request's head (CLOCK_MONOTONIC) */
	struct tracked *next, *prev;
};

struct httpd {
	struct loupe *L;
	struct MHD_Daemon *mhd;
	unsigned long requests;
	pthread_mutex_t lock; /* suspended[], the tracked list */
	struct pending *suspended[MAX_SUSPENDED];
	struct tracked conns; /* list head */
	pthread_t guard;
	bool guard_running;
	int guard_stop[2]; /* a pipe: written to stop the guard */
	const struct web_config *web; /* NULL: plain HTTP */
	bool tls;
	struct basic_auth *auth; /* NULL: no basic_auth_users */
	/* --sessions-per-minute: when the last ones started (a ring of session_cap; under lock) */
	uint64_t *session_starts;
	unsigned session_cap, session_next, session_n;
};

int httpd_listen(const char *addr, char *err, size_t errlen)
{
	char host[256], port[8];
	unsigned portnum;
	if (listen_addr_parse(addr, host, sizeof(host), &portnum, err, errlen))
		return -EINVAL;
	snprintf(port, sizeof(port), "%u", portnum);
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
	if (bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, LISTEN_BACKLOG)) {
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

/* 429 (or 503) with Retry-After (RFC 9110 10.2.3), in whole seconds. */
static enum MHD_Result reply_retry(struct MHD_Connection *c, unsigned status, const char *text, unsigned retry_s)
{
	char after[16];
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	snprintf(after, sizeof(after), "%u", retry_s);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, after);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* 401 with WWW-Authenticate: Basic realm="loupe" (RFC 7617). */
static enum MHD_Result reply_unauthorized(struct MHD_Connection *c, const char *text)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	enum MHD_Result ret = MHD_queue_basic_auth_fail_response(c, AUTH_REALM, r);
	MHD_destroy_response(r);
	return ret;
}

/* The request's basic-auth credentials, checked: true when they pass, else false with the 401 (none, or wrong)
 * or 429 (the budget of password checks is spent) queued and its result in *ret. */
static bool authenticated(struct httpd *h, struct MHD_Connection *c, enum MHD_Result *ret)
{
	char *password = NULL;
	char *user = MHD_basic_auth_get_username_password(c, &password);
	unsigned retry_s = 1;
	if (!user) {
		__atomic_add_fetch(&h->L->http_auth_missing, 1, __ATOMIC_RELAXED);
		*ret = reply_unauthorized(c, "unauthorized: send HTTP basic-auth credentials\n");
		return false;
	}
	enum auth_result r = basic_auth__check(h->auth, user, password ? password : "", &retry_s);
	if (password) {
		explicit_bzero(password, strlen(password));
		MHD_free(password);
	}
	MHD_free(user);
	if (r == AUTH_OK)
		return true;
	if (r == AUTH_THROTTLED) {
		__atomic_add_fetch(&h->L->http_auth_throttled, 1, __ATOMIC_RELAXED);
		*ret = reply_retry(c, 429, "too many password checks: try again later\n", retry_s);
	} else {
		__atomic_add_fetch(&h->L->http_auth_failed, 1, __ATOMIC_RELAXED);
		*ret = reply_unauthorized(c, "unauthorized: wrong user name or password\n");
	}
	return false;
}

static bool is_profile_url(const char *url)
{
	return !strcmp(url, "/debug/pprof/profile") || !strcmp(url, "/debug/pprof/offcpu") ||
	       !strcmp(url, "/flamegraph.svg");
}

/* What needs credentials when basic_auth_users is set (--auth-scope). /healthz and /readyz never do: Kubernetes
 * probes and load balancers cannot send them, and the answers say only whether loupe is alive and attached. Every
 * other path does with the default scope, unknown ones too, so that 404s do not map the server for strangers. */
static bool url_needs_auth(const struct httpd *h, const char *url)
{
	if (!h->auth || !strcmp(url, "/healthz") || !strcmp(url, "/readyz"))
		return false;
	switch (h->L->opt->auth_scope) {
	case AUTH_SCOPE_ALL:
		return true;
	case AUTH_SCOPE_PROFILES:
		return is_profile_url(url);
	default: /* AUTH_SCOPE_SESSIONS: when one starts (start_session) */
		return false;
	}
}

/* --sessions-per-minute: may a session start now? If not, *retry_s is when the oldest of the minute leaves it. */
static bool session_rate_ok(struct httpd *h, unsigned *retry_s)
{
	if (!h->session_cap)
		return true;
	uint64_t now = now_ns(CLOCK_MONOTONIC);
	pthread_mutex_lock(&h->lock);
	uint64_t oldest = h->session_starts[h->session_next]; /* the ring's oldest once it is full */
	bool ok = h->session_n < h->session_cap || now - oldest >= SESSION_RATE_WINDOW_NS;
	if (!ok)
		*retry_s = (unsigned)((oldest + SESSION_RATE_WINDOW_NS - now + NSEC_PER_SEC - 1) / NSEC_PER_SEC);
	pthread_mutex_unlock(&h->lock);
	return ok;
}

static void session_started(struct httpd *h)
{
	if (!h->session_cap)
		return;
	pthread_mutex_lock(&h->lock);
	h->session_starts[h->session_next] = now_ns(CLOCK_MONOTONIC);
	h->session_next = (h->session_next + 1) % h->session_cap;
	if (h->session_n < h->session_cap)
		h->session_n++;
	pthread_mutex_unlock(&h->lock);
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

/* client_auth_type in the TLS handshake, as Go's crypto/tls does it. libmicrohttpd only asks for a certificate (never
 * requires one) and only when it has a trust list (client_ca_file), and verifies nothing: so each session gets its
 * request policy and a verify function here, on NOTIFY_STARTED, which libmicrohttpd calls after creating the session
 * and before the first handshake byte. A verify function that fails makes GnuTLS end the handshake with an alert:
 * the client gets no HTTP answer at all, like Go's. Verification is against client_ca_file, with the key purpose
 * TLS WWW client when the certificate names its purposes (as Go's ExtKeyUsageClientAuth check). */
static int client_cert_check(gnutls_session_t s, bool required, bool verify)
{
	unsigned n = 0, status = 0;
	const gnutls_datum_t *peers = gnutls_certificate_get_peers(s, &n);
	bool ok;
	if (!peers || !n) {
		ok = !required;
	} else if (!verify) {
		ok = true;
	} else {
		gnutls_typed_vdata_st purpose = {.type = GNUTLS_DT_KEY_PURPOSE_OID, .data = (void *)GNUTLS_KP_TLS_WWW_CLIENT};
		ok = gnutls_certificate_verify_peers(s, &purpose, 1, &status) == GNUTLS_E_SUCCESS && status == 0;
	}
	if (!ok) {
		/* libmicrohttpd keeps its connection as the session's pointer; ours is its socket context. */
		struct MHD_Connection *c = gnutls_session_get_ptr(s);
		const union MHD_ConnectionInfo *ci = c ? MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT)
						       : NULL;
		struct tracked *t = ci ? ci->socket_context : NULL;
		if (t)
			__atomic_add_fetch(&t->h->L->http_client_cert_refused, 1, __ATOMIC_RELAXED);
	}
	return ok ? 0 : -1;
}

static int require_any_cert(gnutls_session_t s)
{
	return client_cert_check(s, true, false);
}

static int verify_cert_if_given(gnutls_session_t s)
{
	return client_cert_check(s, false, true);
}

static int require_and_verify_cert(gnutls_session_t s)
{
	return client_cert_check(s, true, true);
}

/* Set a new TLS connection's client certificate policy; false when it cannot be (the connection is then shut). */
static bool tls_client_auth(struct httpd *h, struct MHD_Connection *c)
{
	static gnutls_certificate_verify_function *const verify[] = {
		[CLIENT_AUTH_REQUIRE_ANY] = require_any_cert,
		[CLIENT_AUTH_VERIFY_IF_GIVEN] = verify_cert_if_given,
		[CLIENT_AUTH_REQUIRE_AND_VERIFY] = require_and_verify_cert,
	};
	enum client_auth a = h->web->client_auth;
	if (a == CLIENT_AUTH_NONE)
		return true;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (!ci || !ci->tls_session)
		return false;
	/* Asked for, never GNUTLS_CERT_REQUIRE: the verify function decides, so that refusals are counted. */
	gnutls_certificate_server_set_request(ci->tls_session, GNUTLS_CERT_REQUEST);
	if (a != CLIENT_AUTH_REQUEST)
		gnutls_session_set_verify_function(ci->tls_session, verify[a]);
	return true;
}

/* Connections enter the tracked list when accepted and leave it when libmicrohttpd closes them (before it closes
 * their socket: the guard, holding the lock, only ever shuts a socket that is still theirs). */
static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			      enum MHD_ConnectionNotificationCode toe)
{
	struct httpd *h = cls;
	struct tracked *t = *socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		if (h->tls && !tls_client_auth(h, c) && ci) { /* never serve a connection without its policy */
			shutdown(ci->connect_fd, SHUT_RDWR);
			return;
		}
		if (!ci || !(t = calloc(1, sizeof(*t))))
			return; /* untracked: only libmicrohttpd's own timeout applies */
		t->h = h;
		t->fd = ci->connect_fd;
		t->since_ns = now_ns(CLOCK_MONOTONIC);
		pthread_mutex_lock(&h->lock);
		t->next = h->conns.next;
		t->prev = &h->conns;
		h->conns.next->prev = t;
		h->conns.next = t;
		pthread_mutex_unlock(&h->lock);
		*socket_context = t;
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && t) {
		pthread_mutex_lock(&h->lock);
		t->prev->next = t->next;
		t->next->prev = t->prev;
		pthread_mutex_unlock(&h->lock);
		free(t);
		*socket_context = NULL;
	}
}

/* A request's head has arrived (busy) or its response is done (waiting for the next head from now). */
static void track_busy(struct httpd *h, struct MHD_Connection *c, bool busy)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct tracked *t = ci ? ci->socket_context : NULL;
	if (!t)
		return;
	pthread_mutex_lock(&h->lock);
	t->busy = busy;
	t->since_ns = now_ns(CLOCK_MONOTONIC);
	pthread_mutex_unlock(&h->lock);
}

/* Every GUARD_PERIOD_MS: shut down the connections that have waited more than HEAD_DEADLINE_S for a request's head.
 * libmicrohttpd then reads the end of the stream and closes them. */
static void *guard_main(void *arg)
{
	struct httpd *h = arg;
	struct pollfd pfd = {.fd = h->guard_stop[0], .events = POLLIN};
	while (poll(&pfd, 1, GUARD_PERIOD_MS) == 0 || (pfd.revents == 0)) {
		uint64_t now = now_ns(CLOCK_MONOTONIC);
		unsigned long n = 0;
		pthread_mutex_lock(&h->lock);
		for (struct tracked *t = h->conns.next; t != &h->conns; t = t->next)
			if (!t->busy && !t->shut && now - t->since_ns > (uint64_t)HEAD_DEADLINE_S * NSEC_PER_SEC) {
				shutdown(t->fd, SHUT_RDWR);
				t->shut = true;
				n++;
			}
		__atomic_add_fetch(&h->L->http_head_timeouts, n, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&h->lock);
	}
	return NULL;
}

/* The query parameters of the endpoints, each parsed strictly (src/parsers/params.h): an unknown, repeated or
 * empty parameter, a NUL byte (%00) anywhere, or a value out of its range is answered 400 naming the parameter. */
enum param { P_WINDOW, P_SERVICE, P_FORMAT, P_KIND, P_FOCUS, P_SECONDS, P_HZ, P_NR };
static const char *const param_names[P_NR + 1] = {"window", "service", "format", "kind", "focus", "seconds", "hz", NULL};
#define P_BIT(p) (1u << (p))
#define P_PROFILE (P_BIT(P_WINDOW) | P_BIT(P_SERVICE) | P_BIT(P_FORMAT) | P_BIT(P_FOCUS) | P_BIT(P_SECONDS) | P_BIT(P_HZ))
#define P_FLAMEGRAPH (P_BIT(P_WINDOW) | P_BIT(P_SERVICE) | P_BIT(P_KIND) | P_BIT(P_FOCUS) | P_BIT(P_SECONDS) | P_BIT(P_HZ))

struct query {
	unsigned allowed, seen;
	const char *v[P_NR];
	size_t len[P_NR];
	char bad[200]; /* the first problem, "" when none */
};

/* A parameter's name as it may be echoed in an error: printable, short; else a placeholder. */
static const char *echo_name(const char *key, size_t len)
{
	return param_text(key, len, 32) && strlen(key) == len ? key : "(unprintable)";
}

static enum MHD_Result collect_param(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
				     const char *value, size_t value_size)
{
	struct query *q = cls;
	(void)kind;
	int p = param_choice(key, key_size, param_names);
	if (p < 0 || !(q->allowed & P_BIT(p)))
		snprintf(q->bad, sizeof(q->bad), "unknown parameter '%s'%s\n", echo_name(key, key_size),
			 q->allowed ? "" : ": this endpoint takes none");
	else if (q->seen & P_BIT(p))
		snprintf(q->bad, sizeof(q->bad), "bad %s: given more than once\n", param_names[p]);
	else if (!value || !value_size)
		snprintf(q->bad, sizeof(q->bad), "bad %s: empty\n", param_names[p]);
	else if (strlen(value) != value_size)
		snprintf(q->bad, sizeof(q->bad), "bad %s: holds a NUL byte\n", param_names[p]);
	else {
		q->seen |= P_BIT(p);
		q->v[p] = value;
		q->len[p] = value_size;
		return MHD_YES;
	}
	return MHD_NO; /* the first problem is the one reported */
}

/* The request's query parameters into q, checked against the endpoint's allowed set; false with q->bad set. */
static bool parse_query(struct MHD_Connection *c, unsigned allowed, struct query *q)
{
	memset(q, 0, sizeof(*q));
	q->allowed = allowed;
	MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, collect_param, q);
	return !q->bad[0];
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
				     unsigned long secs, unsigned long rate, void **con_cls)
{
	char err[200], text[120];
	enum MHD_Result ret;
	unsigned retry_s = 1;
	if (h->auth && h->L->opt->auth_scope == AUTH_SCOPE_SESSIONS && !authenticated(h, c, &ret))
		return ret;
	if (!session_rate_ok(h, &retry_s)) {
		__atomic_add_fetch(&h->L->http_session_rate, 1, __ATOMIC_RELAXED);
		snprintf(text, sizeof(text), "too many profiling sessions: at most %u a minute (--sessions-per-minute)\n",
			 h->session_cap);
		return reply_retry(c, 429, text, retry_s);
	}
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
	session_started(h);
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
	(void)toe;
	track_busy(h, c, false);
	if (!*con_cls || *con_cls == (void *)1 || *con_cls == REJECTED)
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
	static const char *const formats[] = {"pprof", "folded", NULL}, *const kinds[] = {"cpu", "offcpu", NULL};
	struct profile_request q = {.kind = PROFILE_CPU, .format = PROFILE_FORMAT_PPROF, .window_s = 60};
	struct query a;
	char err[200];
	bool svg = !strcmp(url, "/flamegraph.svg");
	unsigned long n, secs = 0, rate = 99;
	int i;

	if (!parse_query(c, svg ? P_FLAMEGRAPH : P_PROFILE, &a))
		return reply_text(c, 400, a.bad);
	if (!strcmp(url, "/debug/pprof/offcpu"))
		q.kind = PROFILE_OFFCPU;
	if (svg)
		q.format = PROFILE_FORMAT_SVG;
	if (a.v[P_KIND]) {
		if ((i = param_choice(a.v[P_KIND], a.len[P_KIND], kinds)) < 0)
			return reply_text(c, 400, "bad kind: expected cpu or offcpu\n");
		q.kind = i ? PROFILE_OFFCPU : PROFILE_CPU;
	}
	if (a.v[P_FORMAT]) {
		if ((i = param_choice(a.v[P_FORMAT], a.len[P_FORMAT], formats)) < 0)
			return reply_text(c, 400, "bad format: expected pprof or folded\n");
		q.format = i ? PROFILE_FORMAT_FOLDED : PROFILE_FORMAT_PPROF;
	}
	if (a.v[P_SERVICE]) {
		if (!param_name(a.v[P_SERVICE], a.len[P_SERVICE], 31))
			return reply_text(c, 400, "bad service: expected a service name, 1-31 of [A-Za-z0-9_.-]\n");
		q.service = a.v[P_SERVICE]; /* libmicrohttpd's copy, whole (no NUL inside: collect_param) */
	}
	if (a.v[P_FOCUS]) {
		if (!param_text(a.v[P_FOCUS], a.len[P_FOCUS], 256))
			return reply_text(c, 400, "bad focus: expected a regular expression of 1 .. 256 characters, "
						  "no control characters\n");
		q.focus = a.v[P_FOCUS];
	}
	if (a.v[P_WINDOW] && a.v[P_SECONDS])
		return reply_text(c, 400, "bad window: window (the continuous profile) and seconds (an on-demand session) "
					  "exclude each other\n");
	if (a.v[P_HZ] && !a.v[P_SECONDS])
		return reply_text(c, 400, "bad hz: only with seconds (an on-demand session)\n");
	if (a.v[P_SECONDS]) {
		if (param_decimal(a.v[P_SECONDS], a.len[P_SECONDS], 1, 600, &secs))
			return reply_text(c, 400, "bad seconds: expected a whole number 1 .. 600\n");
		if (a.v[P_HZ] && param_decimal(a.v[P_HZ], a.len[P_HZ], 1, 1000, &rate))
			return reply_text(c, 400, "bad hz: expected a whole number 1 .. 1000\n");
		return start_session(h, c, &q, secs, rate, con_cls);
	}
	if (a.v[P_WINDOW]) {
		if (param_duration(a.v[P_WINDOW], a.len[P_WINDOW], 1, 600, &n))
			return reply_text(c, 400, "bad window: expected 1s .. 10m, e.g. 90s or 5m\n");
		q.window_s = (unsigned)n;
	}
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
	if (*con_cls == REJECTED) /* answered by uri_check() */
		return MHD_NO;
	if (!*con_cls) { /* first call: headers only */
		*con_cls = (void *)1;
		track_busy(h, c, true);
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
	enum MHD_Result ret;
	if (url_needs_auth(h, url) && !authenticated(h, c, &ret))
		return ret;
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return reply_text(c, 405, "method not allowed: use GET\n");
	if (!is_profile_url(url)) {
		struct query a;
		if (!parse_query(c, 0, &a))
			return reply_text(c, 400, a.bad);
	}
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
	if (is_profile_url(url))
		return serve_profile(h, c, url, con_cls);
	if (!strcmp(url, "/"))
		return reply_text(c, 200, index_page);
	return reply_text(c, 404, "not found: see / for the endpoints\n");
}

/* Requests whose line is longer, or that carry more query parameters, are refused before libmicrohttpd parses their
 * arguments: libmicrohttpd 0.9.75 keeps each parameter in a 32 KiB per-connection pool and, when that overflows,
 * logs a 431 it cannot send and holds the socket until its timeout. */

/* Called with the request's raw URI, before its arguments are parsed: an oversized one is answered 414 straight on
 * the socket (nothing else has been written on it for this request) and the connection is closed. Its return
 * value is the request's first *con_cls. */
static void *uri_check(void *cls, const char *uri, struct MHD_Connection *c)
{
	static const char body[] = "request URI too long: at most " STR(URI_MAX) " bytes and " STR(URI_PARAMS_MAX)
				   " query parameters\n";
	size_t len = strlen(uri), params = 0;
	const char *qm = strchr(uri, '?');
	struct httpd *h = cls;
	for (const char *p = qm; p && *p; p++)
		params += *p == '&' || *p == '?';
	if (len <= URI_MAX && params <= URI_PARAMS_MAX)
		return NULL;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci) {
		char head[200];
		int n = snprintf(head, sizeof(head),
				 "HTTP/1.1 414 URI Too Long\r\nContent-Type: text/plain; charset=utf-8\r\n"
				 "Content-Length: %zu\r\nConnection: close\r\n\r\n", sizeof(body) - 1);
		const union MHD_ConnectionInfo *ti =
			h->tls ? MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION) : NULL;
		if (ti && ti->tls_session) {
			/* Over TLS, as records of the session (its handshake is over: the request line came through it),
			 * then its close_notify. */
			if (gnutls_record_send(ti->tls_session, head, (size_t)n) == n)
				(void)!gnutls_record_send(ti->tls_session, body, sizeof(body) - 1);
			gnutls_bye(ti->tls_session, GNUTLS_SHUT_WR);
		} else if (!h->tls && send(ci->connect_fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == n) {
			(void)!send(ci->connect_fd, body, sizeof(body) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		}
		shutdown(ci->connect_fd, SHUT_WR);
	}
	__atomic_add_fetch(&h->L->http_uri_too_long, 1, __ATOMIC_RELAXED);
	return REJECTED;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[256];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_warn("http", "%s", msg);
}

/* A warning, once at start, when the server listens beyond loopback without TLS or without authentication (basic
 * auth, or client certificates that are required and verified): what is missing is named. */
static void warn_if_exposed(const struct httpd *h, int listen_fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	bool loopback = false;
	if (getsockname(listen_fd, (struct sockaddr *)&ss, &len))
		return;
	if (ss.ss_family == AF_INET) {
		loopback = ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24 == 127;
	} else if (ss.ss_family == AF_INET6) {
		const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
		loopback = IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	bool mtls = h->web && h->web->client_auth == CLIENT_AUTH_REQUIRE_AND_VERIFY;
	bool auth = mtls || (h->auth && h->L->opt->auth_scope == AUTH_SCOPE_ALL);
	if (loopback || (h->tls && auth))
		return;
	const char *what = !auth && h->auth ? "authentication of /metrics and /status (--auth-scope is not all)"
					    : "authentication";
	log_warn("http_exposed",
		 "listening on a non-loopback address without %s%s%s: %s; see --web-config (docs/security.md)",
		 h->tls ? "" : "TLS", !h->tls && !auth ? " and without " : "", auth ? "" : what,
		 !auth ? "anyone who can reach it can read what it serves"
		       : "what is sent, credentials included, can be read on the way");
}

/* libmicrohttpd's TLS options from the web config (an empty list without TLS). */
static void tls_options(const struct web_config *wc, struct MHD_OptionItem *o)
{
	int n = 0;
	if (wc && wc->tls) {
		o[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, wc->key_pem};
		o[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, wc->cert_pem};
		o[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)wc->priorities};
		if (wc->client_ca_pem)
			o[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, wc->client_ca_pem};
	}
	o[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
}

struct httpd *httpd__start(struct loupe *L, int listen_fd)
{
	const struct web_config *wc = L->opt->web;
	struct MHD_OptionItem tls_opts[5];
	struct httpd *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->L = L;
	h->web = wc;
	h->tls = wc && wc->tls;
	pthread_mutex_init(&h->lock, NULL);
	h->conns.next = h->conns.prev = &h->conns;
	if (h->tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		log_error("http_tls", "this libmicrohttpd has no TLS support: cannot serve the web config's certificate");
		errno = ENOTSUP;
		goto fail;
	}
	if (wc && wc->nusers && !(h->auth = basic_auth__new(wc)))
		goto fail;
	if ((h->session_cap = L->opt->sessions_per_minute) &&
	    !(h->session_starts = calloc(h->session_cap, sizeof(*h->session_starts))))
		goto fail;
	if (pipe2(h->guard_stop, O_CLOEXEC))
		goto fail;
	warn_if_exposed(h, listen_fd);
	tls_options(wc, tls_opts);
	h->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
					  MHD_ALLOW_SUSPEND_RESUME | (h->tls ? MHD_USE_TLS : 0),
				  0, NULL, NULL, handle, h,
				  /* first, so that every message goes through it (libmicrohttpd warns otherwise) */
				  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_NOTIFY_COMPLETED, completed, h,
				  MHD_OPTION_URI_LOG_CALLBACK, uri_check, h, MHD_OPTION_LISTEN_SOCKET, listen_fd,
				  MHD_OPTION_NOTIFY_CONNECTION, notify_connection, h, MHD_OPTION_CONNECTION_TIMEOUT,
				  (unsigned)30, MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTIONS_MAX,
				  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)PER_CLIENT, MHD_OPTION_ARRAY, tls_opts,
				  MHD_OPTION_END);
	if (!h->mhd) {
		close(h->guard_stop[0]);
		close(h->guard_stop[1]);
		errno = EIO;
		goto fail;
	}
	if (pthread_create(&h->guard, NULL, guard_main, h))
		log_warn("http_guard", "cannot start the connection guard: request heads are not timed");
	else
		h->guard_running = true;
	return h;
fail:
	basic_auth__free(h->auth);
	free(h->session_starts);
	pthread_mutex_destroy(&h->lock);
	free(h);
	return NULL; /* errno set by what failed */
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
	if (h->guard_running) {
		(void)!write(h->guard_stop[1], "x", 1);
		pthread_join(h->guard, NULL);
	}
	close(h->guard_stop[0]);
	close(h->guard_stop[1]);
	MHD_stop_daemon(h->mhd);
	pthread_mutex_destroy(&h->lock);
	basic_auth__free(h->auth);
	free(h->session_starts);
	free(h);
}

const char *httpd__scheme(const struct httpd *h)
{
	return h && h->tls ? "https" : "http";
}
