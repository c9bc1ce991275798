/* SPDX-License-Identifier: BSD-2-Clause */
/* WebSocket (RFC 6455) frame parser over truncated views of a connection's read and write syscalls.
 *
 * After http_conn_feed() reports an upgrade, the caller feeds the rest of that call and every later one here.
 * ws_conn_feed() parses frame headers in both directions with bounded memory (one struct ws_conn, no
 * allocation) and reports through a sink:
 *  - MESSAGE at the frame that completes a message (FIN): its direction, the opcode of its first frame (text,
 *    binary; or ping, pong, close for control frames), its payload size summed over fragments (section 5.4),
 *    and whether RSV1 marked it compressed (permessage-deflate, RFC 7692: the size is then the compressed one);
 *  - CLOSE for each close frame (section 5.5.1): the side that sent it and its status code (section 7.4):
 *    1005 (WS_CLOSE_NO_STATUS) when the frame carries none, 0 (WS_CLOSE_UNKNOWN) when it carries one the
 *    capture did not include;
 *  - END once, from ws_conn_close(): the session's duration and whether both sides sent a close frame.
 * Protocol errors (struct ws_stats) are counted and parsing goes on whenever frame lengths still make sense.
 *
 * Truncation. Payload bytes are never needed: a frame's payload is skipped by its length, captured or not
 * (the uncaptured len - cap tail of a call counts toward it). A frame header is needed: when one would begin in
 * uncaptured bytes, that direction has lost sync (counted in desync) and emits nothing until a later call
 * begins at a frame boundary again, which is accepted only when the whole call parses as strictly valid frames
 * whose lengths end exactly at the call's end (counted in resync). A fragmented message cut by a lost sync is
 * dropped.
 *
 * Not thread-safe; one struct per connection. Strings in events are valid only during the callback. */
#ifndef LOUPE_WEBSOCKET_H
#define LOUPE_WEBSOCKET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parsers/flow.h"
#include "parsers/route.h"


#define WS_ROUTE_UNKNOWN "_unknown"
#define WS_CLOSE_UNKNOWN 0	/* the close frame's code was not captured */
#define WS_CLOSE_NO_STATUS 1005	/* RFC 6455 section 7.1.5: the close frame carried no code */

/* RFC 6455 section 5.2 opcodes. */
enum ws_opcode {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xa,
};

enum ws_event_type {
	WS_EV_MESSAGE,
	WS_EV_CLOSE,
	WS_EV_END,
};

struct ws_event {
	enum ws_event_type type;
	enum flow_dir dir;	/* MESSAGE, CLOSE: FLOW_IN = client to server, FLOW_OUT = server to client */
	const char *route;	/* the upgrade's route template */
	uint8_t opcode;		/* MESSAGE: WS_OP_TEXT ... WS_OP_PONG */
	bool compressed;	/* MESSAGE: RSV1 set on its first frame */
	uint64_t size;		/* MESSAGE: payload bytes over all its frames (saturates) */
	uint16_t code;		/* CLOSE: status code, WS_CLOSE_NO_STATUS or WS_CLOSE_UNKNOWN */
	uint64_t ts_ns;		/* MESSAGE, CLOSE: ts of the call carrying the frame's header; END: close time */
	uint64_t duration_ns;	/* END: from ws_conn_init() to ws_conn_close() */
	bool clean;		/* END: both sides sent a close frame (the closing handshake, section 7.1.2) */
};

/* Protocol errors, for loupe_websocket_protocol_errors_total{kind}-style counters. */
enum ws_error {
	WS_ERR_RESERVED_OPCODE,		/* section 5.2: opcodes 3-7, 0xb-0xf */
	WS_ERR_RSV,			/* section 5.2: RSV2/RSV3, or RSV1 where RFC 7692 allows none */
	WS_ERR_CONTROL_TOO_LONG,	/* section 5.5: control payload > 125 */
	WS_ERR_CONTROL_FRAGMENTED,	/* section 5.5: control frame without FIN */
	WS_ERR_LENGTH,			/* section 5.2: 64-bit length with the top bit set (sync lost) */
	WS_ERR_NON_MINIMAL,		/* section 5.2: length not in its minimal encoding */
	WS_ERR_MASK,			/* section 5.1: client frames masked, server frames not */
	WS_ERR_UNEXPECTED_CONT,		/* section 5.4: continuation with no message in progress */
	WS_ERR_INTERLEAVED,		/* section 5.4: a new data message before the last one's FIN */
	WS_ERR_AFTER_CLOSE,		/* section 5.5.1: data frame after the sender's close frame */
	WS_ERR_CLOSE_PAYLOAD,		/* section 5.5.1: close payload of 1 byte */
	WS_ERR_CLOSE_CODE,		/* section 7.4: a code no endpoint may send */
	WS_ERR_MAX,
};

struct ws_stats {
	uint64_t errors[WS_ERR_MAX];
	uint64_t desync;	/* a frame header began in uncaptured bytes */
	uint64_t resync;	/* a call began at a frame boundary again */
};

struct ws_sink {
	void (*event)(void *ctx, const struct ws_event *ev);	/* may be NULL */
	void *ctx;
	struct ws_stats *stats;	/* may be NULL */
};

/* Private: one direction's parser. */
struct ws_dir {
	uint8_t state;
	uint8_t hdrlen, need;	/* header bytes gathered / needed */
	uint8_t hdr[14];	/* 2 + 8 (64-bit length) + 4 (masking key) */
	uint8_t mask[4];
	uint8_t masked, want_code, code_have, closed;
	uint8_t in_msg, msg_opcode, msg_compressed, skip_cont;
	uint8_t code[2];
	uint64_t remaining;	/* payload bytes of the current frame still to pass */
	uint64_t fpos;		/* payload bytes of the current frame passed */
	uint64_t msg_size;
};

/* One WebSocket session. Fields are private. */
struct ws_conn {
	struct ws_dir d[2];
	uint64_t start_ns;
	uint8_t ended;
	char route[ROUTE_MAX_LEN + 1];
};

/* Start a session (at the upgrade): route is copied (NULL: WS_ROUTE_UNKNOWN), ts_ns starts its duration. */
void ws_conn_init(struct ws_conn *w, const char *route, uint64_t ts_ns);
/* Feed one syscall's view (see http_conn_feed()). Returns 0, or 1 while that direction is out of sync. */
int ws_conn_feed(struct ws_conn *w, enum flow_dir dir, const uint8_t *data, size_t cap, size_t len,
		 uint64_t ts_ns, const struct ws_sink *sink);
/* Calls of this direction were lost before they reached the parser: it is out of sync until a call begins
 * at a frame boundary again. */
void ws_conn_lost(struct ws_conn *w, enum flow_dir dir, const struct ws_sink *sink);
/* The connection closed: report END (once). */
void ws_conn_close(struct ws_conn *w, uint64_t ts_ns, const struct ws_sink *sink);

/* "text", "binary", "close", "ping", "pong", "continuation", or NULL for reserved opcodes. */
const char *ws_opcode_name(unsigned opcode);
const char *ws_error_name(enum ws_error e);

#endif
