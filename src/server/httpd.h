/* SPDX-License-Identifier: BSD-2-Clause */
/* HTTP endpoints on libmicrohttpd: /metrics, /healthz, /readyz, /status, profiles; HTTPS and basic auth with
 * --web-config (src/server/webconfig.h). */
#ifndef LOUPE_HTTPD_H
#define LOUPE_HTTPD_H
#include <stddef.h>

struct loupe;
struct httpd;

/* Parse ADDR:PORT ([v6]:PORT for IPv6), bind and listen. Returns the socket or -errno with a one-line reason. */
int httpd_listen(const char *addr, char *err, size_t errlen);
/* Serve on an already listening socket (taken over), with L->opt's web config (TLS, basic auth), auth scope and
 * session rate. NULL with errno on failure. */
struct httpd *httpd__start(struct loupe *L, int listen_fd);
void httpd__stop(struct httpd *h);
/* "https" when it serves TLS, else "http". */
const char *httpd__scheme(const struct httpd *h);

#endif
