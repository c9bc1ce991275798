// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/server/webconfig.c (the exporter-toolkit web configuration file) and src/server/basic_auth.c
 * (bcrypt checks, their cache and time budget). Files are written to a temporary directory: the PEM fixtures of
 * webconfig_pem.h and YAML written here. The bcrypt hashes come from other implementations than loupe's libxcrypt:
 * Apache's htpasswd (APR, $2y$), Openwall's crypt_blowfish test vectors ($2a$), Python's crypt ($2b$). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "server/basic_auth.h"
#include "server/webconfig.h"
#include "webconfig_pem.h"

/* htpasswd -nbBC 4 prom secret; htpasswd -nbBC 5 alice 'pa:ss w0rd' */
#define HASH_PROM "$2y$04$kxeH7qoxRLgL5v1QeZCvcec1BCKLNf5ivkWO15ozpgbtwDeUoxbYu"
#define HASH_ALICE "$2y$05$AWcHgIns1n/k5LCmoAxaAOVcodybBlOUbH.ifyp3uMDDeER/VTrgG"
/* crypt_blowfish's test vector: password "U*U" */
#define HASH_OW "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
/* python3 -c "import crypt; print(crypt.crypt('secret', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))" */
#define HASH_PY "$2b$04$TiR8bKu.b5xIA.EsTJsk5uj18ubLiufKBwS67FQmkx1QiRDjcIh5i"

static char dir[64];

static void put(const char *name, const char *text)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/loupe-webconfig-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	put("ca.crt", PEM_CA_CRT);
	put("server.crt", PEM_SERVER_CRT);
	put("server.key", PEM_SERVER_KEY);
	put("other.key", PEM_OTHER_KEY);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[100];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

/* Load yaml from web.yml: the config, or NULL with the error in err. */
static struct web_config *load(const char *yaml, char *err, size_t errlen)
{
	char path[128];
	struct web_config *wc = NULL;
	put("web.yml", yaml);
	snprintf(path, sizeof(path), "%s/web.yml", dir);
	err[0] = '\0';
	int rc = webconfig__load(path, &wc, err, errlen);
	assert_true(rc ? wc == NULL && err[0] : wc != NULL);
	return wc;
}

static void test_good(void **state)
{
	(void)state;
	char err[600];
	struct web_config *wc = load("", err, sizeof(err)); /* an empty file: plain HTTP, no users */
	assert_non_null(wc);
	assert_false(wc->tls);
	assert_int_equal(wc->nusers, 0);
	webconfig__free(wc);

	wc = load("tls_server_config:\n"
		  "  cert_file: server.crt\n" /* relative to the file's directory */
		  "  key_file: server.key\n"
		  "  client_auth_type: RequireAndVerifyClientCert\n"
		  "  client_ca_file: ca.crt\n"
		  "  min_version: TLS13\n"
		  "  prefer_server_cipher_suites: false\n"
		  "  cipher_suites: []\n"
		  "http_server_config:\n"
		  "  http2: true\n"
		  "basic_auth_users:\n"
		  "  prom: " HASH_PROM "\n"
		  "  \"alice\": '" HASH_ALICE "'\n"
		  "rate_limit:\n",
		  err, sizeof(err));
	assert_non_null(wc);
	assert_true(wc->tls);
	assert_int_equal(wc->client_auth, CLIENT_AUTH_REQUIRE_AND_VERIFY);
	assert_string_equal(wc->cert_pem, PEM_SERVER_CRT);
	assert_string_equal(wc->key_pem, PEM_SERVER_KEY);
	assert_string_equal(wc->client_ca_pem, PEM_CA_CRT);
	assert_string_equal(wc->priorities, "NORMAL:-VERS-ALL:+VERS-TLS1.3");
	assert_int_equal(wc->nusers, 2);
	assert_string_equal(wc->users[0].name, "prom");
	assert_string_equal(wc->users[1].name, "alice");
	assert_string_equal(wc->users[1].hash, HASH_ALICE);
	assert_int_equal(wc->max_cost, 5);
	webconfig__free(wc);

	/* Inline PEM, an empty tls section (plain HTTP), Go's old name of RequireAnyClientCert; the default
	 * versions and server preference. */
	char yaml[4096] = "tls_server_config:\n  cert: |\n";
	for (const char *l = PEM_SERVER_CRT; *l;) { /* the certificate as a literal block: each line indented */
		const char *nl = strchr(l, '\n');
		strcat(yaml, "    ");
		strncat(yaml, l, (size_t)(nl - l + 1));
		l = nl + 1;
	}
	snprintf(yaml + strlen(yaml), sizeof(yaml) - strlen(yaml),
		 "  key_file: %s/server.key\n  client_auth_type: RequireClientCert\n", dir);
	wc = load(yaml, err, sizeof(err));
	assert_non_null(wc);
	assert_true(wc->tls);
	assert_string_equal(wc->cert_pem, PEM_SERVER_CRT);
	assert_int_equal(wc->client_auth, CLIENT_AUTH_REQUIRE_ANY);
	assert_string_equal(wc->priorities, "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE");
	webconfig__free(wc);

	wc = load("tls_server_config: {}\nbasic_auth_users: ~\n", err, sizeof(err));
	assert_non_null(wc);
	assert_false(wc->tls);
	assert_int_equal(wc->nusers, 0);
	webconfig__free(wc);
}

