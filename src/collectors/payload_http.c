// SPDX-License-Identifier: BSD-2-Clause
/* The HTTP/1.x and WebSocket rows of the payload protocol table (src/collectors/payload_int.h):
 * src/parsers/http.c and src/parsers/websocket.c fed with a connection's calls, their events turned into metrics.
 *
 * Privacy (DESIGN.md section 3): the only text that leaves is a route template (src/parsers/route.c), admitted per
 * service as follows: a template becomes a label value once a response with a status below 300 (1xx, 2xx) or from
 * 500 up was seen for it, and at most --route-budget templates per service are admitted (then "_other"). A 3xx or 4xx
 * answer to a template not admitted yet is labelled "_unmatched": paths that only ever got 404 or a redirect
 * (scanners, typos, guessed secrets, trailing-slash redirects) never become labels and never use up the budget. */
#include "collectors/payload_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* OpenTelemetry's advice for http.server.request.duration. */
static const double request_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10};
static const double session_bounds[] = {0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600};
static const double size_bounds[] = {16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576};

/* The label value for a route template answered with status (see the header comment). */
static const char *route_label(struct payload *p, struct svc_stats *st, const char *route, int status)
{
	bool oom, added;
	const char *slot = label_set__find(&st->routes, route, &oom);
	if (oom)
		return REGISTRY_OTHER;
	if (slot)
		return slot;
	if (status >= 300 && status < 500) {
		p->route_unmatched++;
		return ROUTE_UNMATCHED;
	}
	slot = label_set__admit(&st->routes, route, p->L->opt->route_budget, &added);
	if (!slot)
		p->route_budget_hits++;
	return slot ? slot : REGISTRY_OTHER;
}

static void http_event(void *ctx, const struct http_event *ev);
static void ws_event(void *ctx, const struct ws_event *ev);

static struct http_sink http_sink_of(struct row_call *rc)
{
	return (struct http_sink){.event = http_event, .ctx = rc, .stats = &rc->p->svc[rc->c->service].http,
				  .routes = &rc->p->route_stats};
}

static struct ws_sink ws_sink_of(struct row_call *rc)
{
	return (struct ws_sink){.event = ws_event, .ctx = rc, .stats = &rc->p->svc[rc->c->service].ws};
}

/* Add v to the connection's active requests of method (the series memoised per connection). */
static void active_add(struct payload *p, struct conn *c, const char *svc, const char *method, double v)
{
	if (!c->active || c->active_method != method) {
		const char *k[] = {svc, method};
		c->active = family__series(p->active_requests, k);
		c->active_method = c->active ? method : NULL;
	}
	if (c->active)
		family__add_series(p->active_requests, c->active, v);
}

static void http_event(void *ctx, const struct http_event *ev)
{
	struct row_call *rc = ctx;
	struct payload *p = rc->p;
	struct conn *c = rc->c;
	struct svc_stats *st = &p->svc[c->service];
	const char *svc = payload_service(p, c->service);
	char code[8];

	switch (ev->type) {
	case HTTP_EV_REQUEST_START:
		if (!c->seen_request) {
			c->seen_request = 1;
			st->classes[CLASS_HTTP]++;
		}
		active_add(p, c, svc, ev->method, 1);
		break;
	case HTTP_EV_RESPONSE: {
		active_add(p, c, svc, ev->method, -1);
		snprintf(code, sizeof(code), "%d", ev->status);
		const char *v[] = {svc, ev->method, route_label(p, st, ev->route, ev->status), code};
		family__observe(p->req_duration, v, ns_to_seconds(ev->end_ns - ev->start_ns));
		break;
	}
	case HTTP_EV_REQUEST_ABORT:
		active_add(p, c, svc, ev->method, -1);
		st->aborted++;
		break;
	case HTTP_EV_UPGRADE: /* only while a call is fed: http_feed() returns the hand-over */
		if (!rc->up)
			break;
		snprintf(rc->up->route, sizeof(rc->up->route), "%s", route_label(p, st, ev->route, 101));
		rc->up->offset = ev->offset;
		rc->up->in_lost = ev->in_lost;
		rc->up->ts_ns = ev->end_ns;
		break;
	case HTTP_EV_NOT_HTTP:
		st->classes[ev->reason == HTTP_NOT_TLS ? CLASS_TLS
			    : ev->reason == HTTP_NOT_VERSION ? CLASS_HTTP2
							     : CLASS_UNKNOWN]++;
		c->stop = 1;
		break;
	}
}

