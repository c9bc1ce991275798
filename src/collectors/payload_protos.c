// SPDX-License-Identifier: BSD-2-Clause
/* The payload protocol table: adding a protocol is adding a row (src/collectors/payload_int.h says what a row is). */
#include "collectors/payload_int.h"

extern const struct proto http_proto, websocket_proto, postgres_proto;

const struct proto *const payload_protos[PROTO_NR] = {
	[PROTO_POSTGRES] = &postgres_proto, /* before HTTP: detected by its startup packet */
	[PROTO_HTTP] = &http_proto,
	[PROTO_WEBSOCKET] = &websocket_proto, /* reached only by HTTP's upgrade */
};
