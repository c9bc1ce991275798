/* SPDX-License-Identifier: BSD-2-Clause */
/* Server-side HTTP/1.x (RFC 9112) from truncated views of a connection's read and write syscalls.
 *
 * The payload capture hands over, per call, the first `cap` bytes of the `len` bytes the syscall transferred.
 * http_conn_feed() follows both directions of one connection with bounded memory (one struct http_conn, no
 * allocation) and reports, through a sink:
 *  - REQUEST_START when a request line has been read (method, route template, start = ts of the read that
 *    carried the request's first byte);
 *  - RESPONSE when the final status line of its response has been written (status, end = ts of the write that
 *    carried the status line's first byte). Responses are matched to requests first in, first out
 *    (RFC 9112 section 9.3.2, pipelining); interim 1xx responses (100 Continue, 103) are not final;
 *  - REQUEST_ABORT for a started request that will get no RESPONSE (connection closed or no longer parsed,
 *    status never captured). Every REQUEST_START is followed by exactly one RESPONSE or REQUEST_ABORT, so
 *    an active-requests gauge stays balanced;
 *  - UPGRADE after the RESPONSE 101 to a WebSocket upgrade request (RFC 6455 section 4): the connection leaves
 *    HTTP; `offset` says where the WebSocket stream begins in this call (the rest goes to ws_conn_feed());
 *  - NOT_HTTP when the connection is not (or no longer) HTTP/1.x: TLS, the HTTP/2 preface (another major
 *    version), a first line that is not a request line, the server speaking first, a 101 to another protocol,
 *    a CONNECT tunnel. The caller should stop capturing it.
 *
 * Truncation. Bytes beyond the capture are never guessed at, only counted:
 *  - bodies and chunk data are skipped by their length, captured or not (RFC 9112 section 6.3, 7.1);
 *  - when the capture hides part of a message head (request line, headers, chunk-size line), that direction's
 *    framing is unknown and it "resynchronises" at the start of a later call: for requests, a call that begins
 *    with a plausible request line; for responses, a write that begins with "HTTP/1.x NNN" while a request is
 *    pending. Bytes that only look like a message inside a body can then be mistaken for one; with known
 *    framing they never are;
 *  - a request head cut after its method and part of its target still starts a request (the route's cut
 *    segment becomes "..."); a request that begins wholly in uncaptured bytes is queued unseen so that later
 *    responses still match the right requests, and its own response is not reported;
 *  - a 101 response whose headers are cut is taken as a WebSocket upgrade unless something said otherwise,
 *    and the WebSocket stream is taken to begin with the next write.
 * struct http_stats counts each of these (HTTP_AN_*).
 *
 * Not thread-safe; one struct per connection. All strings in events are valid only during the callback. */
#ifndef LOUPE_HTTP_H
#define LOUPE_HTTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parsers/flow.h"
#include "parsers/route.h"


#define HTTP_LINE_MAX 512	/* request line / request header line carry-over */
#define HTTP_RESP_LINE_MAX 128	/* status line / response header line carry-over */
#define HTTP_PIPELINE_MAX 8	/* requests awaiting a response, with method and route */
#define HTTP_METHOD_MAX 24	/* a longer first token is not a method */
#define HTTP_UNSYNCED_MAX 64	/* calls without framing before a request was ever seen: then NOT_HTTP */
#define HTTP_ROUTE_UNKNOWN "_unknown"	/* route of an upgrade whose request was not seen */

/* http_conn_init() flags. */
#define HTTP_CONN_MIDSTREAM 0x1	/* capture began after the connection did: find the first message boundary */

/* RFC 9110 section 9 methods, as OpenTelemetry's http.request.method knows them; others are "_OTHER". */
enum http_method {
	HTTP_GET,
	HTTP_HEAD,
	HTTP_POST,
	HTTP_PUT,
	HTTP_DELETE,
	HTTP_CONNECT,
	HTTP_OPTIONS,
	HTTP_TRACE,
	HTTP_PATCH,
	HTTP_OTHER,
};

enum http_event_type {
	HTTP_EV_REQUEST_START,
	HTTP_EV_RESPONSE,
	HTTP_EV_REQUEST_ABORT,
	HTTP_EV_UPGRADE,
	HTTP_EV_NOT_HTTP,
};

enum http_not_http {
	HTTP_NOT_TLS,		/* a TLS record header (0x16 0x03 ...) */
	HTTP_NOT_VERSION,	/* another major version than 1: the HTTP/2 preface "PRI * HTTP/2.0" */
	HTTP_NOT_GARBAGE,	/* the first bytes are not a request line */
	HTTP_NOT_SERVER_FIRST,	/* the process wrote before it read: not an HTTP server connection */
	HTTP_NOT_UPGRADE_OTHER,	/* 101 Switching Protocols to something other than WebSocket */
	HTTP_NOT_TUNNEL,	/* 2xx to CONNECT: a tunnel (RFC 9110 section 9.3.6) */
	HTTP_NOT_UNSYNCED,	/* no request line yet, framing lost, and none within HTTP_UNSYNCED_MAX calls */
	HTTP_NOT_MAX,
};

