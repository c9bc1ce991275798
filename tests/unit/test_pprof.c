// SPDX-License-Identifier: BSD-2-Clause
/* Unit tests for src/profile/pprof.c: a known profile is encoded, gunzipped and decoded twice, by protobuf-c from the
 * same schema and by protoc (an independent decoder; skipped, counted and explained when not installed), and
 * every field is checked against the samples the test added. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "profile/pprof.h"
#include "profile/profile.h"
#include "profile.pb-c.h"

typedef Perftools__Profiles__Profile Profile;

static const uint64_t START_NS = 1764172800123456789ull;	/* 2025-11-26T16:00:00.123456789Z */
static const uint64_t DURATION_NS = 30000000000ull;

/* Gunzip src into out (RFC 1952 wrapper, as the encoder promises); fails the test on bad input. */
static void gunzip(const struct buf *src, struct buf *out)
{
	z_stream zs = {0};
	assert_int_equal(inflateInit2(&zs, 16 + MAX_WBITS), Z_OK);
	zs.next_in = (Bytef *)src->p;
	zs.avail_in = (uInt)src->len;
	int rc;
	do {
		unsigned char tmp[4096];
		zs.next_out = tmp;
		zs.avail_out = sizeof(tmp);
		rc = inflate(&zs, Z_NO_FLUSH);
		assert_true(rc == Z_OK || rc == Z_STREAM_END);
		buf__append(out, tmp, sizeof(tmp) - zs.avail_out);
	} while (rc != Z_STREAM_END);
	assert_int_equal(zs.avail_in, 0);
	inflateEnd(&zs);
	assert_false(out->oom);
}

static Profile *decode(const struct profile *p, struct buf *raw)
{
	struct buf gz = {0};
	assert_int_equal(pprof_encode(p, &gz), 0);
	assert_true(gz.len > 18);
	assert_int_equal((unsigned char)gz.p[0], 0x1f);	/* gzip magic */
	assert_int_equal((unsigned char)gz.p[1], 0x8b);
	gunzip(&gz, raw);
	buf__free(&gz);
	Profile *prof = perftools__profiles__profile__unpack(NULL, raw->len, (const uint8_t *)raw->p);
	assert_non_null(prof);
	return prof;
}

static const char *S(const Profile *prof, int64_t i)
{
	assert_true(i >= 0 && (size_t)i < prof->n_string_table);
	return prof->string_table[i];
}

static const Perftools__Profiles__Function *function_of(const Profile *prof, uint64_t location_id)
{
	for (size_t i = 0; i < prof->n_location; i++) {
		const Perftools__Profiles__Location *loc = prof->location[i];
		if (loc->id != location_id)
			continue;
		assert_int_equal(loc->n_line, 1);
		for (size_t j = 0; j < prof->n_function; j++)
			if (prof->function[j]->id == loc->line[0]->function_id)
				return prof->function[j];
		fail_msg("location %llu names function %llu, which does not exist", (unsigned long long)location_id,
			 (unsigned long long)loc->line[0]->function_id);
	}
	fail_msg("no location %llu", (unsigned long long)location_id);
	return NULL;
}

static const char *mapping_file_of(const Profile *prof, uint64_t location_id)
{
	for (size_t i = 0; i < prof->n_location; i++) {
		if (prof->location[i]->id != location_id)
			continue;
		uint64_t m = prof->location[i]->mapping_id;
		if (!m)
			return NULL;
		for (size_t j = 0; j < prof->n_mapping; j++)
			if (prof->mapping[j]->id == m)
				return S(prof, prof->mapping[j]->filename);
		fail_msg("location %llu names mapping %llu, which does not exist", (unsigned long long)location_id,
			 (unsigned long long)m);
	}
	return NULL;
}

