// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/lib/log.c: level parsing and filtering, the JSON line format on stderr, rate limiting.
 * stderr is redirected to a temporary file around each log call; assertions run after it is restored. */
#include <bpf/libbpf.h>
#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/log.h"
#include "lib/util.h"

/* ---- stderr capture ---- */

static int saved_stderr = -1;
static int capture_fd = -1;

static void capture_begin(void)
{
	char path[] = "/tmp/loupe-test-log-XXXXXX";
	capture_fd = mkstemp(path);
	assert_true(capture_fd >= 0);
	unlink(path);
	saved_stderr = dup(STDERR_FILENO);
	assert_true(saved_stderr >= 0);
	assert_int_equal(dup2(capture_fd, STDERR_FILENO), STDERR_FILENO);
}

/* Restore stderr and return what was written (heap string). */
static char *capture_end(void)
{
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	char *text = NULL;
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", capture_fd);
	long n = read_file(path, &text);
	close(capture_fd);
	assert_true(n >= 0);
	return text;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* ---- a strict parser for the flat JSON objects the logger writes ---- */

#define MAX_FIELDS 8
struct json_obj {
	int n;
	char key[MAX_FIELDS][32];
	char val[MAX_FIELDS][512]; /* strings decoded; numbers as written */
	int is_str[MAX_FIELDS];
};

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	return p;
}

/* Parse a JSON string at p (which points at the opening quote) into dst; NULL on a syntax error. */
static const char *parse_str(const char *p, char *dst, size_t n)
{
	size_t len = 0;

	if (*p++ != '"')
		return NULL;
	for (;;) {
		unsigned char c = (unsigned char)*p++;
		unsigned cp;
		if (c == '"')
			break;
		if (c < 0x20) /* RFC 8259: control characters must be escaped */
			return NULL;
		if (c == '\\') {
			switch (*p++) {
			case '"': c = '"'; break;
			case '\\': c = '\\'; break;
			case '/': c = '/'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u':
				if (sscanf(p, "%4x", &cp) != 1 || !isxdigit((unsigned char)p[3]) || cp > 0x7f)
					return NULL; /* the logger only escapes ASCII control characters */
				c = (unsigned char)cp;
				p += 4;
				break;
			default: return NULL;
			}
		}
		if (len + 1 >= n)
			return NULL;
		dst[len++] = (char)c;
	}
	dst[len] = '\0';
	return p;
}

static const char *parse_number(const char *p, char *dst, size_t n)
{
	char *end;
	strtod(p, &end);
	if (end == p || (size_t)(end - p) >= n || *p == '+' || !isdigit((unsigned char)end[-1]))
		return NULL;
	memcpy(dst, p, (size_t)(end - p));
	dst[end - p] = '\0';
	return end;
}

/* Parse exactly one object followed by "\n" and the end of the text. Returns 0 or -1. */
static int parse_line(const char *s, struct json_obj *o)
{
	const char *p = skip_ws(s);

	memset(o, 0, sizeof(*o));
	if (*p++ != '{')
		return -1;
	p = skip_ws(p);
	if (*p == '}')
		goto done;
	for (;;) {
		if (o->n == MAX_FIELDS)
			return -1;
		p = parse_str(skip_ws(p), o->key[o->n], sizeof(o->key[0]));
		if (!p)
			return -1;
		p = skip_ws(p);
		if (*p++ != ':')
			return -1;
		p = skip_ws(p);
		o->is_str[o->n] = *p == '"';
		p = o->is_str[o->n] ? parse_str(p, o->val[o->n], sizeof(o->val[0]))
				    : parse_number(p, o->val[o->n], sizeof(o->val[0]));
		if (!p)
			return -1;
		for (int i = 0; i < o->n; i++)
			if (!strcmp(o->key[i], o->key[o->n]))
				return -1; /* duplicate key */
		o->n++;
		p = skip_ws(p);
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p == '}')
			break;
		return -1;
	}
done:
	p++;
	return strcmp(p, "\n") ? -1 : 0;
}

