// SPDX-License-Identifier: BSD-2-Clause
/* The exporter-toolkit web configuration file (src/server/webconfig.h): libyaml's document API walks it, every
 * mapping against the keys exporter-toolkit knows; GnuTLS checks the certificate, key and client CA the way
 * libmicrohttpd will load them; libxcrypt checks each bcrypt hash's salt. */
#include "server/webconfig.h"
#include "lib/log.h"
#include "lib/util.h"

#include <crypt.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <yaml.h>

/* A certificate chain, key or CA bundle larger than this is not one (and /dev/zero must not be read forever). */
#define PEM_MAX (1 << 20)
/* bcrypt costs above this make every uncached check block the HTTP server for long (cost 12: ~0.3 s here; each
 * step doubles it): loupe warns, since the checks run on the server's one thread (src/server/basic_auth.c). */
#define BCRYPT_COST_WARN 12

struct ctx {
	const char *path;
	yaml_document_t doc;
	struct web_config *wc;
	char *err;
	size_t errlen;
};

/* "FILE line N: KEY: message" (the line of node n, when there is one) into the error; returns -EINVAL. */
static int __attribute__((format(printf, 4, 5))) fail(struct ctx *x, const yaml_node_t *n, const char *key,
						       const char *fmt, ...)
{
	char msg[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n)
		snprintf(x->err, x->errlen, "%s line %lu: %s: %s", x->path, (unsigned long)n->start_mark.line + 1, key,
			 msg);
	else
		snprintf(x->err, x->errlen, "%s: %s: %s", x->path, key, msg);
	return -EINVAL;
}

static yaml_node_t *node(struct ctx *x, int id)
{
	return yaml_document_get_node(&x->doc, id);
}

/* YAML's null: an empty plain value ("key:"), ~ or null. exporter-toolkit (Go's yaml) reads it as "not set". */
static bool is_null(const yaml_node_t *n)
{
	if (!n)
		return true;
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *v = (const char *)n->data.scalar.value;
	return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static int get_string(struct ctx *x, const yaml_node_t *n, const char *key, const char **out)
{
	if (n->type != YAML_SCALAR_NODE)
		return fail(x, n, key, "expected a string");
	if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length)
		return fail(x, n, key, "holds a NUL character");
	*out = (const char *)n->data.scalar.value;
	return 0;
}

/* Go's YAML booleans that a person writes: true/false in three casings. */
static int get_bool(struct ctx *x, const yaml_node_t *n, const char *key, bool *out)
{
	static const char *const yes[] = {"true", "True", "TRUE"}, *const no[] = {"false", "False", "FALSE"};
	const char *v;
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || get_string(x, n, key, &v))
		return fail(x, n, key, "expected true or false");
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		if (!strcmp(v, yes[i]) || !strcmp(v, no[i])) {
			*out = !strcmp(v, yes[i]);
			return 0;
		}
	return fail(x, n, key, "expected true or false, not '%.40s'", v);
}

/* The values of a mapping's keys into vals[] (indexed like names[], NULL-terminated), a null value as absent. An
 * unknown key, a key given twice or a key that is not a string is an error naming it under prefix. */
static int walk_map(struct ctx *x, const yaml_node_t *map, const char *prefix, const char *const *names,
		    yaml_node_t **vals)
{
	size_t n = 0;
	while (names[n])
		vals[n++] = NULL;
	if (is_null(map))
		return 0;
	if (map->type != YAML_MAPPING_NODE)
		return fail(x, map, prefix, "expected a mapping of keys to values");
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
		const char *name;
		size_t i;
		if (!k || k->type != YAML_SCALAR_NODE || get_string(x, k, prefix, &name))
			return fail(x, k, prefix, "a key that is not a string");
		for (i = 0; i < n && strcmp(names[i], name); i++)
			;
		if (i == n)
			return fail(x, k, prefix[0] ? prefix : "(top level)", "unknown key '%.64s'", name);
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++)
			if (!strcmp((const char *)node(x, q->key)->data.scalar.value, name))
				return fail(x, k, prefix[0] ? prefix : "(top level)", "key '%s' given twice", name);
		vals[i] = is_null(v) ? NULL : v;
	}
	return 0;
}