/* The value of label key on sample s, NULL when absent. */
static const char *label(const Profile *prof, const Perftools__Profiles__Sample *s, const char *key)
{
	for (size_t i = 0; i < s->n_label; i++)
		if (!strcmp(S(prof, s->label[i]->key), key)) {
			assert_int_equal(s->label[i]->num, 0);
			return S(prof, s->label[i]->str);
		}
	return NULL;
}

/* The sample with these labels whose stack, leaf first, is leaf_first ("leaf;caller;main"). */
static const Perftools__Profiles__Sample *find(const Profile *prof, const char *svc, const char *thr,
					       const char *leaf_first)
{
	for (size_t i = 0; i < prof->n_sample; i++) {
		const Perftools__Profiles__Sample *s = prof->sample[i];
		const char *ls = label(prof, s, "service_name"), *lt = label(prof, s, "thread_name");
		if (!ls || !lt || strcmp(ls, svc) || strcmp(lt, thr))
			continue;
		char text[512] = "";
		for (size_t d = 0; d < s->n_location_id; d++) {
			if (d)
				strcat(text, ";");
			strcat(text, S(prof, function_of(prof, s->location_id[d])->name));
		}
		if (!strcmp(text, leaf_first))
			return s;
	}
	return NULL;
}

static void add(struct profile *p, const char *svc, const char *thr, const char *const *leaf_first,
		const char *const *modules, size_t n, uint64_t count, uint64_t ns)
{
	struct profile_frame f[16];
	for (size_t i = 0; i < n; i++)
		f[i] = (struct profile_frame){ leaf_first[i], modules ? modules[i] : NULL };
	assert_int_equal(profile__add(p, svc, thr, f, n, count, ns), 0);
}

/* The known CPU profile: 99 Hz, two services, shared functions, one unknown module. */
static struct profile *known_cpu(void)
{
	struct profile *p = profile__new(PROFILE_CPU, 99);
	const uint64_t period = 1000000000ull / 99;
	static const char *const s1[] = { "json_dumps", "handler", "main" };
	static const char *const m1[] = { "libpython3.11.so", "/usr/bin/python3.11", "/usr/bin/python3.11" };
	static const char *const s2[] = { "handler", "main" };
	static const char *const m2[] = { "/usr/bin/python3.11", "/usr/bin/python3.11" };
	static const char *const s3[] = { "exec_simple_query", "PostgresMain", "main" };
	static const char *const m3[] = { "postgres", "postgres", NULL };
	for (int i = 0; i < 7; i++)
		add(p, "api", "uvicorn", s1, m1, 3, 1, period);
	add(p, "api", "uvicorn", s2, m2, 2, 2, 2 * period);
	add(p, "api", "worker-1", s2, m2, 2, 1, period);
	add(p, "postgres", "postgres", s3, m3, 3, 5, 5 * period);
	profile__set_time(p, START_NS, DURATION_NS);
	return p;
}

