// SPDX-License-Identifier: BSD-2-Clause
/* RFC 6455 frame parser over truncated syscall views (see websocket.h for what it promises).
 *
 * Per direction: gather a frame header (2 to 14 bytes, possibly across calls), account for the frame, then
 * pass its payload by length, reading only the first two payload bytes of a close frame (its status code,
 * unmasked with the frame's key, section 5.3). */
#include "parsers/websocket.h"

#include <string.h>

enum { WS_HDR, WS_PAYLOAD, WS_DESYNC };

/* A frame header, decoded. */
struct frame {
	bool fin, masked;
	uint8_t rsv, opcode;
	uint64_t len;
	bool non_minimal, len_msb;
	size_t hdrlen;
};

static const char *const error_names[WS_ERR_MAX] = {
	[WS_ERR_RESERVED_OPCODE] = "reserved_opcode",
	[WS_ERR_RSV] = "reserved_bits",
	[WS_ERR_CONTROL_TOO_LONG] = "control_too_long",
	[WS_ERR_CONTROL_FRAGMENTED] = "control_fragmented",
	[WS_ERR_LENGTH] = "length",
	[WS_ERR_NON_MINIMAL] = "non_minimal_length",
	[WS_ERR_MASK] = "mask",
	[WS_ERR_UNEXPECTED_CONT] = "unexpected_continuation",
	[WS_ERR_INTERLEAVED] = "interleaved",
	[WS_ERR_AFTER_CLOSE] = "after_close",
	[WS_ERR_CLOSE_PAYLOAD] = "close_payload",
	[WS_ERR_CLOSE_CODE] = "close_code",
};

const char *ws_error_name(enum ws_error e)
{
	return (unsigned)e < WS_ERR_MAX ? error_names[e] : NULL;
}

const char *ws_opcode_name(unsigned opcode)
{
	switch (opcode) {
	case WS_OP_CONT:
		return "continuation";
	case WS_OP_TEXT:
		return "text";
	case WS_OP_BINARY:
		return "binary";
	case WS_OP_CLOSE:
		return "close";
	case WS_OP_PING:
		return "ping";
	case WS_OP_PONG:
		return "pong";
	default:
		return NULL;
	}
}

static bool opcode_known(unsigned op)
{
	return ws_opcode_name(op) != NULL;
}

static bool is_control(unsigned op)
{
	return op & 0x8; /* section 5.5: opcodes with the most significant bit set */
}

/* Bytes of header a frame needs once its first two bytes are known (section 5.2). */
static size_t header_need(uint8_t b1)
{
	uint8_t len7 = b1 & 0x7f;

	return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
}

static void frame_decode(const uint8_t *h, struct frame *fr)
{
	uint8_t len7 = h[1] & 0x7f;
	size_t i = 2;

	memset(fr, 0, sizeof(*fr));
	fr->fin = h[0] & 0x80;
	fr->rsv = (h[0] >> 4) & 0x7;
	fr->opcode = h[0] & 0xf;
	fr->masked = h[1] & 0x80;
	if (len7 < 126) {
		fr->len = len7;
	} else if (len7 == 126) {
		/* 16-bit length in network byte order; "the minimal number of bytes MUST be used" (section 5.2). */
		fr->len = (uint64_t)h[2] << 8 | h[3];
		fr->non_minimal = fr->len < 126;
		i = 4;
	} else {
		for (int k = 0; k < 8; k++)
			fr->len = fr->len << 8 | h[2 + k];
		fr->len_msb = fr->len >> 63; /* "the most significant bit MUST be 0" */
		fr->non_minimal = fr->len <= 0xffff;
		i = 10;
	}
	fr->hdrlen = i + (fr->masked ? 4 : 0);
}

/* Codes an endpoint may send in a close frame (section 7.4.1-7.4.2 and the IANA registry: 1012-1014). */
static bool close_code_valid(unsigned code)
{
	if (code >= 1000 && code <= 1014)
		return code != 1004 && code != 1005 && code != 1006;
	return code >= 3000 && code <= 4999;
}

