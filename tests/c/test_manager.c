/* The MemoryManager through the C ABI: every function, every error path.
 * Built by tests/c/run.sh against libmemwarden.so and libmemwarden.a, and run under valgrind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "memwarden.h"

#include "check.h"

typedef struct { int changes; mw_state last_old, last_new; int fail; } state_log;

static int32_t on_change(void *ud, mw_state old_state, mw_state new_state) {
    state_log *log = ud;
    log->changes++;
    log->last_old = old_state;
    log->last_new = new_state;
    return log->fail;
}

static char order[256];
static int32_t before_gc(void *ud) { (void)ud; strcat(order, "before,"); return 0; }
static int32_t hook_high(void *ud, bool emergency) { (void)ud; strcat(order, emergency ? "HIGH," : "high,"); return 0; }
static int32_t hook_low(void *ud, bool emergency) { (void)ud; strcat(order, emergency ? "LOW," : "low,"); return 0; }
static int32_t hook_fail(void *ud, bool emergency) { (void)ud; (void)emergency; return 7; }
static int32_t after_gc(void *ud, const char *report) {
    strcat(order, "after,");
    CHECK(strstr(report, "\"freed_bytes\"") != NULL);
    *(int *)ud += 1;
    return 0;
}
static int freed_count = 0;
static void free_counter(void *ud) { (void)ud; freed_count++; }

/* A callback that calls back into the same manager must not deadlock. */
static mw_manager *reentrant_target;
static int32_t reenter(void *ud, mw_state o, mw_state n) {
    (void)ud; (void)o; (void)n;
    mw_usage u;
    return mw_manager_usage(reentrant_target, &u) == MW_STATUS_OK ? 0 : 1;
}

static uint64_t host_level = 100;
static int32_t read_host(void *ud, uint64_t *cur, uint64_t *peak, int64_t *limit) {
    (void)ud;
    *cur = host_level;
    *peak = host_level;
    *limit = 1000;
    return host_level == 0 ? 5 : 0;
}

static mw_manager *host_manager(void) {
    mw_manager *m = NULL;
    CHECK_STATUS(mw_manager_new("{\"source\": \"host\", \"gc_probability\": 0, \"random_seed\": 1}", &m), MW_STATUS_OK);
    return m;
}

static mw_state at(mw_manager *m, uint64_t permille) {
    mw_state s = MW_STATE_NORMAL;
    CHECK_STATUS(mw_manager_update_host_reading(m, permille, permille, 1000), MW_STATUS_OK);
    mw_manager_check(m, &s);
    return s;
}