static void test_cpu_fields(void **state)
{
	struct profile *p = known_cpu();
	struct buf raw = {0};
	Profile *prof = decode(p, &raw);
	const uint64_t period = 1000000000ull / 99;

	/* The string table starts with "" and holds every string once. */
	assert_true(prof->n_string_table > 1);
	assert_string_equal(prof->string_table[0], "");
	for (size_t i = 0; i < prof->n_string_table; i++)
		for (size_t j = i + 1; j < prof->n_string_table; j++)
			assert_string_not_equal(prof->string_table[i], prof->string_table[j]);

	assert_int_equal(prof->n_sample_type, 2);
	assert_string_equal(S(prof, prof->sample_type[0]->type), "samples");
	assert_string_equal(S(prof, prof->sample_type[0]->unit), "count");
	assert_string_equal(S(prof, prof->sample_type[1]->type), "cpu");
	assert_string_equal(S(prof, prof->sample_type[1]->unit), "nanoseconds");
	assert_non_null(prof->period_type);
	assert_string_equal(S(prof, prof->period_type->type), "cpu");
	assert_string_equal(S(prof, prof->period_type->unit), "nanoseconds");
	assert_int_equal(prof->period, 10101010);
	assert_string_equal(S(prof, prof->default_sample_type), "cpu");
	assert_int_equal(prof->time_nanos, START_NS);
	assert_int_equal(prof->duration_nanos, DURATION_NS);
	assert_int_equal(prof->n_comment, 0);

	/* One function and one location per distinct name: json_dumps, handler, main, exec_simple_query,
	 * PostgresMain; ids non-zero and unique. */
	assert_int_equal(prof->n_function, 5);
	assert_int_equal(prof->n_location, 5);
	for (size_t i = 0; i < prof->n_function; i++) {
		assert_true(prof->function[i]->id != 0);
		assert_true(prof->location[i]->id != 0);
		assert_int_equal(prof->function[i]->system_name, prof->function[i]->name);
		for (size_t j = i + 1; j < prof->n_function; j++) {
			assert_true(prof->function[i]->id != prof->function[j]->id);
			assert_true(prof->location[i]->id != prof->location[j]->id);
			assert_string_not_equal(S(prof, prof->function[i]->name), S(prof, prof->function[j]->name));
		}
	}
	/* Mappings: one per module, named by file; main keeps the first module it was seen with. */
	assert_int_equal(prof->n_mapping, 3);
	for (size_t i = 0; i < prof->n_mapping; i++) {
		assert_true(prof->mapping[i]->id != 0);
		assert_true(prof->mapping[i]->has_functions);
	}

	/* Samples: values [count, ns], locations leaf first, labels service_name and thread_name. */
	assert_int_equal(prof->n_sample, 4);
	const Perftools__Profiles__Sample *s = find(prof, "api", "uvicorn", "json_dumps;handler;main");
	assert_non_null(s);
	assert_int_equal(s->n_value, 2);
	assert_int_equal(s->value[0], 7);
	assert_int_equal(s->value[1], 7 * period);
	assert_int_equal(s->n_label, 2);
	assert_string_equal(mapping_file_of(prof, s->location_id[0]), "libpython3.11.so");
	assert_string_equal(mapping_file_of(prof, s->location_id[1]), "/usr/bin/python3.11");
	assert_string_equal(mapping_file_of(prof, s->location_id[2]), "/usr/bin/python3.11");

	s = find(prof, "api", "uvicorn", "handler;main");
	assert_non_null(s);
	assert_int_equal(s->value[0], 2);
	assert_int_equal(s->value[1], 2 * period);
	s = find(prof, "api", "worker-1", "handler;main");
	assert_non_null(s);
	assert_int_equal(s->value[0], 1);
	assert_int_equal(s->value[1], period);
	s = find(prof, "postgres", "postgres", "exec_simple_query;PostgresMain;main");
	assert_non_null(s);
	assert_int_equal(s->value[0], 5);
	assert_int_equal(s->value[1], 5 * period);
	assert_string_equal(mapping_file_of(prof, s->location_id[0]), "postgres");
	assert_string_equal(mapping_file_of(prof, s->location_id[2]), "/usr/bin/python3.11");
	assert_null(find(prof, "api", "uvicorn", "main;handler"));	/* root-first would be wrong */

	perftools__profiles__profile__free_unpacked(prof, NULL);
	buf__free(&raw);
	profile__free(p);
}