struct wfeed {
	struct ws_conn *w;
	const struct ws_sink *sink;
	enum flow_dir dir;
	uint64_t ts;
};

static void emit(struct wfeed *f, struct ws_event *ev)
{
	ev->route = f->w->route;
	ev->dir = f->dir;
	ev->ts_ns = f->ts;
	if (f->sink && f->sink->event)
		f->sink->event(f->sink->ctx, ev);
}

static void error(struct wfeed *f, enum ws_error e)
{
	if (f->sink && f->sink->stats)
		f->sink->stats->errors[e]++;
}

static void emit_message(struct wfeed *f, uint8_t opcode, uint64_t size, bool compressed)
{
	struct ws_event ev = { .type = WS_EV_MESSAGE, .opcode = opcode, .size = size, .compressed = compressed };

	emit(f, &ev);
}

static void emit_close(struct wfeed *f, uint16_t code)
{
	struct ws_event ev = { .type = WS_EV_CLOSE, .opcode = WS_OP_CLOSE, .code = code };

	emit(f, &ev);
}

static void desync(struct wfeed *f, struct ws_dir *d)
{
	uint8_t closed = d->closed;

	memset(d, 0, sizeof(*d));
	d->state = WS_DESYNC;
	d->closed = closed;
	if (f->sink && f->sink->stats)
		f->sink->stats->desync++;
}

/* A control frame's header (ok: no reserved bit broken so far). Section 5.5: control frames are never fragmented
 * and carry at most 125 bytes; RFC 7692 section 6: RSV1 only on the first frame of a data message. */
static void control_frame(struct wfeed *f, struct ws_dir *d, const struct frame *fr, bool ok)
{
	if (!fr->fin) {
		error(f, WS_ERR_CONTROL_FRAGMENTED);
		return;
	}
	if (fr->len > 125) {
		error(f, WS_ERR_CONTROL_TOO_LONG);
		return;
	}
	if (fr->rsv & 0x4) {
		error(f, WS_ERR_RSV);
		ok = false;
	}
	if (!ok)
		return;
	emit_message(f, fr->opcode, fr->len, false);
	if (fr->opcode == WS_OP_CLOSE) {
		d->closed = 1;
		if (fr->len == 0) {
			emit_close(f, WS_CLOSE_NO_STATUS);
		} else if (fr->len == 1) {
			error(f, WS_ERR_CLOSE_PAYLOAD); /* section 5.5.1: a body starts with a 2-byte code */
			emit_close(f, WS_CLOSE_NO_STATUS);
		} else {
			d->want_code = 1;
		}
	}
}

/* A continuation frame's header: the message it continues grows, and ends with fin (section 5.4). */
static void continuation_frame(struct wfeed *f, struct ws_dir *d, const struct frame *fr, bool ok)
{
	if (d->skip_cont) {
		/* The rest of a message whose start was lost with the sync. */
		if (fr->fin)
			d->skip_cont = 0;
		return;
	}
	if (!d->in_msg) {
		error(f, WS_ERR_UNEXPECTED_CONT);
		return;
	}
	if (fr->rsv & 0x4) {
		error(f, WS_ERR_RSV);
		ok = false;
	}
	d->msg_size = d->msg_size + fr->len < d->msg_size ? UINT64_MAX : d->msg_size + fr->len;
	if (fr->fin) {
		d->in_msg = 0;
		if (ok)
			emit_message(f, d->msg_opcode, d->msg_size, d->msg_compressed);
	}
}