/* A key exporter-toolkit has and loupe does not honour: fine when empty (null, [] or {}), else an error. */
static int unsupported(struct ctx *x, const yaml_node_t *v, const char *key, const char *why)
{
	if (!v || (v->type == YAML_SEQUENCE_NODE && v->data.sequence.items.start == v->data.sequence.items.top) ||
	    (v->type == YAML_MAPPING_NODE && v->data.mapping.pairs.start == v->data.mapping.pairs.top))
		return 0;
	return fail(x, v, key, "not supported by loupe: %s", why);
}

/* A file named in the config, relative to the config's own directory (as exporter-toolkit resolves them), into a
 * NUL-terminated heap string. */
static int read_named_file(struct ctx *x, const yaml_node_t *v, const char *key, char **out)
{
	const char *name;
	char full[4096];
	struct stat st;
	int err = get_string(x, v, key, &name);
	if (err)
		return err;
	if (!*name)
		return fail(x, v, key, "empty file name");
	const char *slash = strrchr(x->path, '/');
	if (name[0] == '/' || !slash)
		snprintf(full, sizeof(full), "%s", name);
	else
		snprintf(full, sizeof(full), "%.*s/%s", (int)(slash - x->path), x->path, name);
	if (stat(full, &st))
		return fail(x, v, key, "cannot read %s: %s", full, strerror(errno));
	if (!S_ISREG(st.st_mode) || st.st_size > PEM_MAX)
		return fail(x, v, key, "%s is not a regular file of at most %d bytes", full, PEM_MAX);
	long n = read_file(full, out);
	if (n < 0)
		return fail(x, v, key, "cannot read %s: %s", full, strerror((int)-n));
	if ((size_t)n != strlen(*out)) {
		free(*out);
		*out = NULL;
		return fail(x, v, key, "%s holds a NUL byte: expected PEM text", full);
	}
	return 0;
}

/* PEM from a file key (cert_file) or an inline one (cert); not both, as exporter-toolkit says. */
static int pem_of(struct ctx *x, const yaml_node_t *file, const char *file_key, const yaml_node_t *inl,
		  const char *inl_key, char **out)
{
	const char *s;
	int err;
	if (file && inl)
		return fail(x, inl, inl_key, "give %s or %s, not both", inl_key, file_key);
	if (file)
		return read_named_file(x, file, file_key, out);
	if (!inl)
		return 0;
	if ((err = get_string(x, inl, inl_key, &s)))
		return err;
	if (!(*out = strdup(s)))
		return -ENOMEM;
	return 0;
}

static int tls_version(struct ctx *x, const yaml_node_t *v, const char *key, int dflt, int *out)
{
	const char *s;
	int err;
	*out = dflt;
	if (!v)
		return 0;
	if ((err = get_string(x, v, key, &s)))
		return err;
	if (!strcmp(s, "TLS12") || !strcmp(s, "TLS13")) {
		*out = s[4] - '0';
		return 0;
	}
	if (!strcmp(s, "TLS10") || !strcmp(s, "TLS11"))
		return fail(x, v, key, "%s is not supported by loupe: TLS12 or TLS13", s);
	return fail(x, v, key, "unknown TLS version '%.40s': expected TLS12 or TLS13", s);
}

/* What libmicrohttpd will do with the PEM (gnutls_certificate_set_x509_key_mem2, _trust_mem), done now, so that a
 * bad file is an argument error naming its key: each parses alone first, then the pair must match. */