/* Each bad file: refused, and the error names the key (and what is wrong with it). */
static void test_bad(void **state)
{
	(void)state;
	static const struct {
		const char *yaml, *want[2];
	} bad[] = {
		{"tls_server_confg:\n  cert_file: server.crt\n", {"unknown key 'tls_server_confg'", "line 1"}},
		{"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  ca_file: ca.crt\n",
		 {"tls_server_config: unknown key 'ca_file'", "line 4"}},
		{"tls_server_config:\n  cert_file: server.crt\n", {"key_file", "required"}},
		{"tls_server_config:\n  key_file: server.key\n", {"cert_file", "required"}},
		{"tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
		 {"tls_server_config.cert_file", "missing.crt: No such file"}},
		{"tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n",
		 {"tls_server_config.key_file", "does not match"}},
		{"tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n",
		 {"tls_server_config.cert_file", "no PEM certificate"}},
		{"tls_server_config:\n  cert_file: server.crt\n  key_file: ca.crt\n",
		 {"tls_server_config.key_file", "no PEM private key"}},
		{"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Always\n",
		 {"tls_server_config.client_auth_type", "'Always'"}},
		{"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
		 "  client_auth_type: VerifyClientCertIfGiven\n",
		 {"tls_server_config.client_auth_type", "needs client_ca_file"}},
		{"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n",
		 {"tls_server_config.client_ca_file", "NoClientCert"}},
		{"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
		 "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: server.key\n",
		 {"tls_server_config.client_ca_file", "no PEM CA certificate"}},
		{"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS11\n",
		 {"tls_server_config.min_version", "TLS11"}},
		{"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  max_version: TLS14\n",
		 {"tls_server_config.max_version", "TLS14"}},
		{"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n"
		 "  max_version: TLS12\n",
		 {"tls_server_config.min_version", "above max_version"}},
		{"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  curve_preferences: [X25519]\n",
		 {"tls_server_config.curve_preferences", "not supported"}},
		{"tls_server_config:\n  cert: x\n  cert_file: server.crt\n  key_file: server.key\n",
		 {"tls_server_config.cert", "not both"}},
		{"tls_server_config:\n  cert_file: [a]\n  key_file: server.key\n",
		 {"tls_server_config.cert_file", "expected a string"}},
		{"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cert_file: server.crt\n",
		 {"tls_server_config", "'cert_file' given twice"}},
		{"http_server_config:\n  http2: yes please\n", {"http_server_config.http2", "true or false"}},
		{"http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
		 {"http_server_config.headers", "not supported"}},
		{"rate_limit:\n  interval: 1s\n  burst: 5\n", {"rate_limit", "not supported"}},
		{"basic_auth_users:\n  prom: secret\n", {"basic_auth_users.prom", "not a bcrypt hash"}},
		{"basic_auth_users:\n  prom: $1$abc$0123456789abcdefghijkl\n", {"basic_auth_users.prom", "bcrypt"}},
		{"basic_auth_users:\n  prom: $2y$03$" "kxeH7qoxRLgL5v1QeZCvcec1BCKLNf5ivkWO15ozpgbtwDeUoxbYu\n",
		 {"basic_auth_users.prom", "bcrypt"}}, /* cost below 4 */
		{"basic_auth_users:\n  prom: $2y$04$kxeH7qoxRLgL5v1QeZCvcec1BCKLNf5ivkWO15ozpgbtwDeUoxbY!\n",
		 {"basic_auth_users.prom", "bcrypt"}},
		{"basic_auth_users:\n  prom:\n", {"basic_auth_users.prom", "no password hash"}},
		{"basic_auth_users:\n  'a:b': " HASH_PROM "\n", {"basic_auth_users", "no ':'"}},
		{"basic_auth_users:\n  prom: " HASH_PROM "\n  prom: " HASH_PROM "\n", {"basic_auth_users", "twice"}},
		{"basic_auth_users: [prom]\n", {"basic_auth_users", "mapping"}},
		{"basic_auth_users:\n  prom: [" HASH_PROM "]\n", {"basic_auth_users.prom", "expected a string"}},
		{"tls_server_config: [\n", {"not valid YAML", "line 2"}},
		{"- tls_server_config\n", {"(top level)", "expected a mapping"}},
		{"basic_auth_users:\n---\nbasic_auth_users:\n", {"more than one YAML document", "web.yml"}},
	};
	char err[600];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct web_config *wc = load(bad[i].yaml, err, sizeof(err));
		if (wc || !strstr(err, "web.yml") || !strstr(err, bad[i].want[0]) || !strstr(err, bad[i].want[1]))
			fail_msg("case %zu: %s\nerror: %s", i, bad[i].yaml, wc ? "(accepted)" : err);
		webconfig__free(wc);
	}
	char path[128];
	struct web_config *wc = (void *)1;
	snprintf(path, sizeof(path), "%s/no-such.yml", dir);
	assert_int_equal(webconfig__load(path, &wc, err, sizeof(err)), -ENOENT);
	assert_null(wc);
	assert_non_null(strstr(err, "no-such.yml"));
	assert_int_not_equal(webconfig__load(dir, &wc, err, sizeof(err)), 0); /* a directory */
}