/* A text or binary frame's header: it starts a message, whole when fin is set. */
static void message_frame(struct wfeed *f, struct ws_dir *d, const struct frame *fr, bool ok)
{
	d->skip_cont = 0;
	if (d->in_msg) {
		error(f, WS_ERR_INTERLEAVED); /* the unfinished message is dropped */
		d->in_msg = 0;
	}
	if (d->closed) {
		error(f, WS_ERR_AFTER_CLOSE);
		return;
	}
	if (!ok)
		return;
	if (fr->fin) {
		emit_message(f, fr->opcode, fr->len, fr->rsv & 0x4);
	} else {
		d->in_msg = 1;
		d->msg_opcode = fr->opcode;
		d->msg_size = fr->len;
		d->msg_compressed = !!(fr->rsv & 0x4);
	}
}

/* A complete header: account for the frame (sections 5.2-5.5) and get ready to pass its payload. */
static void frame_start(struct wfeed *f, struct ws_dir *d)
{
	struct frame fr;
	bool ok = true;

	frame_decode(d->hdr, &fr);
	d->hdrlen = 0;
	if (fr.len_msb) {
		error(f, WS_ERR_LENGTH);
		desync(f, d); /* no length to trust: nothing after this frame can be found */
		return;
	}
	if (fr.non_minimal)
		error(f, WS_ERR_NON_MINIMAL);
	/* Section 5.1: a client masks every frame it sends, a server masks none. */
	if (fr.masked != (f->dir == FLOW_IN))
		error(f, WS_ERR_MASK);
	if (fr.masked)
		memcpy(d->mask, d->hdr + fr.hdrlen - 4, 4);
	d->masked = fr.masked;
	d->remaining = fr.len;
	d->fpos = 0;
	d->want_code = 0;
	d->code_have = 0;
	d->state = fr.len ? WS_PAYLOAD : WS_HDR;

	if (fr.rsv & 0x3) {
		error(f, WS_ERR_RSV); /* RSV2/RSV3: no extension here defines them */
		ok = false;
	}
	if (!opcode_known(fr.opcode))
		error(f, WS_ERR_RESERVED_OPCODE);
	else if (is_control(fr.opcode))
		control_frame(f, d, &fr, ok);
	else if (fr.opcode == WS_OP_CONT)
		continuation_frame(f, d, &fr, ok);
	else
		message_frame(f, d, &fr, ok);
}

/* The close frame's code bytes p[0..n) at payload offset d->fpos, captured (p != NULL) or not. */
static void close_code_bytes(struct wfeed *f, struct ws_dir *d, const uint8_t *p, uint64_t n)
{
	if (!d->want_code || d->fpos >= 2)
		return;
	if (!p) {
		d->want_code = 0;
		emit_close(f, WS_CLOSE_UNKNOWN);
		return;
	}
	for (uint64_t i = 0; i < n && d->code_have < 2; i++) {
		uint8_t b = p[i];
		if (d->masked)
			b ^= d->mask[(d->fpos + i) & 3]; /* section 5.3: j = i MOD 4 */
		d->code[d->code_have++] = b;
	}
	if (d->code_have == 2) {
		unsigned code = (unsigned)d->code[0] << 8 | d->code[1]; /* section 5.5.1: network byte order */
		d->want_code = 0;
		if (!close_code_valid(code))
			error(f, WS_ERR_CLOSE_CODE);
		emit_close(f, (uint16_t)code);
	}
}

/* Pass n payload bytes (p NULL: uncaptured). */
static void payload(struct wfeed *f, struct ws_dir *d, const uint8_t *p, uint64_t n)
{
	close_code_bytes(f, d, p, n);
	d->fpos += n;
	d->remaining -= n;
	if (!d->remaining)
		d->state = WS_HDR;
}

/* Is the call one or more strictly valid frames ending exactly at its end? Then it begins at a frame boundary
 * and sync is found again. Every header must be captured. */
static bool call_is_frames(enum flow_dir dir, const uint8_t *p, size_t cap, size_t len)
{
	size_t off = 0;
	struct frame fr;

	while (off < len) {
		if (off >= cap || cap - off < 2)
			return false;
		size_t need = header_need(p[off + 1]);
		if (cap - off < need)
			return false;
		frame_decode(p + off, &fr);
		if (fr.len_msb || fr.non_minimal || fr.rsv & 0x3 || !opcode_known(fr.opcode) ||
		    fr.masked != (dir == FLOW_IN))
			return false;
		if (is_control(fr.opcode) && (!fr.fin || fr.len > 125 || fr.rsv))
			return false;
		if (fr.len > len - off - need)
			return false;
		off += need + fr.len;
	}
	return off == len && len > 0;
}