/* Parser anomalies, for loupe_http_parser_anomalies_total{kind}-style counters. */
enum http_anomaly {
	HTTP_AN_REQ_DESYNC,	/* bytes at a request boundary were not a request line */
	HTTP_AN_RESP_DESYNC,	/* bytes at a response boundary were not a status line */
	HTTP_AN_REQ_TRUNCATED,	/* a request head was cut by the capture: framing lost */
	HTTP_AN_RESP_TRUNCATED,	/* a response head or chunk header was cut: framing lost */
	HTTP_AN_REQ_UNSEEN,	/* a request began in uncaptured bytes: queued unseen */
	HTTP_AN_UNMATCHED,	/* a response with no request pending */
	HTTP_AN_STATUS_UNKNOWN,	/* a response whose status line was not captured: its request aborted */
	HTTP_AN_PIPELINE_FULL,	/* a request past HTTP_PIPELINE_MAX pending ones: not reported */
	HTTP_AN_EARLY_DATA,	/* bytes read while an upgrade awaited its response (RFC 6455 4.1): ignored */
	HTTP_AN_RESYNC,		/* framing found again at the start of a call */
	HTTP_AN_RECORDS_LOST,	/* http_conn_lost(): the capture dropped calls */
	HTTP_AN_MAX,
};

struct http_stats {
	uint64_t n[HTTP_AN_MAX];
};

struct http_event {
	enum http_event_type type;
	const char *method;	/* START, RESPONSE, ABORT, UPGRADE: "GET" ... "PATCH" or "_OTHER" */
	const char *route;	/* START, RESPONSE, ABORT, UPGRADE: route template (route.h) */
	int status;		/* RESPONSE: final status code, 100-999 */
	uint64_t start_ns;	/* ts of the read carrying the request's first byte */
	uint64_t end_ns;	/* RESPONSE, UPGRADE: ts of the write carrying the status line; ABORT: now */
	size_t offset;		/* UPGRADE: bytes of this call before the WebSocket stream (<= len) */
	bool in_lost;		/* UPGRADE: client bytes were dropped while the upgrade was pending: call
				 * ws_conn_lost(FLOW_IN) so the WebSocket parser finds a frame boundary first */
	enum http_not_http reason;	/* NOT_HTTP */
};

struct http_sink {
	void (*event)(void *ctx, const struct http_event *ev);	/* may be NULL */
	void *ctx;
	struct http_stats *stats;	/* may be NULL */
	struct route_stats *routes;	/* redactions made while templating routes; may be NULL */
};

/* Results of http_conn_feed(). Once UPGRADED or NOT_HTTP, later calls do nothing and return the same. */
enum {
	HTTP_FEED_OK = 0,
	HTTP_FEED_UPGRADED = 1,
	HTTP_FEED_NOT_HTTP = 2,
};

/* Private: one direction's parser. */
struct http_side {
	uint8_t state;
	uint8_t hflags;		/* facts from the headers read so far */
	uint8_t overflow;	/* the current line outgrew its buffer */
	uint8_t tentative;	/* a status line guessed at after lost framing */
	uint16_t linelen;
	int16_t status;		/* response: status code of the response being read, or 0 */
	uint64_t cl;		/* Content-Length of the message being read */
	uint64_t remaining;	/* body or chunk bytes still to skip */
	uint64_t first_ns;	/* ts of the call with the current message's first byte */
};

/* Private: a request awaiting its response. */
struct http_pending {
	uint64_t start_ns;
	uint32_t seq;
	uint8_t method;
	uint8_t flags;
	char route[ROUTE_MAX_LEN + 1];
};

/* One connection. Fields are private: use the functions below. About 1.9 KiB. */
struct http_conn {
	struct http_side rq, rs;
	char rq_line[HTTP_LINE_MAX];
	char rs_line[HTTP_RESP_LINE_MAX];
	struct http_pending q[HTTP_PIPELINE_MAX];
	uint8_t qhead, qlen;
	uint8_t mode;
	uint8_t flags;
	uint8_t matched;	/* the response being read belongs to the queue's head */
	uint32_t unseen;	/* requests after a full queue, not yet queued */
	uint32_t seq, cur_seq;	/* the request whose head is being read, by push order */
	uint32_t unsynced_calls;
};

void http_conn_init(struct http_conn *c, unsigned flags);
/* Feed one syscall's view: dir, the captured bytes data[0..cap), the bytes transferred len (>= cap; cap is
 * clamped to len), and the call's timestamp. Returns HTTP_FEED_*. */
int http_conn_feed(struct http_conn *c, enum flow_dir dir, const uint8_t *data, size_t cap, size_t len,
		   uint64_t ts_ns, const struct http_sink *sink);
/* Calls of this connection were lost before they reached the parser (ring buffer full, a record dropped):
 * framing is looked for again in both directions, as after truncation, and started requests are aborted,
 * since responses can no longer be matched to them. */
void http_conn_lost(struct http_conn *c, uint64_t ts_ns, const struct http_sink *sink);
/* The connection closed: every started request without a response is aborted. Later feeds do nothing. */
void http_conn_close(struct http_conn *c, uint64_t ts_ns, const struct http_sink *sink);
/* Requests started and not yet answered (for tests and gauges). */
size_t http_conn_pending(const struct http_conn *c);

const char *http_method_name(enum http_method m);
/* The method token m[0..n) normalised (RFC 9110 section 9.1: methods are case-sensitive). */
enum http_method http_method_parse(const char *m, size_t n);
const char *http_not_http_name(enum http_not_http r);
const char *http_anomaly_name(enum http_anomaly a);

#endif
