#define _DEFAULT_SOURCE
/* mw_request_* and mw_tracker_* through the C ABI: every function, the error paths.
 * Built by tests/c/run.sh against libmemwarden.so and libmemwarden.a, and run under valgrind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "memwarden.h"

#include "check.h"

static long num_after(const char *json, const char *key) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *at = strstr(json, pat);
    return at ? strtol(at + strlen(pat), NULL, 10) : -1;
}

static void test_request(void) {
    mw_request *r = NULL;
    CHECK_STATUS(mw_request_new("{\"sample_rate\": 2}", &r), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("sample_rate");
    CHECK_STATUS(mw_request_new("{\"threshold_mb\": -1}", &r), MW_STATUS_INVALID_CONFIG);
    CHECK_STATUS(mw_request_new(NULL, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_request_new("{\"threshold_mb\": 1, \"memory_limit\": \"128M\", \"log_file\": \"/dev/null\"}", &r),
                 MW_STATUS_OK);

    uint64_t a = 0, b = 0;
    CHECK_STATUS(mw_request_begin_with(r, "GET /users/{id}", 10u << 20, &a), MW_STATUS_OK);
    CHECK_STATUS(mw_request_begin(r, "GET /health", &b), MW_STATUS_OK);
    CHECK(a != 0 && b != 0 && a != b);
    char *rep = NULL;
    CHECK_STATUS(mw_request_end_with(r, a, 12u << 20, 15u << 20, &rep), MW_STATUS_OK);
    CHECK(rep && strstr(rep, "\"high_usage\":true") && strstr(rep, "\"overlapped\":1"));
    CHECK(rep && strstr(rep, "\"X-Memory-Limit\":\"128.0\"") && strstr(rep, "\"X-Memory-Peak\":\"15.0\""));
    CHECK(num_after(rep, "delta_bytes") == 2 << 20);
    mw_string_free(rep);
    rep = NULL;
    CHECK_STATUS(mw_request_end(r, a, &rep), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("not in flight");
    CHECK_STATUS(mw_request_end(r, b, &rep), MW_STATUS_OK);
    CHECK(rep && strstr(rep, "\"route\":\"GET /health\""));
    mw_string_free(rep);
    CHECK_STATUS(mw_request_end(r, 0, &rep), MW_STATUS_OK);
    CHECK(rep && strcmp(rep, "null") == 0);
    mw_string_free(rep);
    CHECK_STATUS(mw_request_begin(r, NULL, &a), MW_STATUS_NULL_ARGUMENT);

    char *an = NULL;
    CHECK_STATUS(mw_request_analytics(r, &an), MW_STATUS_OK);
    CHECK(an && strstr(an, "\"GET /users/{id}\"") && strstr(an, "\"in_flight\":0"));
    mw_string_free(an);
    mw_request_free(r);
    CHECK_STATUS(mw_request_analytics(r, &an), MW_STATUS_INVALID_ARGUMENT);

    /* sampled out: token 0 */
    CHECK_STATUS(mw_request_new("{\"sample_rate\": 0}", &r), MW_STATUS_OK);
    CHECK_STATUS(mw_request_begin(r, "GET /", &a), MW_STATUS_OK);
    CHECK(a == 0);
    mw_request_free(r);
    mw_request_free(NULL);
}

static void test_tracker(void) {
    mw_tracker *t = NULL;
    CHECK_STATUS(mw_tracker_new("{\"thresholds\": {\"warning\": 1.5}}", &t), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("warning");
    CHECK_STATUS(mw_tracker_new("{\"maxMemoryUsage\": 1000, \"cleanupInterval\": 0, \"enableAutoCleanup\": true}", &t),
                 MW_STATUS_OK);
    uint64_t ids[9];
    for (int i = 0; i < 9; i++) CHECK_STATUS(mw_tracker_track(t, "chunk", 100, "{\"n\": 1}", &ids[i]), MW_STATUS_OK);
    uint64_t bad;
    CHECK_STATUS(mw_tracker_track(t, "chunk", 1, "{nope", &bad), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("metadata_json");

    char *j = NULL;
    CHECK_STATUS(mw_tracker_get(t, ids[0], &j), MW_STATUS_OK);
    CHECK(j && strstr(j, "\"type\":\"chunk\"") && strstr(j, "\"createdAt\":") && strstr(j, "\"n\":1"));
    mw_string_free(j);
    CHECK_STATUS(mw_tracker_get(t, 12345, &j), MW_STATUS_NOT_FOUND);

    CHECK_STATUS(mw_tracker_release(t, ids[8]), MW_STATUS_OK);
    CHECK_STATUS(mw_tracker_release(t, ids[8]), MW_STATUS_NOT_FOUND);
    CHECK_STATUS(mw_tracker_mark_collected(t, ids[7]), MW_STATUS_OK);
    CHECK_STATUS(mw_tracker_stats(t, &j), MW_STATUS_OK);
    CHECK(num_after(j, "totalAllocated") == 700 && num_after(j, "activeResources") == 7);
    CHECK(num_after(j, "peakMemoryUsage") == 900 && num_after(j, "collected_unreleased") == 1);
    mw_string_free(j);

    CHECK_STATUS(mw_tracker_poll(t, &j), MW_STATUS_OK);
    CHECK(j && strstr(j, "memoryWarning") && strstr(j, "memoryCritical"));
    mw_string_free(j);
    CHECK_STATUS(mw_tracker_cleanup(t, &j), MW_STATUS_OK);
    CHECK(j && num_after(j, "freed_bytes") == 100);
    mw_string_free(j);
    CHECK_STATUS(mw_tracker_stats(t, &j), MW_STATUS_OK);
    CHECK(num_after(j, "totalAllocated") == 600 && num_after(j, "cleaned_up") == 1);
    mw_string_free(j);

    CHECK_STATUS(mw_tracker_stats(t, NULL), MW_STATUS_NULL_ARGUMENT);
    mw_tracker_free(t);
    CHECK_STATUS(mw_tracker_release(t, ids[0]), MW_STATUS_INVALID_ARGUMENT);
    mw_tracker_free(NULL);

    /* a timer thread is started and stopped by free */
    CHECK_STATUS(mw_tracker_new("{\"cleanup_interval\": 5, \"enable_auto_cleanup\": true}", &t), MW_STATUS_OK);
    mw_tracker_free(t);
}

int main(void) {
    test_request();
    test_tracker();
    return CHECK_SUMMARY();
}