static void test_offcpu_fields(void **state)
{
	struct profile *p = profile__new(PROFILE_OFFCPU, 0);
	static const char *const s1[] = { "schedule", "do_epoll_wait", "epoll_wait", "main" };
	static const char *const m1[] = { "[kernel]", "[kernel]", "libc.so.6", NULL };
	add(p, "api", "uvicorn", s1, m1, 4, 3, 1500000000);
	/* No service or thread: the labels are left out, not written empty. */
	add(p, NULL, NULL, s1 + 3, NULL, 1, 1, 42);
	struct buf raw = {0};
	Profile *prof = decode(p, &raw);
	assert_string_equal(prof->string_table[0], "");
	assert_int_equal(prof->n_sample_type, 2);
	assert_string_equal(S(prof, prof->sample_type[0]->type), "samples");
	assert_string_equal(S(prof, prof->sample_type[0]->unit), "count");
	assert_string_equal(S(prof, prof->sample_type[1]->type), "off_cpu");
	assert_string_equal(S(prof, prof->sample_type[1]->unit), "nanoseconds");
	assert_string_equal(S(prof, prof->period_type->type), "off_cpu");
	assert_string_equal(S(prof, prof->period_type->unit), "nanoseconds");
	assert_int_equal(prof->period, 1);
	assert_string_equal(S(prof, prof->default_sample_type), "off_cpu");
	assert_int_equal(prof->time_nanos, 0);
	assert_int_equal(prof->n_sample, 2);
	const Perftools__Profiles__Sample *s = find(prof, "api", "uvicorn", "schedule;do_epoll_wait;epoll_wait;main");
	assert_non_null(s);
	assert_int_equal(s->value[0], 3);
	assert_int_equal(s->value[1], 1500000000);
	assert_string_equal(mapping_file_of(prof, s->location_id[0]), "[kernel]");
	assert_null(mapping_file_of(prof, s->location_id[3]));
	assert_int_equal(prof->n_mapping, 2);
	const Perftools__Profiles__Sample *bare = prof->sample[0] == s ? prof->sample[1] : prof->sample[0];
	assert_int_equal(bare->n_label, 0);
	assert_int_equal(bare->n_location_id, 1);
	assert_string_equal(S(prof, function_of(prof, bare->location_id[0])->name), "main");
	assert_int_equal(bare->value[1], 42);
	perftools__profiles__profile__free_unpacked(prof, NULL);
	buf__free(&raw);
	profile__free(p);
}

static void test_empty_and_dropped(void **state)
{
	struct profile *p = profile__new(PROFILE_CPU, 19);
	struct buf raw = {0};
	Profile *prof = decode(p, &raw);
	assert_int_equal(prof->n_sample, 0);
	assert_int_equal(prof->n_location, 0);
	assert_int_equal(prof->n_function, 0);
	assert_int_equal(prof->n_sample_type, 2);
	assert_string_equal(prof->string_table[0], "");
	assert_int_equal(prof->period, 1000000000 / 19);
	perftools__profiles__profile__free_unpacked(prof, NULL);
	buf__reset(&raw);

	/* Samples past the stack limit: an [other] stack and a comment saying how many. */
	profile__set_max_stacks(p, 1);
	static const char *const a[] = { "a" }, *const b[] = { "b" };
	add(p, "api", "t", a, NULL, 1, 1, 1);
	add(p, "api", "t", b, NULL, 1, 4, 4);
	prof = decode(p, &raw);
	assert_int_equal(prof->n_comment, 1);
	assert_string_equal(S(prof, prof->comment[0]), "4 samples past the stack limit are in [other]");
	const Perftools__Profiles__Sample *s = find(prof, "api", PROFILE_OTHER, PROFILE_OTHER);
	assert_non_null(s);
	assert_int_equal(s->value[0], 4);
	perftools__profiles__profile__free_unpacked(prof, NULL);
	buf__free(&raw);
	profile__free(p);
	assert_int_equal(pprof_encode(NULL, &raw), -EINVAL);
}

/* proto/profile.proto from the working directory (the test runner's is the top of the tree) or from the
 * binary's (build/tests/test_pprof: two levels down). */
static int find_proto(char *dir, size_t n)
{
	if (!access("proto/profile.proto", R_OK)) {
		snprintf(dir, n, "proto");
		return 0;
	}
	char exe[4096];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len <= 0)
		return -ENOENT;
	exe[len] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash)
		*slash = '\0';
	snprintf(dir, n, "%s/../../proto", exe);
	char file[4400];
	snprintf(file, sizeof(file), "%s/profile.proto", dir);
	return access(file, R_OK) ? -ENOENT : 0;
}