void ws_conn_init(struct ws_conn *w, const char *route, uint64_t ts_ns)
{
	size_t n;

	memset(w, 0, sizeof(*w));
	w->start_ns = ts_ns;
	if (!route)
		route = WS_ROUTE_UNKNOWN;
	n = strnlen(route, ROUTE_MAX_LEN);
	memcpy(w->route, route, n);
	w->route[n] = '\0';
}

int ws_conn_feed(struct ws_conn *w, enum flow_dir dir, const uint8_t *data, size_t cap, size_t len,
		 uint64_t ts_ns, const struct ws_sink *sink)
{
	struct wfeed f = { .w = w, .sink = sink, .dir = dir == FLOW_OUT ? FLOW_OUT : FLOW_IN, .ts = ts_ns };
	struct ws_dir *d = &w->d[f.dir];
	size_t off = 0;

	if (!data || cap > len)
		cap = data ? len : 0;
	if (w->ended || !len)
		return d->state == WS_DESYNC;

	if (d->state == WS_DESYNC) {
		if (!call_is_frames(f.dir, data, cap, len))
			return 1;
		uint8_t closed = d->closed;
		memset(d, 0, sizeof(*d));
		d->closed = closed;
		d->state = WS_HDR;
		d->skip_cont = 1; /* a continuation now belongs to a message that began out of sight */
		if (sink && sink->stats)
			sink->stats->resync++;
	}

	while (off < cap && d->state != WS_DESYNC) {
		if (d->state == WS_HDR) {
			size_t want = d->hdrlen < 2 ? 2 : d->need;
			size_t take = want - d->hdrlen;
			if (take > cap - off)
				take = cap - off;
			memcpy(d->hdr + d->hdrlen, data + off, take);
			d->hdrlen += take;
			off += take;
			if (d->hdrlen == 2 && want == 2)
				d->need = (uint8_t)header_need(d->hdr[1]);
			if (d->hdrlen >= 2 && d->hdrlen == d->need)
				frame_start(&f, d);
		} else {
			uint64_t take = d->remaining < cap - off ? d->remaining : cap - off;
			payload(&f, d, data + off, take);
			off += take;
		}
	}
	if (len > cap && d->state != WS_DESYNC) {
		uint64_t gap = len - cap;
		if (d->state == WS_PAYLOAD) {
			uint64_t take = d->remaining < gap ? d->remaining : gap;
			payload(&f, d, NULL, take);
			gap -= take;
		}
		/* Whatever is left of the gap holds (the start of) a frame header we cannot see. */
		if (gap)
			desync(&f, d);
	}
	return d->state == WS_DESYNC;
}

void ws_conn_lost(struct ws_conn *w, enum flow_dir dir, const struct ws_sink *sink)
{
	struct wfeed f = { .w = w, .sink = sink, .dir = dir == FLOW_OUT ? FLOW_OUT : FLOW_IN };
	struct ws_dir *d = &w->d[f.dir];

	if (!w->ended && d->state != WS_DESYNC)
		desync(&f, d);
}

void ws_conn_close(struct ws_conn *w, uint64_t ts_ns, const struct ws_sink *sink)
{
	struct ws_event ev = { .type = WS_EV_END, .route = w->route, .ts_ns = ts_ns };

	if (w->ended)
		return;
	w->ended = 1;
	ev.duration_ns = ts_ns > w->start_ns ? ts_ns - w->start_ns : 0;
	ev.clean = w->d[FLOW_IN].closed && w->d[FLOW_OUT].closed;
	if (sink && sink->event)
		sink->event(sink->ctx, &ev);
}