static int check_tls_material(struct ctx *x, yaml_node_t *const *where, const char *cert_key, const char *key_key,
			      const char *ca_key)
{
	struct web_config *wc = x->wc;
	gnutls_x509_crt_t *crts = NULL;
	unsigned ncrts = 0;
	gnutls_x509_privkey_t pk = NULL;
	gnutls_certificate_credentials_t cred = NULL;
	gnutls_datum_t c = {(unsigned char *)wc->cert_pem, (unsigned)strlen(wc->cert_pem)},
		       k = {(unsigned char *)wc->key_pem, (unsigned)strlen(wc->key_pem)};
	int rc, err = 0;

	if ((rc = gnutls_x509_crt_list_import2(&crts, &ncrts, &c, GNUTLS_X509_FMT_PEM, 0)) < 0 || !ncrts) {
		err = fail(x, where[0], cert_key, "no PEM certificate in it: %s", rc < 0 ? gnutls_strerror(rc) : "empty");
		goto out;
	}
	if ((rc = gnutls_x509_privkey_init(&pk)) < 0 ||
	    (rc = gnutls_x509_privkey_import2(pk, &k, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		err = fail(x, where[1], key_key, "no PEM private key in it (an encrypted key is not supported): %s",
			   gnutls_strerror(rc));
		goto out;
	}
	if ((rc = gnutls_certificate_allocate_credentials(&cred)) < 0) {
		err = -ENOMEM;
		goto out;
	}
	if ((rc = gnutls_certificate_set_x509_key_mem2(cred, &c, &k, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		err = rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH
			      ? fail(x, where[1], key_key, "the key does not match the certificate of %s", cert_key)
			      : fail(x, where[1], key_key, "certificate and key refused: %s", gnutls_strerror(rc));
		goto out;
	}
	if (wc->client_ca_pem) {
		gnutls_datum_t ca = {(unsigned char *)wc->client_ca_pem, (unsigned)strlen(wc->client_ca_pem)};
		if ((rc = gnutls_certificate_set_x509_trust_mem(cred, &ca, GNUTLS_X509_FMT_PEM)) <= 0) {
			err = fail(x, where[2], ca_key, "no PEM CA certificate in it%s%s", rc < 0 ? ": " : "",
				   rc < 0 ? gnutls_strerror(rc) : "");
			goto out;
		}
	}
	/* An expired server certificate still loads; clients will refuse it, so say so now. */
	if (gnutls_x509_crt_get_expiration_time(crts[0]) < time(NULL))
		log_warn("web_config_cert_expired", "--web-config: %s: the server certificate has expired", cert_key);
out:
	for (unsigned i = 0; i < ncrts; i++)
		gnutls_x509_crt_deinit(crts[i]);
	gnutls_free(crts);
	gnutls_x509_privkey_deinit(pk);
	gnutls_certificate_free_credentials(cred);
	return err;
}

enum tls_key {
	T_CERT, T_KEY, T_CLIENT_CA, T_CERT_FILE, T_KEY_FILE, T_CLIENT_AUTH_TYPE, T_CLIENT_CA_FILE,
	T_CLIENT_ALLOWED_SANS, T_MIN_VERSION, T_MAX_VERSION, T_CIPHER_SUITES, T_PREFER_SERVER_CIPHER_SUITES,
	T_CURVE_PREFERENCES, T_NR
};

static const char *const client_auth_names[] = {
	[CLIENT_AUTH_NONE] = "NoClientCert",
	[CLIENT_AUTH_REQUEST] = "RequestClientCert",
	[CLIENT_AUTH_REQUIRE_ANY] = "RequireAnyClientCert",
	[CLIENT_AUTH_VERIFY_IF_GIVEN] = "VerifyClientCertIfGiven",
	[CLIENT_AUTH_REQUIRE_AND_VERIFY] = "RequireAndVerifyClientCert",
};

const char *client_auth_name(enum client_auth a)
{
	return (unsigned)a < ARRAY_SIZE(client_auth_names) ? client_auth_names[a] : "?";
}

static int parse_tls(struct ctx *x, const yaml_node_t *sec)
{
	static const char *const names[] = {"cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
					    "client_ca_file", "client_allowed_sans", "min_version", "max_version",
					    "cipher_suites", "prefer_server_cipher_suites", "curve_preferences", NULL};
	struct web_config *wc = x->wc;
	yaml_node_t *v[T_NR];
	bool any = false, prefer_server = true; /* exporter-toolkit's default */
	int err, min, max;

	if ((err = walk_map(x, sec, "tls_server_config", names, v)))
		return err;
	for (int i = 0; i < T_NR; i++)
		any |= v[i] != NULL;
	if (!any) /* an empty section: plain HTTP, as in exporter-toolkit */
		return 0;
	if ((err = unsupported(x, v[T_CLIENT_ALLOWED_SANS], "tls_server_config.client_allowed_sans",
			       "client certificates are verified against client_ca_file only")) ||
	    (err = unsupported(x, v[T_CIPHER_SUITES], "tls_server_config.cipher_suites",
			       "these are Go's names; loupe uses GnuTLS' defaults")) ||
	    (err = unsupported(x, v[T_CURVE_PREFERENCES], "tls_server_config.curve_preferences",
			       "these are Go's names; loupe uses GnuTLS' defaults")))
		return err;
	if (v[T_PREFER_SERVER_CIPHER_SUITES] &&
	    (err = get_bool(x, v[T_PREFER_SERVER_CIPHER_SUITES], "tls_server_config.prefer_server_cipher_suites",
			    &prefer_server)))
		return err;
	if ((err = tls_version(x, v[T_MIN_VERSION], "tls_server_config.min_version", 2, &min)) ||
	    (err = tls_version(x, v[T_MAX_VERSION], "tls_server_config.max_version", 3, &max)))
		return err;
	if (min > max)
		return fail(x, v[T_MIN_VERSION], "tls_server_config.min_version", "TLS1%d is above max_version TLS1%d",
			    min, max);
	if (v[T_CLIENT_AUTH_TYPE]) {
		const char *s;
		size_t i;
		if ((err = get_string(x, v[T_CLIENT_AUTH_TYPE], "tls_server_config.client_auth_type", &s)))
			return err;
		for (i = 0; i < ARRAY_SIZE(client_auth_names) && strcmp(s, client_auth_names[i]); i++)
			;
		if (i == ARRAY_SIZE(client_auth_names) && strcmp(s, "RequireClientCert")) /* Go's old name */
			return fail(x, v[T_CLIENT_AUTH_TYPE], "tls_server_config.client_auth_type",
				    "unknown value '%.64s': expected NoClientCert, RequestClientCert, RequireAnyClientCert, "
				    "VerifyClientCertIfGiven or RequireAndVerifyClientCert", s);
		wc->client_auth = i == ARRAY_SIZE(client_auth_names) ? CLIENT_AUTH_REQUIRE_ANY : (enum client_auth)i;
	}
	if ((err = pem_of(x, v[T_CERT_FILE], "tls_server_config.cert_file", v[T_CERT], "tls_server_config.cert",
			  &wc->cert_pem)) ||
	    (err = pem_of(x, v[T_KEY_FILE], "tls_server_config.key_file", v[T_KEY], "tls_server_config.key",
			  &wc->key_pem)) ||
	    (err = pem_of(x, v[T_CLIENT_CA_FILE], "tls_server_config.client_ca_file", v[T_CLIENT_CA],
			  "tls_server_config.client_ca", &wc->client_ca_pem)))
		return err;
	if (!wc->cert_pem)
		return fail(x, sec, "tls_server_config", "cert_file (or cert) is required%s",
			    wc->key_pem ? " with key_file" : "");
	if (!wc->key_pem)
		return fail(x, sec, "tls_server_config", "key_file (or key) is required with cert_file");
	if (wc->client_ca_pem && wc->client_auth == CLIENT_AUTH_NONE)
		return fail(x, v[T_CLIENT_CA_FILE] ? v[T_CLIENT_CA_FILE] : v[T_CLIENT_CA], "tls_server_config.client_ca_file",
			    "client CAs are set but client_auth_type is NoClientCert (exporter-toolkit refuses this too)");
	if (!wc->client_ca_pem &&
	    (wc->client_auth == CLIENT_AUTH_VERIFY_IF_GIVEN || wc->client_auth == CLIENT_AUTH_REQUIRE_AND_VERIFY))
		return fail(x, v[T_CLIENT_AUTH_TYPE], "tls_server_config.client_auth_type",
			    "%s needs client_ca_file: the CA that client certificates are verified against",
			    client_auth_name(wc->client_auth));
	yaml_node_t *where[] = {v[T_CERT_FILE] ? v[T_CERT_FILE] : v[T_CERT], v[T_KEY_FILE] ? v[T_KEY_FILE] : v[T_KEY],
				v[T_CLIENT_CA_FILE] ? v[T_CLIENT_CA_FILE] : v[T_CLIENT_CA]};
	if ((err = check_tls_material(x, where, v[T_CERT_FILE] ? "tls_server_config.cert_file" : "tls_server_config.cert",
				      v[T_KEY_FILE] ? "tls_server_config.key_file" : "tls_server_config.key",
				      v[T_CLIENT_CA_FILE] ? "tls_server_config.client_ca_file"
							  : "tls_server_config.client_ca")))
		return err;
	/* TLS 1.0 and 1.1 are never offered; the server's cipher order wins unless prefer_server_cipher_suites is false
	 * (GnuTLS follows the client's by default). */
	snprintf(wc->priorities, sizeof(wc->priorities), "NORMAL:-VERS-ALL%s%s%s", max >= 3 ? ":+VERS-TLS1.3" : "",
		 min <= 2 ? ":+VERS-TLS1.2" : "", prefer_server ? ":%SERVER_PRECEDENCE" : "");
	gnutls_priority_t prio;
	const char *at = NULL;
	int rc = gnutls_priority_init(&prio, wc->priorities, &at);
	if (rc < 0)
		return fail(x, sec, "tls_server_config", "GnuTLS refuses the priorities '%s' (at '%.20s'): %s",
			    wc->priorities, at ? at : "", gnutls_strerror(rc));
	gnutls_priority_deinit(prio);
	wc->tls = true;
	return 0;
}

static int parse_http(struct ctx *x, const yaml_node_t *sec)
{
	static const char *const names[] = {"http2", "headers", NULL};
	yaml_node_t *v[2];
	bool http2;
	int err;
	if ((err = walk_map(x, sec, "http_server_config", names, v)))
		return err;
	/* HTTP/2 is something a server may offer: loupe offers HTTP/1.1 only (ALPN says so), and clients fall back. */
	if (v[0] && (err = get_bool(x, v[0], "http_server_config.http2", &http2)))
		return err;
	return unsupported(x, v[1], "http_server_config.headers", "loupe sets its own response headers");
}

/* $2a$, $2b$ or $2y$, a two-digit cost 04-31, then 53 characters of bcrypt's base64: 22 of salt, 31 of hash. */
static bool bcrypt_shape(const char *h, unsigned *cost)
{
	static const char b64[] = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	if (strlen(h) != 60 || h[0] != '$' || h[1] != '2' || !strchr("aby", h[2]) || h[3] != '$' ||
	    h[4] < '0' || h[4] > '9' || h[5] < '0' || h[5] > '9' || h[6] != '$')
		return false;
	*cost = (unsigned)(h[4] - '0') * 10 + (unsigned)(h[5] - '0');
	if (*cost < 4 || *cost > 31)
		return false;
	for (const char *p = h + 7; *p; p++)
		if (!strchr(b64, *p))
			return false;
	return true;
}

static int parse_users(struct ctx *x, const yaml_node_t *sec)
{
	struct web_config *wc = x->wc;
	struct crypt_data *cd = NULL;
	int err = 0;
	if (is_null(sec))
		return 0;
	if (sec->type != YAML_MAPPING_NODE)
		return fail(x, sec, "basic_auth_users", "expected a mapping of user names to bcrypt hashes");
	size_t n = (size_t)(sec->data.mapping.pairs.top - sec->data.mapping.pairs.start);
	if (!n)
		return 0;
	if (!(wc->users = calloc(n, sizeof(*wc->users))) || !(cd = calloc(1, sizeof(*cd))))
		return -ENOMEM;
	for (yaml_node_pair_t *p = sec->data.mapping.pairs.start; p < sec->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
		const char *name, *hash;
		char key[120], setting[30];
		unsigned cost;
		if ((err = get_string(x, k, "basic_auth_users", &name)))
			goto out;
		snprintf(key, sizeof(key), "basic_auth_users.%.64s", name);
		/* RFC 7617 2: the user-id cannot contain a colon; an empty one cannot be told from no user. */
		if (!*name || strchr(name, ':') || strlen(name) > 64) {
			err = fail(x, k, "basic_auth_users", "bad user name '%.64s': 1-64 characters, no ':'", name);
			goto out;
		}
		for (size_t i = 0; i < wc->nusers; i++)
			if (!strcmp(wc->users[i].name, name)) {
				err = fail(x, k, "basic_auth_users", "user '%s' given twice", name);
				goto out;
			}
		if (is_null(v)) {
			err = fail(x, v, key, "no password hash");
			goto out;
		}
		if ((err = get_string(x, v, key, &hash)))
			goto out;
		if (!bcrypt_shape(hash, &cost)) {
			err = fail(x, v, key, "not a bcrypt hash ($2y$10$ and 53 characters, e.g. from htpasswd -nBC 10)");
			goto out;
		}
		/* libxcrypt must take the salt too (bcrypt's last salt character carries only 2 bits; some values are
		 * refused): tried at cost 4, about a millisecond, rather than the hash's own cost. */
		snprintf(setting, sizeof(setting), "$2%c$04$%.22s", hash[2], hash + 7);
		const char *r = crypt_rn("", setting, cd, sizeof(*cd));
		if (!r || r[0] != '$') {
			err = fail(x, v, key, "libxcrypt refuses this bcrypt hash's salt: %s", strerror(errno));
			goto out;
		}
		struct web_user *u = &wc->users[wc->nusers];
		if (!(u->name = strdup(name)) || !(u->hash = strdup(hash))) {
			free(u->name);
			err = -ENOMEM;
			goto out;
		}
		wc->nusers++;
		if (cost > wc->max_cost)
			wc->max_cost = cost;
	}
	if (wc->max_cost > BCRYPT_COST_WARN)
		log_warn("web_config_bcrypt_cost",
			 "--web-config: basic_auth_users: bcrypt cost %u: each new password check blocks the HTTP "
			 "server for a second or more (cost 10-12 is plenty; checks are cached)", wc->max_cost);
out:
	free(cd);
	return err;
}

int webconfig__load(const char *path, struct web_config **out, char *err, size_t errlen)
{
	static const char *const names[] = {"tls_server_config", "http_server_config", "basic_auth_users",
					    "rate_limit", NULL};
	struct ctx x = {.path = path, .err = err, .errlen = errlen};
	yaml_parser_t parser;
	yaml_node_t *v[4];
	bool have_doc = false;
	struct stat st;
	int rc = 0;
	FILE *f = NULL;

	*out = NULL;
	if (!(x.wc = calloc(1, sizeof(*x.wc))) || !(x.wc->path = strdup(path))) {
		free(x.wc);
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	if (stat(path, &st) || !(f = fopen(path, "re"))) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		snprintf(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	if (!yaml_parser_initialize(&parser)) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &x.doc)) {
		rc = -EINVAL;
		snprintf(err, errlen, "%s line %lu: not valid YAML: %s%s%s", path,
			 (unsigned long)parser.problem_mark.line + 1, parser.problem ? parser.problem : "?",
			 parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		goto out;
	}
	have_doc = true;
	/* One document: exporter-toolkit reads the first; a second one would be silently ignored, so it is refused. */
	yaml_document_t next;
	if (yaml_parser_load(&parser, &next)) {
		bool more = yaml_document_get_root_node(&next) != NULL;
		yaml_document_delete(&next);
		if (more) {
			rc = -EINVAL;
			snprintf(err, errlen, "%s: more than one YAML document: expected one", path);
		}
	}
	yaml_parser_delete(&parser);
	if (rc)
		goto out;
	yaml_node_t *root = yaml_document_get_root_node(&x.doc);
	if (root && root->type != YAML_MAPPING_NODE && !is_null(root)) {
		rc = fail(&x, root, "(top level)", "expected a mapping (tls_server_config, basic_auth_users, ...)");
		goto out;
	}
	if ((rc = walk_map(&x, root, "", names, v)) || (rc = parse_tls(&x, v[0])) || (rc = parse_http(&x, v[1])) ||
	    (rc = parse_users(&x, v[2])) ||
	    (rc = unsupported(&x, v[3], "rate_limit",
			      "requests are not rate-limited; profiling sessions are (--sessions-per-minute)")))
		goto out;
out:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", path);
	if (have_doc)
		yaml_document_delete(&x.doc);
	if (f)
		fclose(f);
	if (rc) {
		webconfig__free(x.wc);
		return rc;
	}
	*out = x.wc;
	return 0;
}

/* Key material is wiped before it is freed: the process may dump core or be read by a debugger later. */
static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void webconfig__free(struct web_config *wc)
{
	if (!wc)
		return;
	for (size_t i = 0; i < wc->nusers; i++) {
		free(wc->users[i].name);
		free_secret(wc->users[i].hash);
	}
	free(wc->users);
	free(wc->cert_pem);
	free_secret(wc->key_pem);
	free(wc->client_ca_pem);
	free(wc->path);
	free(wc);
}
