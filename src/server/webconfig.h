/* SPDX-License-Identifier: BSD-2-Clause */
/* `loupe run --web-config FILE`: the web configuration file of Prometheus' exporter-toolkit
 * (https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md): TLS for the HTTP server,
 * client certificates, and basic-auth users with bcrypt hashes. The file is read once, at start, before any
 * privilege is dropped; what it names (certificates, keys) is read then too, so a bad file is an argument error
 * (exit 2), never a failure at the first request. Parsed with libyaml, as strictly as exporter-toolkit: an unknown
 * key is an error, and so is a known one that loupe cannot honour (it names the key). */
#ifndef LOUPE_WEBCONFIG_H
#define LOUPE_WEBCONFIG_H
#include <stdbool.h>
#include <stddef.h>

/* tls_server_config.client_auth_type: Go's tls.ClientAuthType, honoured in the TLS handshake (src/server/httpd.c). */
enum client_auth {
	CLIENT_AUTH_NONE,		/* NoClientCert (the default) */
	CLIENT_AUTH_REQUEST,		/* RequestClientCert: asked for, neither required nor verified */
	CLIENT_AUTH_REQUIRE_ANY,	/* RequireAnyClientCert: required, not verified */
	CLIENT_AUTH_VERIFY_IF_GIVEN,	/* VerifyClientCertIfGiven: verified against client_ca_file when sent */
	CLIENT_AUTH_REQUIRE_AND_VERIFY, /* RequireAndVerifyClientCert: required and verified */
};

struct web_user {
	char *name;
	char *hash; /* bcrypt: $2a$, $2b$ or $2y$, checked at load */
};

struct web_config {
	char *path;
	bool tls;			/* tls_server_config has a certificate: serve HTTPS only */
	char *cert_pem, *key_pem;	/* PEM text, NUL-terminated (what libmicrohttpd takes) */
	char *client_ca_pem;		/* NULL unless client_ca_file or client_ca */
	enum client_auth client_auth;
	char priorities[160];		/* GnuTLS priority string: min_version/max_version, prefer_server_cipher_suites */
	struct web_user *users;		/* basic_auth_users, in file order */
	size_t nusers;
	unsigned max_cost;		/* the highest bcrypt cost among them */
};

/* Read and check path: every key, the certificate and key (readable, parseable, matching each other), the client
 * CA, each user's hash. 0 with *out set, or -errno / -EINVAL with a one-line reason in err that names the file and
 * the key (and the line when the YAML is malformed). */
int webconfig__load(const char *path, struct web_config **out, char *err, size_t errlen);
void webconfig__free(struct web_config *wc);
/* "RequireAndVerifyClientCert" ... */
const char *client_auth_name(enum client_auth a);

#endif