static char proto_dir[4200];

/* The independent decoder: protoc reads the bytes with the schema and prints text, which must show the functions,
 * values and labels the test put in. */
static void test_protoc_decode(void **state)
{
	struct profile *p = known_cpu();
	struct buf raw = {0}, text = {0};
	Profile *prof = decode(p, &raw);
	perftools__profiles__profile__free_unpacked(prof, NULL);

	char bin[] = "/tmp/loupe-pprof-XXXXXX";
	int fd = mkstemp(bin);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, raw.p, raw.len), (ssize_t)raw.len);
	close(fd);
	char cmd[10000];
	snprintf(cmd, sizeof(cmd), "protoc --decode=perftools.profiles.Profile -I'%s' '%s/profile.proto' < '%s' 2>&1",
		 proto_dir, proto_dir, bin);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	char tmp[4096];
	size_t n;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf__append(&text, tmp, n);
	int status = pclose(f);
	unlink(bin);
	if (status != 0)
		fail_msg("protoc failed (%d): %s", status, text.p ? text.p : "");

	static const char *const want[] = {
		"string_table: \"\"\n", "string_table: \"samples\"", "string_table: \"count\"",
		"string_table: \"cpu\"", "string_table: \"nanoseconds\"", "string_table: \"service_name\"",
		"string_table: \"thread_name\"", "string_table: \"json_dumps\"", "string_table: \"handler\"",
		"string_table: \"main\"", "string_table: \"exec_simple_query\"", "string_table: \"PostgresMain\"",
		"string_table: \"api\"", "string_table: \"uvicorn\"", "string_table: \"worker-1\"",
		"string_table: \"libpython3.11.so\"",
		"value: 7\n  value: 70707070\n",		/* json_dumps: 7 samples of 10101010 ns */
		"value: 2\n  value: 20202020\n", "value: 1\n  value: 10101010\n", "value: 5\n  value: 50505050\n",
		"period: 10101010\n", "time_nanos: 1764172800123456789\n", "duration_nanos: 30000000000\n",
		"period_type {\n", "has_functions: true",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (!strstr(text.p, want[i]))
			fail_msg("protoc's decoding lacks \"%s\":\n%s", want[i], text.p);
	/* Every sample in protoc's view: 4 "sample {" blocks with 2 labels each. */
	size_t samples = 0, labels = 0;
	for (const char *q = text.p; (q = strstr(q, "\nsample {")); q++)
		samples++;
	for (const char *q = text.p; (q = strstr(q, "label {")); q++)
		labels++;
	assert_int_equal(samples, 4);
	assert_int_equal(labels, 8);
	buf__free(&text);
	buf__free(&raw);
	profile__free(p);
}

int main(void)
{
	const struct CMUnitTest all[] = {
		cmocka_unit_test(test_cpu_fields),
		cmocka_unit_test(test_offcpu_fields),
		cmocka_unit_test(test_empty_and_dropped),
		cmocka_unit_test(test_protoc_decode),
	};
	size_t n = sizeof(all) / sizeof(all[0]);
	/* cmocka 1.1's skip() prints "not ok ... # SKIP", which TAP readers count as a failure: a test that cannot
	 * run here is left out and reported as one TAP skip line, with the reason. */
	if (system("command -v protoc >/dev/null 2>&1") != 0) {
		printf("ok - test_protoc_decode # SKIP protoc not installed (apt-get install protobuf-compiler)\n");
		n--;
	} else if (find_proto(proto_dir, sizeof(proto_dir))) {
		printf("ok - test_protoc_decode # SKIP proto/profile.proto not found from here or from the binary\n");
		n--;
	}
	fflush(stdout);
	return _cmocka_run_group_tests("test_pprof", all, n, NULL, NULL);
}
