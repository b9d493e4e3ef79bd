#define _DEFAULT_SOURCE
/* mw_request_* (peek included) and mw_tracker_* through the C ABI: every function, the error paths.
 * Built by tests/c/run.sh against libmemwarden.so and libmemwarden.a, and run under valgrind. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "memwarden.h"

#include "check.h"

static long num_after(const char *json, const char *key) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *at = strstr(json, pat);
    return at ? strtol(at + strlen(pat), NULL, 10) : -1;
}

static int32_t count_high_usage(void *user, const char *report, char *error_buf, size_t error_len) {
    (void)report;
    (void)error_buf;
    (void)error_len;
    atomic_fetch_add((atomic_int *)user, 1);
    return 0;
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

    /* mw_request_end_into: the figures in a struct, the header block from the core */
    CHECK_STATUS(mw_request_new("{\"threshold_mb\": 1, \"memory_limit\": \"128M\", \"log_file\": \"/dev/null\"}", &r),
                 MW_STATUS_OK);
    mw_request_report out;
    memset(&out, 0xAB, sizeof out);
    CHECK_STATUS(mw_request_begin_with(r, "GET /users/{id}", 40u << 20, &a), MW_STATUS_OK);
    CHECK_STATUS(mw_request_end_into(r, a, 45u << 20, 50u << 20, &out), MW_STATUS_OK);
    CHECK(out.measured && out.high_usage && out.overlapped == 0);
    CHECK(out.start_bytes == 40u << 20 && out.end_bytes == 45u << 20 && out.peak_bytes == 50u << 20);
    CHECK(out.delta_bytes == 5 << 20 && out.duration_ms >= 0.0 && out.limit_bytes == 128u << 20);
    CHECK(strcmp(out.headers, "X-Memory-Usage: 45.0\nX-Memory-Peak: 50.0\nX-Memory-Limit: 128.0\n"
                              "X-Memory-Efficiency: 90.0\n") == 0);
    CHECK_STATUS(mw_request_end_into(r, a, 1, 1, &out), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("not in flight");
    CHECK(out.measured && out.end_bytes == 45u << 20); /* untouched on error */
    CHECK_STATUS(mw_request_end_into(r, 0, 1, 1, &out), MW_STATUS_OK);
    CHECK(!out.measured && !out.high_usage && out.end_bytes == 0 && out.headers[0] == '\0');
    CHECK_STATUS(mw_request_begin_with(r, "GET /", 1, &a), MW_STATUS_OK);
    CHECK_STATUS(mw_request_end_into(r, a, 1, 0, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_request_handler_failed(r, "GET /big", "alerting is down"), MW_STATUS_OK);
    CHECK_STATUS(mw_request_handler_failed(r, NULL, "x"), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_request_analytics(r, &an), MW_STATUS_OK);
    CHECK(an && num_after(an, "handler_errors") == 1);
    mw_string_free(an);
    mw_request_free(r);
    CHECK_STATUS(mw_request_end_into(r, 1, 1, 1, &out), MW_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(mw_request_new("{\"include_headers\": false}", &r), MW_STATUS_OK);
    CHECK_STATUS(mw_request_begin_with(r, "GET /", 10, &a), MW_STATUS_OK);
    CHECK_STATUS(mw_request_end_into(r, a, 20, 0, &out), MW_STATUS_OK);
    CHECK(out.measured && !out.high_usage && out.peak_bytes == 20 && out.headers[0] == '\0' && out.limit_bytes > 0);
    mw_request_free(r);

    /* mw_request_shared: one tracker per config text for the life of the process;
       mw_request_record: a request the caller measured, in one call */
    {
        const char *cfg = "{\"threshold_mb\": 1, \"memory_limit\": \"128M\", \"log_file\": \"/dev/null\"}";
        mw_request *s1 = NULL, *s2 = NULL, *s3 = NULL;
        CHECK_STATUS(mw_request_shared(cfg, &s1), MW_STATUS_OK);
        CHECK_STATUS(mw_request_shared(cfg, &s2), MW_STATUS_OK);
        CHECK(s1 != NULL && s1 == s2);
        CHECK_STATUS(mw_request_shared("{\"max_routes\": 7}", &s3), MW_STATUS_OK);
        CHECK(s3 != NULL && s3 != s1);
        memset(&out, 0xAB, sizeof out);
        CHECK_STATUS(mw_request_record(s1, "GET /users/{id}", 40u << 20, 45u << 20, 50u << 20, 2.5, 1, &out),
                     MW_STATUS_OK);
        CHECK(out.measured && out.high_usage && out.overlapped == 1 && out.duration_ms == 2.5);
        CHECK(out.start_bytes == 40u << 20 && out.end_bytes == 45u << 20 && out.peak_bytes == 50u << 20);
        CHECK(out.delta_bytes == 5 << 20 && out.limit_bytes == 128u << 20);
        CHECK(strcmp(out.headers, "X-Memory-Usage: 45.0\nX-Memory-Peak: 50.0\nX-Memory-Limit: 128.0\n"
                                  "X-Memory-Efficiency: 90.0\n") == 0);
        mw_request_free(s2); /* a no-op: the tracker is the process's */
        CHECK_STATUS(mw_request_record(s2, "GET /users/{id}", 1, 2, 0, 0.1, 0, NULL), MW_STATUS_OK);
        CHECK_STATUS(mw_request_analytics(s1, &an), MW_STATUS_OK);
        CHECK(an && num_after(an, "count") == 2 && num_after(an, "in_flight") == 0);
        mw_string_free(an);
        CHECK_STATUS(mw_request_analytics(s3, &an), MW_STATUS_OK);
        CHECK(an && strstr(an, "GET /users/{id}") == NULL);
        mw_string_free(an);
        an = NULL;
        CHECK_STATUS(mw_request_record(s1, "\xff", 1, 2, 0, 0.1, 0, &out), MW_STATUS_INVALID_ARGUMENT);
        ERR_HAS("route");
        CHECK_STATUS(mw_request_record(NULL, "GET /", 1, 2, 0, 0.1, 0, &out), MW_STATUS_NULL_ARGUMENT);
        CHECK_STATUS(mw_request_shared("{\"sample_rate\": 2}", &s3), MW_STATUS_INVALID_CONFIG);
        ERR_HAS("sample_rate");
        CHECK_STATUS(mw_request_shared(cfg, NULL), MW_STATUS_NULL_ARGUMENT);
        CHECK_STATUS(mw_request_shared("{\"sample_rate\": 0}", &s3), MW_STATUS_OK);
        CHECK_STATUS(mw_request_record(s3, "GET /", 1, 2, 0, 0.1, 0, &out), MW_STATUS_OK);
        CHECK(!out.measured && out.headers[0] == '\0'); /* sampled out */
    }

    /* mw_request_peek*: the figures so far; the request stays in flight, nothing is recorded */
    CHECK_STATUS(mw_request_new("{\"threshold_mb\": 1, \"memory_limit\": \"128M\", \"log_file\": \"/dev/null\"}", &r),
                 MW_STATUS_OK);
    static atomic_int peek_calls;
    CHECK_STATUS(mw_request_set_high_usage_callback(r, count_high_usage, &peek_calls, NULL), MW_STATUS_OK);
    CHECK_STATUS(mw_request_begin_with(r, "GET /stream", 10u << 20, &a), MW_STATUS_OK);
    CHECK_STATUS(mw_request_peek_with(r, a, 12u << 20, 15u << 20, &rep), MW_STATUS_OK);
    CHECK(rep && strstr(rep, "\"route\":\"GET /stream\"") && strstr(rep, "\"high_usage\":true"));
    CHECK(rep && num_after(rep, "end_bytes") == 12 << 20 && num_after(rep, "peak_bytes") == 15 << 20);
    CHECK(rep && strstr(rep, "\"X-Memory-Usage\":\"12.0\"") && strstr(rep, "\"X-Memory-Peak\":\"15.0\""));
    mw_string_free(rep);
    rep = NULL;
    memset(&out, 0xAB, sizeof out);
    CHECK_STATUS(mw_request_peek_into(r, a, 11u << 20, 0, &out), MW_STATUS_OK);
    CHECK(out.measured && !out.high_usage && out.start_bytes == 10u << 20 && out.end_bytes == 11u << 20);
    CHECK(out.peak_bytes == 11u << 20 && out.delta_bytes == 1 << 20 && out.limit_bytes == 128u << 20);
    CHECK(strcmp(out.headers, "X-Memory-Usage: 11.0\nX-Memory-Peak: 11.0\nX-Memory-Limit: 128.0\n"
                              "X-Memory-Efficiency: 100.0\n") == 0);
    CHECK_STATUS(mw_request_peek(r, a, &rep), MW_STATUS_OK); /* read from the process */
    CHECK(rep && strstr(rep, "\"route\":\"GET /stream\"") && num_after(rep, "start_bytes") == 10 << 20);
    CHECK(rep && num_after(rep, "end_bytes") > 0 && strstr(rep, "\"X-Memory-Usage\""));
    mw_string_free(rep);
    rep = NULL;
    CHECK(atomic_load(&peek_calls) == 0); /* a peek calls no handler */
    CHECK_STATUS(mw_request_analytics(r, &an), MW_STATUS_OK);
    CHECK(an && num_after(an, "in_flight") == 1 && strstr(an, "\"GET /stream\"") == NULL); /* nor records */
    mw_string_free(an);
    CHECK_STATUS(mw_request_end_with(r, a, 12u << 20, 15u << 20, &rep), MW_STATUS_OK); /* still in flight */
    CHECK(rep && strstr(rep, "\"high_usage\":true"));
    mw_string_free(rep);
    rep = NULL;
    CHECK(atomic_load(&peek_calls) == 1);
    /* ended: every peek refuses the token and leaves the outputs untouched */
    CHECK_STATUS(mw_request_peek(r, a, &rep), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("not in flight");
    CHECK_STATUS(mw_request_peek_with(r, a, 1, 1, &rep), MW_STATUS_INVALID_ARGUMENT);
    CHECK(rep == NULL);
    CHECK_STATUS(mw_request_peek_into(r, a, 1, 1, &out), MW_STATUS_INVALID_ARGUMENT);
    CHECK(out.measured && out.end_bytes == 11u << 20);
    CHECK_STATUS(mw_request_peek_with(r, 987654, 1, 1, &rep), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("request token 987654 is not in flight");
    /* token 0 (not measured): null / measured false */
    CHECK_STATUS(mw_request_peek(r, 0, &rep), MW_STATUS_OK);
    CHECK(rep && strcmp(rep, "null") == 0);
    mw_string_free(rep);
    CHECK_STATUS(mw_request_peek_with(r, 0, 1, 1, &rep), MW_STATUS_OK);
    CHECK(rep && strcmp(rep, "null") == 0);
    mw_string_free(rep);
    CHECK_STATUS(mw_request_peek_into(r, 0, 1, 1, &out), MW_STATUS_OK);
    CHECK(!out.measured && out.end_bytes == 0 && out.headers[0] == '\0');
    /* NULL out-pointers and freed trackers */
    CHECK_STATUS(mw_request_begin_with(r, "GET /", 1, &a), MW_STATUS_OK);
    CHECK_STATUS(mw_request_peek(r, a, NULL), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("report_json_out");
    CHECK_STATUS(mw_request_peek_with(r, a, 1, 1, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_request_peek_into(r, a, 1, 1, NULL), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("report_out");
    CHECK_STATUS(mw_request_peek(NULL, a, &rep), MW_STATUS_NULL_ARGUMENT);
    mw_request_free(r);
    CHECK_STATUS(mw_request_peek(r, a, &rep), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("not a live");
    CHECK_STATUS(mw_request_peek_into(r, a, 1, 1, &out), MW_STATUS_INVALID_ARGUMENT);

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

    /* dispose: the final leak report, then MW_STATUS_CLOSED; a second dispose repeats the report */
    CHECK_STATUS(mw_tracker_new(NULL, &t), MW_STATUS_OK);
    CHECK_STATUS(mw_tracker_track(t, "buffer", 10, NULL, &ids[0]), MW_STATUS_OK);
    CHECK_STATUS(mw_tracker_track(t, "buffer", 10, NULL, &ids[1]), MW_STATUS_OK);
    CHECK_STATUS(mw_tracker_release(t, ids[0]), MW_STATUS_OK);
    CHECK_STATUS(mw_tracker_dispose(t, NULL), MW_STATUS_NULL_ARGUMENT);
    char *fin = NULL;
    CHECK_STATUS(mw_tracker_dispose(t, &fin), MW_STATUS_OK);
    CHECK(fin && strstr(fin, "\"buffer\"") && num_after(fin, "live") == 1 && num_after(fin, "released") == 1);
    CHECK_STATUS(mw_tracker_track(t, "buffer", 10, NULL, &ids[2]), MW_STATUS_CLOSED);
    CHECK_STATUS(mw_tracker_release(t, ids[1]), MW_STATUS_CLOSED);
    char *again = NULL;
    CHECK_STATUS(mw_tracker_dispose(t, &again), MW_STATUS_OK);
    CHECK(fin && again && strcmp(fin, again) == 0);
    mw_string_free(fin);
    mw_string_free(again);
    mw_tracker_free(t);

    /* the at-exit line the bindings write, built by the library; and its failure variant */
    CHECK_STATUS(mw_tracker_new(NULL, &t), MW_STATUS_OK);
    char *line = NULL;
    CHECK_STATUS(mw_tracker_exit_report_line(t, &line), MW_STATUS_OK);
    CHECK(line && strcmp(line, "memwarden: ResourceTracker leak report at exit: "
                               "{\"activeResources\":0,\"totalAllocated\":0,\"leaks\":{}}") == 0);
    mw_string_free(line);
    CHECK_STATUS(mw_tracker_track(t, "socket", 3, NULL, &ids[0]), MW_STATUS_OK);
    CHECK_STATUS(mw_tracker_exit_report_line(t, &line), MW_STATUS_OK);
    CHECK(line && strcmp(line, "memwarden: ResourceTracker leak report at exit: "
                               "{\"activeResources\":1,\"totalAllocated\":3,\"leaks\":{\"socket\":"
                               "{\"cleaned_up\":0,\"collected_unreleased\":0,\"live\":1,\"released\":0}}}") == 0);
    mw_string_free(line);
    CHECK_STATUS(mw_tracker_exit_report_line(t, NULL), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("line_out");
    CHECK_STATUS(mw_tracker_exit_report_line(NULL, &line), MW_STATUS_NULL_ARGUMENT);
    mw_tracker_free(t);
    line = NULL;
    CHECK_STATUS(mw_tracker_exit_report_line(t, &line), MW_STATUS_INVALID_ARGUMENT);
    CHECK(line == NULL);
    CHECK_STATUS(mw_tracker_exit_report_failed_line("boom", &line), MW_STATUS_OK);
    CHECK(line && strcmp(line, "memwarden: ResourceTracker leak report at exit failed: boom") == 0);
    mw_string_free(line);
    CHECK_STATUS(mw_tracker_exit_report_failed_line("bad \xff byte", &line), MW_STATUS_OK);
    CHECK(line && strcmp(line, "memwarden: ResourceTracker leak report at exit failed: bad \xef\xbf\xbd byte") == 0);
    mw_string_free(line);
    CHECK_STATUS(mw_tracker_exit_report_failed_line(NULL, &line), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("message");
    CHECK_STATUS(mw_tracker_exit_report_failed_line("x", NULL), MW_STATUS_NULL_ARGUMENT);

    /* a timer thread is started and stopped by free */
    CHECK_STATUS(mw_tracker_new("{\"cleanup_interval\": 5, \"enable_auto_cleanup\": true}", &t), MW_STATUS_OK);
    mw_tracker_free(t);
}

/* ---- the high-usage callback (runs on the thread that calls end) ---- */

struct hu_seen {
    int calls;
    int freed;
    pthread_t thread;
    char route[64];
    long growth;
};

static int32_t on_high_usage(void *user, const char *report, char *error_buf, size_t error_len) {
    struct hu_seen *s = user;
    s->calls++;
    s->thread = pthread_self();
    const char *r = strstr(report, "\"route\":\"");
    if (r) {
        r += strlen("\"route\":\"");
        size_t n = strcspn(r, "\"");
        if (n >= sizeof s->route) n = sizeof s->route - 1;
        memcpy(s->route, r, n);
        s->route[n] = 0;
    }
    s->growth = num_after(report, "peak_bytes") - num_after(report, "start_bytes");
    if (strcmp(s->route, "boom") == 0) {
        snprintf(error_buf, error_len, "handler says %s", "no");
        return 7;
    }
    return strcmp(s->route, "silent") == 0 ? 3 : 0;
}

static void free_seen(void *user) {
    ((struct hu_seen *)user)->freed++;
}

static void test_high_usage_callback(void) {
    const char *log = "tests/c/build/high_usage.log";
    remove(log);
    mw_request *r = NULL;
    char cfg[256];
    snprintf(cfg, sizeof cfg, "{\"threshold_mb\": 1, \"log_file\": \"%s\"}", log);
    CHECK_STATUS(mw_request_new(cfg, &r), MW_STATUS_OK);
    struct hu_seen seen = {0};
    CHECK_STATUS(mw_request_set_high_usage_callback(NULL, on_high_usage, &seen, free_seen), MW_STATUS_NULL_ARGUMENT);
    CHECK(seen.freed == 1); /* the finalizer runs also when the call fails */
    seen.freed = 0;
    CHECK_STATUS(mw_request_set_high_usage_callback(r, on_high_usage, &seen, free_seen), MW_STATUS_OK);

    uint64_t k = 0;
    char *rep = NULL;
    CHECK_STATUS(mw_request_begin_with(r, "small", 0, &k), MW_STATUS_OK);
    CHECK_STATUS(mw_request_end_with(r, k, 1u << 20, 0, &rep), MW_STATUS_OK);
    mw_string_free(rep);
    CHECK(seen.calls == 0);

    CHECK_STATUS(mw_request_begin_with(r, "GET /big", 1u << 20, &k), MW_STATUS_OK);
    CHECK_STATUS(mw_request_end_with(r, k, 1u << 20, 4u << 20, &rep), MW_STATUS_OK);
    CHECK(rep && strstr(rep, "\"high_usage\":true"));
    mw_string_free(rep);
    CHECK(seen.calls == 1 && strcmp(seen.route, "GET /big") == 0 && seen.growth == 3 << 20);
    CHECK(pthread_equal(seen.thread, pthread_self()));

    /* a failing callback: the request's call still succeeds; the message is logged and counted */
    const char *routes[] = {"boom", "silent"};
    for (int i = 0; i < 2; i++) {
        CHECK_STATUS(mw_request_begin_with(r, routes[i], 0, &k), MW_STATUS_OK);
        rep = NULL;
        CHECK_STATUS(mw_request_end_with(r, k, 5u << 20, 0, &rep), MW_STATUS_OK);
        CHECK(rep != NULL);
        mw_string_free(rep);
    }
    CHECK(seen.calls == 3);
    char *an = NULL;
    CHECK_STATUS(mw_request_analytics(r, &an), MW_STATUS_OK);
    CHECK(num_after(an, "handler_errors") == 2);
    mw_string_free(an);
    FILE *f = fopen(log, "r");
    CHECK(f != NULL);
    if (f) {
        char text[4096] = {0};
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = 0;
        fclose(f);
        CHECK(strstr(text, "handler says no") != NULL);
        CHECK(strstr(text, "high-usage callback returned 3") != NULL);
    }

    /* replacing the callback frees the old user_data; NULL removes it */
    struct hu_seen other = {0};
    CHECK_STATUS(mw_request_set_high_usage_callback(r, on_high_usage, &other, free_seen), MW_STATUS_OK);
    CHECK(seen.freed == 1 && other.freed == 0);
    CHECK_STATUS(mw_request_set_high_usage_callback(r, NULL, NULL, NULL), MW_STATUS_OK);
    CHECK(other.freed == 1);
    CHECK_STATUS(mw_request_begin_with(r, "GET /big", 0, &k), MW_STATUS_OK);
    CHECK_STATUS(mw_request_end_with(r, k, 9u << 20, 0, &rep), MW_STATUS_OK);
    mw_string_free(rep);
    CHECK(other.calls == 0 && seen.calls == 3);

    /* freeing the tracker runs the finalizer of the callback still set */
    struct hu_seen last = {0};
    CHECK_STATUS(mw_request_set_high_usage_callback(r, on_high_usage, &last, free_seen), MW_STATUS_OK);
    mw_request_free(r);
    CHECK(last.freed == 1);
    remove(log);
}

/* ---- the tracker's event callback (caller's thread, or the library's cleanup thread) ---- */

struct ev_seen {
    atomic_int warning, critical, cleanup, on_main, freed;
    pthread_t main;
};

static void on_event(void *user, const char *event) {
    struct ev_seen *s = user;
    if (pthread_equal(pthread_self(), s->main)) atomic_fetch_add(&s->on_main, 1);
    if (strstr(event, "\"type\":\"memoryWarning\"")) atomic_fetch_add(&s->warning, 1);
    if (strstr(event, "\"type\":\"memoryCritical\"")) atomic_fetch_add(&s->critical, 1);
    if (strstr(event, "\"type\":\"cleanup\"")) atomic_fetch_add(&s->cleanup, 1);
}

static void free_ev(void *user) {
    atomic_fetch_add(&((struct ev_seen *)user)->freed, 1);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_event_callback(void) {
    mw_tracker *t = NULL;
    CHECK_STATUS(mw_tracker_new("{\"maxMemoryUsage\": 1000}", &t), MW_STATUS_OK);
    static struct ev_seen seen;
    seen.main = pthread_self();
    CHECK_STATUS(mw_tracker_set_event_callback(t, on_event, &seen, free_ev), MW_STATUS_OK);
    uint64_t a, b;
    CHECK_STATUS(mw_tracker_track(t, "chunk", 750, NULL, &a), MW_STATUS_OK);
    CHECK(atomic_load(&seen.warning) == 1 && atomic_load(&seen.on_main) == 1);
    CHECK_STATUS(mw_tracker_track(t, "chunk", 200, NULL, &b), MW_STATUS_OK);
    CHECK(atomic_load(&seen.critical) == 1 && atomic_load(&seen.on_main) == 2);
    char *j = NULL;
    CHECK_STATUS(mw_tracker_poll(t, &j), MW_STATUS_OK); /* still queued for polling too */
    CHECK(j && strstr(j, "memoryWarning") && strstr(j, "memoryCritical"));
    mw_string_free(j);
    CHECK_STATUS(mw_tracker_set_event_callback(t, NULL, NULL, NULL), MW_STATUS_OK);
    CHECK(atomic_load(&seen.freed) == 1);
    CHECK_STATUS(mw_tracker_release(t, a), MW_STATUS_OK);
    CHECK_STATUS(mw_tracker_track(t, "chunk", 750, NULL, &a), MW_STATUS_OK);
    CHECK(atomic_load(&seen.warning) == 1); /* removed: not called */
    CHECK_STATUS(mw_tracker_set_event_callback(NULL, on_event, &seen, free_ev), MW_STATUS_NULL_ARGUMENT);
    CHECK(atomic_load(&seen.freed) == 2);
    mw_tracker_free(t);

    /* auto cleanup: delivered on the library's cleanup thread */
    static struct ev_seen bg;
    bg.main = pthread_self();
    CHECK_STATUS(mw_tracker_new("{\"maxMemoryUsage\": 1000, \"cleanupInterval\": 5, \"enableAutoCleanup\": true}", &t),
                 MW_STATUS_OK);
    CHECK_STATUS(mw_tracker_set_event_callback(t, on_event, &bg, free_ev), MW_STATUS_OK);
    for (int i = 0; i < 9; i++) CHECK_STATUS(mw_tracker_track(t, "chunk", 100, NULL, &a), MW_STATUS_OK);
    int on_main_after_track = atomic_load(&bg.on_main);
    double deadline = now_s() + 10.0;
    while (atomic_load(&bg.cleanup) == 0 && now_s() < deadline) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    CHECK(atomic_load(&bg.cleanup) >= 1);
    CHECK(atomic_load(&bg.on_main) == on_main_after_track); /* not on this thread */
    mw_tracker_free(t);
    CHECK(atomic_load(&bg.freed) == 1);
}

int main(void) {
    test_request();
    test_tracker();
    test_high_usage_callback();
    test_event_callback();
    return CHECK_SUMMARY();
}