static const char *field(const struct json_obj *o, const char *key)
{
	for (int i = 0; i < o->n; i++)
		if (!strcmp(o->key[i], key))
			return o->val[i];
	return NULL;
}

/* ---- tests ---- */

static void test_level_parse(void **state)
{
	static const struct {
		const char *s;
		enum log_level want;
	} ok[] = {
		{"debug", LOG_DEBUG}, {"info", LOG_INFO},   {"warn", LOG_WARN}, {"warning", LOG_WARN},
		{"error", LOG_ERROR}, {"ERROR", LOG_ERROR}, {"Info", LOG_INFO}, {"off", LOG_OFF},
	};
	enum log_level lvl;

	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		lvl = (enum log_level)-1;
		assert_int_equal(log_level_parse(ok[i].s, &lvl), 0);
		assert_int_equal(lvl, ok[i].want);
	}
	static const char *const bad[] = {"", "verbose", "err", "infos", "2", " info"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		lvl = LOG_ERROR;
		assert_int_equal(log_level_parse(bad[i], &lvl), -EINVAL);
		assert_int_equal(lvl, LOG_ERROR); /* untouched on error */
	}
}

static void test_json_line(void **state)
{
	struct json_obj o;

	log_set_level(LOG_INFO);
	struct timespec before, after;
	clock_gettime(CLOCK_REALTIME, &before);
	capture_begin();
	log_msg(LOG_WARN, "attach_failed", "feature %s: %s (%d)", "syscalls", "EPERM", -1);
	char *text = capture_end();
	clock_gettime(CLOCK_REALTIME, &after);

	assert_int_equal(count_lines(text), 1);
	assert_int_equal(parse_line(text, &o), 0);
	assert_int_equal(o.n, 4);
	assert_string_equal(field(&o, "level"), "warn");
	assert_string_equal(field(&o, "event"), "attach_failed");
	assert_string_equal(field(&o, "msg"), "feature syscalls: EPERM (-1)");

	/* ts: RFC 3339 UTC with milliseconds, within the call's time span. */
	const char *ts = field(&o, "ts");
	assert_non_null(ts);
	struct tm tm = {0};
	const char *rest = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);
	assert_non_null(rest);
	assert_int_equal(strlen(rest), 5);
	assert_true(rest[0] == '.' && isdigit((unsigned char)rest[1]) && isdigit((unsigned char)rest[2]) &&
		    isdigit((unsigned char)rest[3]) && rest[4] == 'Z');
	double t = (double)timegm(&tm) + atoi(rest + 1) / (double)MSEC_PER_SEC;
	assert_true(t >= (double)before.tv_sec - 0.001);
	assert_true(t <= (double)after.tv_sec + ns_to_seconds((uint64_t)after.tv_nsec) + 0.001);
	free(text);
}

static void test_json_escaping(void **state)
{
	struct json_obj o;
	const char *nasty = "quote\" backslash\\ nl\n cr\r tab\t bell\x07 esc\x1b del\x7f end";

	log_set_level(LOG_INFO);
	capture_begin();
	log_msg(LOG_ERROR, "ut_escape\"ev", "%s", nasty);
	/* A trailing newline (as libbpf writes) does not end up in the record. */
	log_msg(LOG_ERROR, "ut_escape_nl", "libbpf style message\n");
	char *text = capture_end();

	assert_int_equal(count_lines(text), 2);
	/* No raw control character besides each record's final newline. */
	for (const char *p = text; *p; p++)
		assert_true((unsigned char)*p >= 0x20 || *p == '\n');

	char *second = strchr(text, '\n') + 1;
	char first[2048];
	snprintf(first, sizeof(first), "%.*s", (int)(second - text), text);
	assert_int_equal(parse_line(first, &o), 0);
	assert_string_equal(field(&o, "msg"), nasty);
	assert_string_equal(field(&o, "event"), "ut_escape\"ev");
	assert_string_equal(field(&o, "level"), "error");

	assert_int_equal(parse_line(second, &o), 0);
	assert_string_equal(field(&o, "msg"), "libbpf style message");
	free(text);
}