static void ws_event(void *ctx, const struct ws_event *ev)
{
	struct row_call *rc = ctx;
	struct payload *p = rc->p;
	const char *svc = payload_service(p, rc->c->service);
	const char *dir = ev->dir == FLOW_IN ? "received" : "sent";
	char code[8];

	switch (ev->type) {
	case WS_EV_MESSAGE: {
		const char *op = ws_opcode_name(ev->opcode);
		const char *v[] = {svc, ev->route, dir, op ? op : "reserved"};
		family__add(p->ws_messages, v, 1);
		const char *vs[] = {svc, ev->route, dir};
		family__observe(p->ws_size, vs, (double)ev->size);
		break;
	}
	case WS_EV_CLOSE: {
		if (ev->code == WS_CLOSE_UNKNOWN)
			snprintf(code, sizeof(code), "unknown");
		else
			snprintf(code, sizeof(code), "%u", ev->code);
		const char *v[] = {svc, ev->route, ev->dir == FLOW_IN ? "client" : "server", code};
		family__add(p->ws_closes, v, 1);
		break;
	}
	case WS_EV_END: {
		const char *v[] = {svc, ev->route};
		family__add(p->ws_active, v, -1);
		family__observe(p->ws_duration, v, ns_to_seconds(ev->duration_ns));
		break;
	}
	}
}

/* Only by hand-over, from HTTP's upgrade: the session opens where the 101 response ended. */
static int ws_start(struct payload *p, struct conn *c, const struct handoff *from)
{
	if (!from)
		return -EINVAL;
	struct row_call rc = {p, c, NULL};
	p->svc[c->service].classes[CLASS_WEBSOCKET]++;
	ws_conn_init(&c->u.ws, from->route, from->ts_ns);
	const char *lv[] = {payload_service(p, c->service), from->route};
	family__add(p->ws_opened, lv, 1);
	family__add(p->ws_active, lv, 1);
	if (from->in_lost) {
		struct ws_sink s = ws_sink_of(&rc);
		ws_conn_lost(&c->u.ws, FLOW_IN, &s);
	}
	return 0;
}

static int ws_feed(struct payload *p, struct conn *c, const struct view *v, struct handoff *up)
{
	struct row_call rc = {p, c, up};
	struct ws_sink s = ws_sink_of(&rc);
	ws_conn_feed(&c->u.ws, v->dir, v->data, v->cap, v->len, p->now_ns, &s);
	return PROTO_WEBSOCKET;
}

static void ws_lost(struct payload *p, struct conn *c)
{
	struct row_call rc = {p, c, NULL};
	struct ws_sink s = ws_sink_of(&rc);
	ws_conn_lost(&c->u.ws, FLOW_IN, &s);
	ws_conn_lost(&c->u.ws, FLOW_OUT, &s);
}

static void ws_end(struct payload *p, struct conn *c, uint64_t ts_ns)
{
	struct row_call rc = {p, c, NULL};
	struct ws_sink s = ws_sink_of(&rc);
	ws_conn_close(&c->u.ws, ts_ns, &s);
}

static int http_start(struct payload *p, struct conn *c, const struct handoff *from)
{
	http_conn_init(&c->u.http, c->midstream ? HTTP_CONN_MIDSTREAM : 0);
	return 0;
}

/* On an upgrade the connection leaves HTTP: the rest of this call is the WebSocket stream's beginning (*up). */
static int http_feed(struct payload *p, struct conn *c, const struct view *v, struct handoff *up)
{
	struct row_call rc = {p, c, up};
	struct http_sink s = http_sink_of(&rc);
	int r = http_conn_feed(&c->u.http, v->dir, v->data, v->cap, v->len, p->now_ns, &s);
	if (r == HTTP_FEED_NOT_HTTP)
		return -1;
	return r == HTTP_FEED_UPGRADED ? PROTO_WEBSOCKET : PROTO_HTTP;
}

static void http_lost(struct payload *p, struct conn *c)
{
	struct row_call rc = {p, c, NULL};
	struct http_sink s = http_sink_of(&rc);
	http_conn_lost(&c->u.http, p->now_ns, &s);
}

static void http_end(struct payload *p, struct conn *c, uint64_t ts_ns)
{
	struct row_call rc = {p, c, NULL};
	struct http_sink s = http_sink_of(&rc);
	http_conn_close(&c->u.http, ts_ns, &s);
}

/* HTTP claims every fresh connection no row before it recognised; mid-stream, a call that begins with a request
 * line's method and a space (RFC 9110 token characters). */
static bool http_detect(struct conn *c, const struct view *v)
{
	if (!c->midstream)
		return true;
	size_t i = 0;
	while (i < v->cap && i < HTTP_METHOD_MAX && v->data[i] >= 'A' && v->data[i] <= 'Z')
		i++;
	return i > 0 && i < v->cap && v->data[i] == ' ';
}

