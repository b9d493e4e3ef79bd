#define _DEFAULT_SOURCE
/* The bad-input table for C (README "Reliability"): NULL arguments, freed handles, use after
 * close, invalid UTF-8, empty strings, huge values. Each case expects a status and a message
 * naming what was wrong; none may crash (the suite also runs under valgrind).
 * Built by tests/c/run.sh against libmemwarden.so and libmemwarden.a. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "memwarden.h"

#include "check.h"

static int cases = 0;
/* One row of the table: the call's status and a fragment of its message. */
#define ROW(call, want, fragment) do { cases++; CHECK_STATUS((call), (want)); ERR_HAS(fragment); } while (0)

static int32_t create(void *ud, void **out) { (void)ud; *out = malloc(8); return 0; }
static void destroy(void *ud, void *obj) { (void)ud; free(obj); }
static int32_t factory(void *ud, mw_container *c, void **out) { (void)ud; (void)c; *out = malloc(8); return 0; }
static void container_destroy(void *ud, void *obj) { (void)ud; free(obj); }

static mw_pool_callbacks pool_callbacks(void) {
    mw_pool_callbacks cb = {0};
    cb.create = create;
    cb.destroy = destroy;
    return cb;
}

int main(void) {
    const char bad_utf8[] = {'{', '"', 'm', (char)0xff, '"', ':', '1', '}', 0};
    char *json = NULL;
    int64_t bytes = 0;

    /* --- sizes --- */
    ROW(mw_size_parse(NULL, &bytes), MW_STATUS_NULL_ARGUMENT, "'text' is NULL");
    ROW(mw_size_parse("", &bytes), MW_STATUS_INVALID_ARGUMENT, "invalid size ''");
    ROW(mw_size_parse("12X", &bytes), MW_STATUS_INVALID_ARGUMENT, "invalid size '12X'");
    ROW(mw_size_parse("99999999999999999999G", &bytes), MW_STATUS_INVALID_ARGUMENT, "too large");
    ROW(mw_size_parse("\xff\xfe", &bytes), MW_STATUS_INVALID_ARGUMENT, "not valid UTF-8");

    /* --- manager --- */
    mw_manager *m = NULL;
    ROW(mw_manager_new("{\"memory_limit\": 5}", NULL), MW_STATUS_NULL_ARGUMENT, "'out' is NULL");
    ROW(mw_manager_new("{", &m), MW_STATUS_INVALID_CONFIG, "malformed JSON");
    ROW(mw_manager_new("[1, 2]", &m), MW_STATUS_INVALID_CONFIG, "expected an object");
    ROW(mw_manager_new("{\"warning_treshold\": 0.5}", &m), MW_STATUS_INVALID_CONFIG, "did you mean 'warning_threshold'");
    ROW(mw_manager_new("{\"warning_threshold\": \"high\"}", &m), MW_STATUS_INVALID_CONFIG, "'warning_threshold'");
    ROW(mw_manager_new("{\"warning_threshold\": 1e999}", &m), MW_STATUS_INVALID_CONFIG, "malformed JSON");
    ROW(mw_manager_new(bad_utf8, &m), MW_STATUS_INVALID_ARGUMENT, "not valid UTF-8");
    CHECK(m == NULL);
    CHECK_STATUS(mw_manager_new(NULL, &m), MW_STATUS_OK);
    ROW(mw_manager_set_limit(m, "lots"), MW_STATUS_INVALID_ARGUMENT, "invalid size 'lots'");
    ROW(mw_manager_set_limit(m, NULL), MW_STATUS_NULL_ARGUMENT, "is NULL");
    ROW(mw_manager_set_limit_bytes(m, -7), MW_STATUS_INVALID_ARGUMENT, "-7");
    ROW(mw_manager_usage_json(m, NULL), MW_STATUS_NULL_ARGUMENT, "is NULL");
    mw_manager_free(m);
    mw_state st;
    ROW(mw_manager_check(m, &st), MW_STATUS_INVALID_ARGUMENT, "not a live");
    ROW(mw_manager_check(NULL, &st), MW_STATUS_NULL_ARGUMENT, "is NULL");
    mw_manager_free(NULL); /* a no-op */
    CHECK(strcmp(mw_state_name(42), "") != 0 || 1);

    /* --- pool --- */
    mw_pool *p = NULL;
    mw_pool_callbacks cb = pool_callbacks();
    ROW(mw_pool_new(NULL, NULL, &p), MW_STATUS_NULL_ARGUMENT, "'callbacks' is NULL");
    mw_pool_callbacks no_create = {0};
    ROW(mw_pool_new(NULL, &no_create, &p), MW_STATUS_NULL_ARGUMENT, "'callbacks->create' is NULL");
    ROW(mw_pool_new("{\"max_size\": 0}", &cb, &p), MW_STATUS_INVALID_CONFIG, "'max_size'");
    ROW(mw_pool_new("{\"max_size\": -3}", &cb, &p), MW_STATUS_INVALID_CONFIG, "'max_size'");
    ROW(mw_pool_new("{\"min_size\": 5, \"max_size\": 2}", &cb, &p), MW_STATUS_INVALID_CONFIG, "must not exceed");
    ROW(mw_pool_new("{\"acquire_timeout\": -1}", &cb, &p), MW_STATUS_INVALID_CONFIG, "'acquire_timeout'");
    ROW(mw_pool_new("{\"max_size\": 18446744073709551616}", &cb, &p), MW_STATUS_INVALID_CONFIG, "'max_size'");
    CHECK_STATUS(mw_pool_new("{\"max_size\": 1, \"min_size\": 0}", &cb, &p), MW_STATUS_OK);
    void *obj = NULL;
    CHECK_STATUS(mw_pool_acquire(p, NULL, &obj), MW_STATUS_OK);
    bool got = false;
    ROW(mw_pool_try_acquire(p, NULL, NULL, &got), MW_STATUS_NULL_ARGUMENT, "is NULL");
    int x = 0;
    ROW(mw_pool_release(p, &x), MW_STATUS_INVALID_ARGUMENT, "");
    CHECK_STATUS(mw_pool_release(p, obj), MW_STATUS_OK);
    ROW(mw_pool_release(p, obj), MW_STATUS_INVALID_ARGUMENT, "");
    CHECK_STATUS(mw_pool_close(p), MW_STATUS_OK);
    ROW(mw_pool_acquire(p, NULL, &obj), MW_STATUS_CLOSED, "closed");
    mw_pool_free(p);
    ROW(mw_pool_stats_json(p, &json), MW_STATUS_INVALID_ARGUMENT, "not a live");

    /* --- container --- */
    mw_container *c = NULL;
    ROW(mw_container_new("{\"nope\": 1}", &c), MW_STATUS_INVALID_CONFIG, "unknown key 'nope'");
    CHECK_STATUS(mw_container_new(NULL, &c), MW_STATUS_OK);
    void *inst = NULL;
    ROW(mw_container_get(c, "missing", &inst), MW_STATUS_NOT_FOUND, "missing");
    ROW(mw_container_get(c, NULL, &inst), MW_STATUS_NULL_ARGUMENT, "is NULL");
    ROW(mw_container_register(c, "", 0, factory, container_destroy, NULL, NULL, false), MW_STATUS_INVALID_ARGUMENT, "empty");
    ROW(mw_container_register(c, "svc", 0, NULL, container_destroy, NULL, NULL, false), MW_STATUS_NULL_ARGUMENT, "is NULL");
    ROW(mw_container_register(c, "svc", 99, factory, container_destroy, NULL, NULL, false), MW_STATUS_INVALID_ARGUMENT, "99");
    ROW(mw_container_get(c, "\xc3\x28", &inst), MW_STATUS_INVALID_ARGUMENT, "not valid UTF-8");
    mw_container_free(c);
    ROW(mw_container_get(c, "svc", &inst), MW_STATUS_INVALID_ARGUMENT, "not a live");

    /* --- tracker and request tracker --- */
    mw_tracker *t = NULL;
    ROW(mw_tracker_new("{\"thresholds\": 3}", &t), MW_STATUS_INVALID_CONFIG, "thresholds");
    CHECK_STATUS(mw_tracker_new(NULL, &t), MW_STATUS_OK);
    uint64_t id = 0;
    ROW(mw_tracker_track(t, NULL, 1, NULL, &id), MW_STATUS_NULL_ARGUMENT, "is NULL");
    ROW(mw_tracker_track(t, "conn", 1, "{", &id), MW_STATUS_INVALID_ARGUMENT, "");
    ROW(mw_tracker_release(t, 987654321), MW_STATUS_NOT_FOUND, "987654321");
    mw_tracker_free(t);
    ROW(mw_tracker_release(t, 1), MW_STATUS_INVALID_ARGUMENT, "not a live");

    mw_request *r = NULL;
    ROW(mw_request_new("{\"sample_rate\": 2}", &r), MW_STATUS_INVALID_CONFIG, "'sample_rate'");
    CHECK_STATUS(mw_request_new(NULL, &r), MW_STATUS_OK);
    ROW(mw_request_end(r, 1, NULL), MW_STATUS_NULL_ARGUMENT, "'report_json_out' is NULL");
    ROW(mw_request_end(r, 424242, &json), MW_STATUS_INVALID_ARGUMENT, "424242");
    ROW(mw_request_begin(r, "\xff/route", &id), MW_STATUS_INVALID_ARGUMENT, "not valid UTF-8");
    mw_request_free(r);

    /* --- iterators --- */
    mw_streaming *s = NULL;
    ROW(mw_streaming_new(NULL, NULL, NULL, &s), MW_STATUS_NULL_ARGUMENT, "'source' is NULL");
    mw_lazy *l = NULL;
    ROW(mw_lazy_new("{\"mode\": \"sideways\"}", NULL, NULL, &l), MW_STATUS_NULL_ARGUMENT, "'load' is NULL");

    /* --- chunked processor --- */
    mw_chunk *ch = NULL;
    ROW(mw_chunk_open("nowhere", NULL, &ch), MW_STATUS_INVALID_ARGUMENT, "malformed connection string 'nowhere'");
    ROW(mw_chunk_open("postgres://u:hunter2@127.0.0.1:1/x", "{\"connect_timeout\": 1}", &ch), MW_STATUS_DATABASE, "***");
    CHECK(strstr(mw_last_error_message(), "hunter2") == NULL);
    ROW(mw_chunk_open("sqlite::memory:", "{\"chunk_size\": 0}", &ch), MW_STATUS_INVALID_CONFIG, "'chunk_size'");
    ROW(mw_chunk_open(NULL, NULL, &ch), MW_STATUS_NULL_ARGUMENT, "'connection' is NULL");

    /* --- alerting --- */
    mw_alert *a = NULL;
    ROW(mw_alert_new("{\"channels\": {\"pager\": {}}}", NULL, &a), MW_STATUS_INVALID_CONFIG, "pager");
    ROW(mw_alert_new("{\"channels\": {\"webhook\": {\"enabled\": true, \"url\": \"not a url\"}}}", NULL, &a),
        MW_STATUS_INVALID_CONFIG, "url");
    CHECK_STATUS(mw_alert_new(NULL, NULL, &a), MW_STATUS_OK);
    int64_t aid = 0;
    ROW(mw_alert_send(a, NULL, MW_STATE_WARNING, &aid), MW_STATUS_NULL_ARGUMENT, "is NULL");
    ROW(mw_alert_history(a, "{\"level\": 5}", &json), MW_STATUS_INVALID_CONFIG, "invalid value for 'level'");
    mw_alert_free(a);
    ROW(mw_alert_check(a, NULL), MW_STATUS_INVALID_ARGUMENT, "not a live");

    mw_string_free(NULL); /* a no-op */
    printf("%d bad-input cases\n", cases);
    return CHECK_SUMMARY();
}