static void test_level_filter(void **state)
{
	enum log_level saved = log_get_level();

	log_set_level(LOG_WARN);
	assert_int_equal(log_get_level(), LOG_WARN);
	capture_begin();
	log_msg(LOG_DEBUG, "ut_filter_debug", "no");
	log_msg(LOG_INFO, "ut_filter_info", "no");
	log_msg(LOG_WARN, "ut_filter_warn", "yes");
	log_msg(LOG_ERROR, "ut_filter_error", "yes");
	char *warn_text = capture_end();

	log_set_level(LOG_DEBUG);
	capture_begin();
	log_debug("ut_filter_debug2", "yes");
	char *debug_text = capture_end();

	log_set_level(LOG_OFF);
	capture_begin();
	log_error("ut_filter_off", "no");
	char *off_text = capture_end();
	log_set_level(saved);

	assert_int_equal(count_lines(warn_text), 2);
	assert_null(strstr(warn_text, "ut_filter_debug"));
	assert_null(strstr(warn_text, "ut_filter_info"));
	assert_non_null(strstr(warn_text, "\"event\":\"ut_filter_warn\""));
	assert_non_null(strstr(warn_text, "\"event\":\"ut_filter_error\""));
	assert_int_equal(count_lines(debug_text), 1);
	assert_non_null(strstr(debug_text, "\"level\":\"debug\""));
	assert_string_equal(off_text, "");
	free(warn_text);
	free(debug_text);
	free(off_text);
}

static void test_rate_limit(void **state)
{
	log_set_level(LOG_INFO);
	unsigned long suppressed0 = log_suppressed_total();

	capture_begin();
	for (int i = 0; i < 25; i++)
		log_warn("ut_burst", "record %d", i);
	char *burst = capture_end();
	unsigned long suppressed1 = log_suppressed_total();

	/* Other events are not limited by ut_burst's budget, and do not reset it. */
	capture_begin();
	for (int i = 0; i < 20; i++)
		log_warn("ut_other", "other %d", i);
	char name[32];
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "ut_quiet_%d", i);
		log_warn(name, "one record");
	}
	log_warn("ut_burst", "still over budget");
	char *others = capture_end();
	unsigned long suppressed2 = log_suppressed_total();

	/* The first 20 records of the window pass, the other 5 are counted. */
	assert_int_equal(count_lines(burst), 20);
	assert_non_null(strstr(burst, "\"msg\":\"record 19\""));
	assert_null(strstr(burst, "\"msg\":\"record 20\""));
	assert_int_equal(suppressed1 - suppressed0, 5);

	/* ut_other: its own 20; 40 ut_quiet_N: one each; the ut_burst record is still dropped. */
	assert_int_equal(count_lines(others), 20 + 40);
	assert_null(strstr(others, "still over budget"));
	assert_non_null(strstr(others, "\"msg\":\"other 19\""));
	assert_non_null(strstr(others, "\"event\":\"ut_quiet_39\""));
	assert_int_equal(suppressed2 - suppressed1, 1);
	free(burst);
	free(others);
}

static void test_libbpf_hook(void **state)
{
	log_set_level(LOG_INFO);
	log_hook_libbpf();
	capture_begin();
	/* libbpf warns when it cannot open an object file. */
	struct bpf_object *obj = bpf_object__open_file("/nonexistent/loupe-test.bpf.o", NULL);
	char *text = capture_end();
	libbpf_set_print(NULL);

	assert_null(obj);
	assert_true(count_lines(text) >= 1);
	struct json_obj o;
	char *nl = strchr(text, '\n');
	nl[1] = '\0';
	assert_int_equal(parse_line(text, &o), 0);
	assert_string_equal(field(&o, "event"), "libbpf");
	assert_string_equal(field(&o, "level"), "warn");
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_level_parse),
		cmocka_unit_test(test_json_line),
		cmocka_unit_test(test_json_escaping),
		cmocka_unit_test(test_level_filter),
		cmocka_unit_test(test_rate_limit),
		cmocka_unit_test(test_libbpf_hook),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