static void test_basic_auth(void **state)
{
	(void)state;
	char err[600];
	unsigned retry = 0;
	struct web_config *wc = load("basic_auth_users:\n"
				     "  prom: '" HASH_PROM "'\n"
				     "  alice: '" HASH_ALICE "'\n"
				     "  ow: '" HASH_OW "'\n"
				     "  py: '" HASH_PY "'\n",
				     err, sizeof(err));
	assert_non_null(wc);
	struct basic_auth *ba = basic_auth__new(wc);
	assert_non_null(ba);
	assert_int_equal(basic_auth__check(ba, "prom", "secret", &retry), AUTH_OK);
	assert_int_equal(basic_auth__check(ba, "prom", "secret", &retry), AUTH_OK); /* from the cache */
	assert_int_equal(basic_auth__check(ba, "prom", "Secret", &retry), AUTH_FAILED);
	assert_int_equal(basic_auth__check(ba, "prom", "", &retry), AUTH_FAILED);
	assert_int_equal(basic_auth__check(ba, "alice", "secret", &retry), AUTH_FAILED); /* another user's password */
	assert_int_equal(basic_auth__check(ba, "alice", "pa:ss w0rd", &retry), AUTH_OK);
	assert_int_equal(basic_auth__check(ba, "ow", "U*U", &retry), AUTH_OK);
	assert_int_equal(basic_auth__check(ba, "py", "secret", &retry), AUTH_OK);
	assert_int_equal(basic_auth__check(ba, "nobody", "secret", &retry), AUTH_FAILED);
	assert_int_equal(basic_auth__check(ba, "Prom", "secret", &retry), AUTH_FAILED); /* names are case-sensitive */
	/* The cache is keyed by user and password together: prom's cached password is not alice's. */
	assert_int_equal(basic_auth__check(ba, "alice", "secret", &retry), AUTH_FAILED);
	basic_auth__free(ba);
	webconfig__free(wc);
}

/* Uncached checks beyond their time budget are throttled (429), cached ones never are. Cost 12 (~0.2-0.4 s each
 * here) spends the 1 s budget in a few wrong guesses. */
static void test_auth_budget(void **state)
{
	(void)state;
	char err[600];
	unsigned retry = 0;
	/* htpasswd -nbBC 12 prom secret */
	struct web_config *wc = load("basic_auth_users:\n"
				     "  prom: '$2y$12$bvAgeuSl4EkfRSRN1vJPeeuPZSXZTTZZ96Q86Xa7BfVLfRtYFzIc6'\n",
				     err, sizeof(err));
	assert_non_null(wc);
	struct basic_auth *ba = basic_auth__new(wc);
	assert_int_equal(basic_auth__check(ba, "prom", "secret", &retry), AUTH_OK);
	enum auth_result r = AUTH_FAILED;
	int guesses = 0;
	while (guesses < 50 && (r = basic_auth__check(ba, "prom", "guess", &retry)) == AUTH_FAILED)
		guesses++;
	assert_int_equal(r, AUTH_THROTTLED);
	assert_true(guesses >= 1 && guesses < 50);
	assert_true(retry >= 1 && retry <= 3);
	assert_int_equal(basic_auth__check(ba, "prom", "secret", &retry), AUTH_OK); /* cached: not throttled */
	assert_int_equal(basic_auth__check(ba, "prom", "another", &retry), AUTH_THROTTLED);
	basic_auth__free(ba);
	webconfig__free(wc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_basic_auth),
		cmocka_unit_test(test_auth_budget),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