static void test_version_and_sizes(void) {
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", MW_VERSION_MAJOR, MW_VERSION_MINOR, MW_VERSION_PATCH);
    CHECK(strcmp(mw_version(), v) == 0);
    int64_t b = 0;
    CHECK_STATUS(mw_size_parse("512M", &b), MW_STATUS_OK);
    CHECK(b == 512LL * 1024 * 1024);
    CHECK_STATUS(mw_size_parse("-1", &b), MW_STATUS_OK);
    CHECK(b == -1);
    CHECK_STATUS(mw_size_parse("12X", &b), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("'12X'");
    CHECK_STATUS(mw_size_parse(NULL, &b), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("'text'");
    CHECK_STATUS(mw_size_parse("1K", NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_size_parse("\xff\xfe", &b), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("UTF-8");
    char *s = NULL;
    CHECK_STATUS(mw_size_format(1073741824ULL, &s), MW_STATUS_OK);
    CHECK(s && strcmp(s, "1G") == 0);
    mw_string_free(s);
    mw_string_free(NULL);
    CHECK_STATUS(mw_size_format(1, NULL), MW_STATUS_NULL_ARGUMENT);
    /* A successful call clears the last error. */
    CHECK_STATUS(mw_size_parse("1", &b), MW_STATUS_OK);
    CHECK(strcmp(mw_last_error_message(), "") == 0);
    CHECK(strcmp(mw_state_name(MW_STATE_CRITICAL), "critical") == 0);
    CHECK(strcmp(mw_state_name(42), "unknown") == 0);
}

static void test_bad_config(void) {
    struct { const char *json; mw_status want; const char *needle; } cases[] = {
        {"{", MW_STATUS_INVALID_CONFIG, "malformed JSON"},
        {"[1,2]", MW_STATUS_INVALID_CONFIG, "expected an object"},
        {"{\"max_sise\": 3}", MW_STATUS_INVALID_CONFIG, "unknown key 'max_sise'"},
        {"{\"warning_treshold\": 0.5}", MW_STATUS_INVALID_CONFIG, "did you mean 'warning_threshold'"},
        {"{\"warning_threshold\": 2}", MW_STATUS_INVALID_CONFIG, "'warning_threshold'"},
        {"{\"warning_threshold\": \"high\"}", MW_STATUS_INVALID_CONFIG, "'high'"},
        {"{\"warning_threshold\": 0.95, \"critical_threshold\": 0.9}", MW_STATUS_INVALID_CONFIG, "ordered"},
        {"{\"memory_limit\": \"12X\"}", MW_STATUS_INVALID_CONFIG, "'12X'"},
        {"{\"memory_limit\": -5}", MW_STATUS_INVALID_CONFIG, "-5"},
        {"{\"gc_probability\": 1.5}", MW_STATUS_INVALID_CONFIG, "'gc_probability'"},
        {"{\"source\": \"heap\"}", MW_STATUS_INVALID_CONFIG, "'heap'"},
        {"\xff", MW_STATUS_INVALID_ARGUMENT, "UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mw_manager *m = (mw_manager *)0x1;
        CHECK_STATUS(mw_manager_new(cases[i].json, &m), cases[i].want);
        ERR_HAS(cases[i].needle);
        CHECK(m == (mw_manager *)0x1); /* *out untouched on failure */
    }
    CHECK_STATUS(mw_manager_new(NULL, NULL), MW_STATUS_NULL_ARGUMENT);
}

static void test_null_and_freed_handles(void) {
    mw_state st;
    mw_usage u;
    char *s = NULL;
    CHECK_STATUS(mw_manager_check(NULL, &st), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("'manager'");
    CHECK_STATUS(mw_manager_state(NULL, &st), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_manager_usage(NULL, &u), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_manager_stats_json(NULL, &s), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_manager_set_limit(NULL, "1G"), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_manager_force_gc(NULL, NULL), MW_STATUS_NULL_ARGUMENT);
    mw_manager_free(NULL);

    mw_manager *m = NULL;
    CHECK_STATUS(mw_manager_new(NULL, &m), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_check(m, NULL), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("'out_state'");
    CHECK_STATUS(mw_manager_usage(m, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_manager_set_limit(m, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_manager_on_state_change(m, NULL, NULL, NULL), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("'callback'");
    mw_manager_free(m);
    /* Use after free and double free are detected, not undefined behaviour. */
    CHECK_STATUS(mw_manager_check(m, &st), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("not a live");
    CHECK_STATUS(mw_manager_usage(m, &u), MW_STATUS_INVALID_ARGUMENT);
    mw_manager_free(m);
    /* A pointer that was never a handle. */
    int x = 0;
    CHECK_STATUS(mw_manager_check((mw_manager *)&x, &st), MW_STATUS_INVALID_ARGUMENT);
}

static void test_process_usage_and_limits(void) {
    mw_manager *m = NULL;
    CHECK_STATUS(mw_manager_new("{\"memory_limit\": \"64G\", \"enable_detailed_tracking\": true}", &m), MW_STATUS_OK);
    mw_usage u;
    CHECK_STATUS(mw_manager_usage(m, &u), MW_STATUS_OK);
    CHECK(u.current_bytes > 1024 * 1024);
    CHECK(u.peak_bytes >= u.current_bytes);
    CHECK(u.limit_bytes == 64ULL << 30);
    CHECK(u.usage_percent > 0 && u.usage_percent < 100);
    uint64_t lb = 0;
    mw_limit_origin origin;
    CHECK_STATUS(mw_manager_limit(m, &lb, &origin), MW_STATUS_OK);
    CHECK(origin == MW_LIMIT_ORIGIN_EXPLICIT && lb == 64ULL << 30);
    CHECK_STATUS(mw_manager_set_limit(m, "512M"), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_limit(m, &lb, NULL), MW_STATUS_OK);
    CHECK(lb == 512ULL << 20);
    CHECK_STATUS(mw_manager_set_limit(m, "lots"), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("'lots'");
    CHECK_STATUS(mw_manager_limit(m, &lb, NULL), MW_STATUS_OK);
    CHECK(lb == 512ULL << 20); /* unchanged by the bad call */
    CHECK_STATUS(mw_manager_set_limit_bytes(m, -7), MW_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(mw_manager_set_limit_bytes(m, 0), MW_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(mw_manager_set_limit(m, "-1"), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_limit(m, NULL, &origin), MW_STATUS_OK);
    CHECK(origin == MW_LIMIT_ORIGIN_CGROUP_V1 || origin == MW_LIMIT_ORIGIN_CGROUP_V2 || origin == MW_LIMIT_ORIGIN_PHYSICAL);
    CHECK_STATUS(mw_manager_refresh_limit(m), MW_STATUS_OK);
    mw_state st;
    CHECK_STATUS(mw_manager_check(m, &st), MW_STATUS_OK);
    CHECK(st == MW_STATE_NORMAL);
    CHECK_STATUS(mw_manager_update_host_reading(m, 1, 1, -1), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("source 'host'");
    char *json = NULL;
    CHECK_STATUS(mw_manager_usage_json(m, &json), MW_STATUS_OK);
    CHECK(json && strstr(json, "\"current_mb\"") && strstr(json, "\"limit_origin\""));
    mw_string_free(json);
    CHECK_STATUS(mw_manager_stats_json(m, &json), MW_STATUS_OK);
    CHECK(json && strstr(json, "\"history\":[{") && strstr(json, "\"psi\""));
    mw_string_free(json);
    mw_status rs = mw_manager_reset_peak(m);
    CHECK(rs == MW_STATUS_OK || rs == MW_STATUS_IO);
    mw_manager_free(m);
}

static void test_states_callbacks_and_hysteresis(void) {
    mw_manager *m = host_manager();
    state_log log = {0};
    CHECK_STATUS(mw_manager_on_state_change(m, on_change, &log, free_counter), MW_STATUS_OK);
    mw_state st;
    CHECK_STATUS(mw_manager_check(m, &st), MW_STATUS_NOT_FOUND); /* no host reading yet */
    ERR_HAS("update_host_reading");
    CHECK(at(m, 100) == MW_STATE_NORMAL);
    CHECK(at(m, 760) == MW_STATE_WARNING);
    CHECK(log.changes == 1 && log.last_old == MW_STATE_NORMAL && log.last_new == MW_STATE_WARNING);
    for (int i = 0; i < 50; i++) at(m, i % 2 ? 749 : 751);
    CHECK(log.changes == 1); /* wobbling at 75% changes state once */
    CHECK(at(m, 900) == MW_STATE_CRITICAL);
    CHECK(at(m, 960) == MW_STATE_EMERGENCY);
    CHECK_STATUS(mw_manager_state(m, &st), MW_STATE_NORMAL == 0 ? MW_STATUS_OK : MW_STATUS_OK);
    CHECK(st == MW_STATE_EMERGENCY);
    CHECK(at(m, 100) == MW_STATE_NORMAL);
    CHECK(log.changes == 4);
    /* A failing callback: MW_STATUS_CALLBACK, the state still updated. */
    log.fail = 3;
    CHECK_STATUS(mw_manager_update_host_reading(m, 800, 800, 1000), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_check(m, &st), MW_STATUS_CALLBACK);
    ERR_HAS("returned 3");
    CHECK(st == MW_STATE_WARNING);
    log.fail = 0;
    /* Re-entrant callback. */
    reentrant_target = m;
    CHECK_STATUS(mw_manager_on_state_change(m, reenter, NULL, NULL), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_update_host_reading(m, 10, 10, 1000), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_check(m, &st), MW_STATUS_OK);
    mw_manager_free(m);
    CHECK(freed_count == 1); /* user_data finalizer ran once, at free */
}

static void test_cleanup_runs(void) {
    mw_manager *m = host_manager();
    CHECK_STATUS(mw_manager_update_host_reading(m, 500, 500, 1000), MW_STATUS_OK);
    int after_calls = 0;
    order[0] = 0;
    CHECK_STATUS(mw_manager_on_before_gc(m, before_gc, NULL, NULL), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_add_cleanup_hook(m, "low", -5, hook_low, NULL, NULL), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_add_cleanup_hook(m, "high", 10, hook_high, NULL, NULL), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_on_after_gc(m, after_gc, &after_calls, NULL), MW_STATUS_OK);
    char *report = NULL;
    CHECK_STATUS(mw_manager_force_gc(m, &report), MW_STATUS_OK);
    CHECK(strcmp(order, "before,high,low,after,") == 0);
    CHECK(report && strstr(report, "\"trigger\":\"manual\""));
    mw_string_free(report);
    order[0] = 0;
    CHECK_STATUS(mw_manager_emergency_cleanup(m, NULL), MW_STATUS_OK);
    CHECK(strcmp(order, "before,HIGH,LOW,after,") == 0);
    CHECK(after_calls == 2);
    bool removed = false;
    CHECK_STATUS(mw_manager_remove_cleanup_hook(m, "low", &removed), MW_STATUS_OK);
    CHECK(removed);
    CHECK_STATUS(mw_manager_remove_cleanup_hook(m, "low", &removed), MW_STATUS_OK);
    CHECK(!removed);
    CHECK_STATUS(mw_manager_add_cleanup_hook(m, "", 0, hook_low, NULL, NULL), MW_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(mw_manager_add_cleanup_hook(m, NULL, 0, hook_low, NULL, NULL), MW_STATUS_NULL_ARGUMENT);
    /* A failing hook: the run completes, the report says which hook failed. */
    CHECK_STATUS(mw_manager_add_cleanup_hook(m, "broken", 0, hook_fail, NULL, NULL), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_force_gc(m, &report), MW_STATUS_CALLBACK);
    ERR_HAS("'broken'");
    CHECK(report && strstr(report, "\"ok\":false"));
    mw_string_free(report);
    /* Automatic cleanup when crossing auto_gc_threshold (80%). */
    after_calls = 0;
    CHECK_STATUS(mw_manager_remove_cleanup_hook(m, "broken", NULL), MW_STATUS_OK);
    at(m, 850);
    CHECK(after_calls == 1);
    char *stats = NULL;
    CHECK_STATUS(mw_manager_stats_json(m, &stats), MW_STATUS_OK);
    CHECK(stats && strstr(stats, "\"cleanup_runs\":4"));
    mw_string_free(stats);
    mw_manager_free(m);
}

static void test_host_reader(void) {
    mw_manager *m = host_manager();
    CHECK_STATUS(mw_manager_set_host_reader(m, NULL, NULL, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_manager_set_host_reader(m, read_host, NULL, free_counter), MW_STATUS_OK);
    mw_state st;
    host_level = 100;
    CHECK_STATUS(mw_manager_check(m, &st), MW_STATUS_OK);
    CHECK(st == MW_STATE_NORMAL);
    host_level = 930;
    CHECK_STATUS(mw_manager_check(m, &st), MW_STATUS_OK);
    CHECK(st == MW_STATE_CRITICAL);
    mw_usage u;
    CHECK_STATUS(mw_manager_usage(m, &u), MW_STATUS_OK);
    CHECK(u.current_bytes == 930 && u.limit_bytes == 1000);
    host_level = 0;
    CHECK_STATUS(mw_manager_check(m, &st), MW_STATUS_CALLBACK);
    ERR_HAS("host reader returned 5");
    int before = freed_count;
    mw_manager_free(m);
    CHECK(freed_count == before + 1);
    mw_manager *p = NULL;
    CHECK_STATUS(mw_manager_new(NULL, &p), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_set_host_reader(p, read_host, NULL, NULL), MW_STATUS_INVALID_ARGUMENT);
    mw_manager_free(p);
}

int main(void) {
    test_version_and_sizes();
    test_bad_config();
    test_null_and_freed_handles();
    test_process_usage_and_limits();
    test_states_callbacks_and_hysteresis();
    test_cleanup_runs();
    test_host_reader();
    return CHECK_SUMMARY();
}