/* The families of both rows (HTTP and the WebSocket sessions it hands over). */
static int http_open(struct payload *p, struct registry *reg)
{
	static const char *const l_req[] = {"service_name", "http_request_method", "http_route",
					    "http_response_status_code", NULL};
	static const char *const l_active[] = {"service_name", "http_request_method", NULL};
	static const char *const l_route[] = {"service_name", "http_route", NULL};
	static const char *const l_msg[] = {"service_name", "http_route", "direction", "opcode", NULL};
	static const char *const l_size[] = {"service_name", "http_route", "direction", NULL};
	static const char *const l_close[] = {"service_name", "http_route", "sender", "code", NULL};
	p->req_duration = registry__family(
		reg, "http_server_request_duration_seconds",
		"HTTP/1.x server requests, from the read of the request's first byte to the write of the response's "
		"status line.",
		METRIC_HISTOGRAM, l_req, 0, 0);
	p->active_requests = registry__family(reg, "http_server_active_requests",
					      "HTTP requests read and not answered yet.", METRIC_GAUGE, l_active, 0, 0);
	p->ws_opened = registry__family(reg, "loupe_websocket_connections_total",
					"WebSocket sessions opened (HTTP upgrade answered with 101).", METRIC_COUNTER,
					l_route, 0, 0);
	p->ws_active = registry__family(reg, "loupe_websocket_connections_active", "WebSocket sessions open now.",
					METRIC_GAUGE, l_route, 0, 0);
	p->ws_duration = registry__family(reg, "loupe_websocket_connection_duration_seconds",
					  "WebSocket session lifetime, from the 101 response to the connection's close.",
					  METRIC_HISTOGRAM, l_route, 0, 0);
	p->ws_messages = registry__family(
		reg, "loupe_websocket_messages_total",
		"WebSocket messages (fragments joined) and control frames, by direction (received from or sent to "
		"the client) and opcode.",
		METRIC_COUNTER, l_msg, 0, 0);
	p->ws_size = registry__family(reg, "loupe_websocket_message_size_bytes",
				      "WebSocket message payload size (compressed size when permessage-deflate is on).",
				      METRIC_HISTOGRAM, l_size, 0, 0);
	p->ws_closes = registry__family(reg, "loupe_websocket_closes_total",
					"WebSocket close frames by sender and status code (1005: none given; unknown: "
					"not captured).",
					METRIC_COUNTER, l_close, 0, 0);
	if (!p->req_duration || !p->active_requests || !p->ws_opened || !p->ws_active || !p->ws_duration ||
	    !p->ws_messages || !p->ws_size || !p->ws_closes)
		return -ENOMEM;
	family__set_buckets(p->req_duration, request_bounds, ARRAY_SIZE(request_bounds));
	family__set_buckets(p->ws_duration, session_bounds, ARRAY_SIZE(session_bounds));
	family__set_buckets(p->ws_size, size_bounds, ARRAY_SIZE(size_bounds));
	return 0;
}

static int http_collect(struct payload *p, struct registry *reg)
{
	static const char *const l_svc_kind[] = {"service_name", "kind", NULL};
	static const char *const l_svc[] = {"service_name", NULL};
	struct metric_family *anomalies = registry__family(
		reg, "loupe_http_parser_anomalies_total",
		"HTTP framing the parser had to recover from (truncated heads, lost records, unmatched responses).",
		METRIC_COUNTER, l_svc_kind, 0, FAMILY_SNAPSHOT);
	struct metric_family *ws_errors =
		registry__family(reg, "loupe_websocket_protocol_errors_total",
				 "WebSocket frames breaking RFC 6455, and frame sync lost or found again.",
				 METRIC_COUNTER, l_svc_kind, 0, FAMILY_SNAPSHOT);
	struct metric_family *aborted = registry__family(
		reg, "loupe_http_requests_aborted_total",
		"HTTP requests read that got no response loupe saw (connection closed, status not captured).",
		METRIC_COUNTER, l_svc, 0, FAMILY_SNAPSHOT);
	if (!anomalies || !ws_errors || !aborted)
		return -ENOMEM;
	for (int s = 1; s <= p->L->opt->rules.nservices; s++) {
		const struct svc_stats *st = &p->svc[s];
		const char *svc = payload_service(p, (uint32_t)s);
		for (int k = 0; k < HTTP_AN_MAX; k++) {
			const char *v[] = {svc, http_anomaly_name(k)};
			family__add(anomalies, v, (double)st->http.n[k]);
		}
		for (int k = 0; k < WS_ERR_MAX; k++) {
			const char *v[] = {svc, ws_error_name(k)};
			family__add(ws_errors, v, (double)st->ws.errors[k]);
		}
		const char *vd[] = {svc, "desync"}, *vr[] = {svc, "resync"}, *v1[] = {svc};
		family__add(ws_errors, vd, (double)st->ws.desync);
		family__add(ws_errors, vr, (double)st->ws.resync);
		family__add(aborted, v1, (double)st->aborted);
	}
	return 0;
}

const struct proto http_proto = {
	.name = "http",
	.open = http_open,
	.collect = http_collect,
	.detect = http_detect,
	.start = http_start,
	.feed = http_feed,
	.lost = http_lost,
	.end = http_end,
};

/* Its families and counters are HTTP's (a session is an upgraded HTTP connection). */
const struct proto websocket_proto = {
	.name = "websocket",
	.start = ws_start,
	.feed = ws_feed,
	.lost = ws_lost,
	.end = ws_end,
};
