#define _DEFAULT_SOURCE
/* The MemoryPool through the C ABI: every function, every error path.
 * Built by tests/c/run.sh against libmemwarden.so and libmemwarden.a, and run under valgrind. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "memwarden.h"

#include "check.h"

/* A "connection": heap-allocated, counted. */
typedef struct { int id; int broken; int dirty; } conn;
typedef struct {
    int created, destroyed, resets, validations, leaks, freed;
    int fail_create, fail_reset, null_create;
    char last_leak[512];
} counters;

static int32_t create(void *ud, void **out) {
    counters *c = ud;
    if (c->fail_create) return 5;
    if (c->null_create) { *out = NULL; return 0; }
    conn *k = calloc(1, sizeof *k);
    /* The callbacks run on the acquiring threads (test_two_threads): count atomically. */
    k->id = __atomic_add_fetch(&c->created, 1, __ATOMIC_SEQ_CST);
    *out = k;
    return 0;
}
static int32_t reset(void *ud, void *obj) {
    counters *c = ud;
    conn *k = obj;
    __atomic_add_fetch(&c->resets, 1, __ATOMIC_SEQ_CST);
    k->dirty = 0;
    return c->fail_reset ? 9 : 0;
}
static int32_t validate(void *ud, void *obj, bool *valid) {
    counters *c = ud;
    __atomic_add_fetch(&c->validations, 1, __ATOMIC_SEQ_CST);
    *valid = !((conn *)obj)->broken;
    return 0;
}
static void destroy(void *ud, void *obj) {
    __atomic_add_fetch(&((counters *)ud)->destroyed, 1, __ATOMIC_SEQ_CST);
    free(obj);
}
static void on_leak(void *ud, const char *json) {
    counters *c = ud;
    __atomic_add_fetch(&c->leaks, 1, __ATOMIC_SEQ_CST);
    snprintf(c->last_leak, sizeof c->last_leak, "%s", json);
}
static void free_ud(void *ud) { __atomic_add_fetch(&((counters *)ud)->freed, 1, __ATOMIC_SEQ_CST); }

static mw_pool_callbacks callbacks(counters *c) {
    mw_pool_callbacks cb = {0};
    cb.user_data = c;
    cb.free_user_data = free_ud;
    cb.create = create;
    cb.reset = reset;
    cb.validate = validate;
    cb.destroy = destroy;
    cb.on_leak = on_leak;
    cb.background_hooks = false;
    return cb;
}

static long stat_of(mw_pool *p, const char *key) {
    char *json = NULL;
    if (mw_pool_stats_json(p, &json) != MW_STATUS_OK) return -1;
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    char *at = strstr(json, pat);
    long v = at ? strtol(at + strlen(pat), NULL, 10) : -1;
    mw_string_free(json);
    return v;
}

static void test_bad_input(void) {
    counters c = {0};
    mw_pool_callbacks cb = callbacks(&c);
    mw_pool *p = (mw_pool *)0x1;
    CHECK_STATUS(mw_pool_new("{\"max_size\": 0}", &cb, &p), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("'max_size'");
    CHECK(p == (mw_pool *)0x1);
    CHECK_STATUS(mw_pool_new("{\"max_size\": 2, \"min_size\": 3}", &cb, &p), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("must not exceed");
    CHECK_STATUS(mw_pool_new("{\"max_idle_time\": -1}", &cb, &p), MW_STATUS_INVALID_CONFIG);
    CHECK_STATUS(mw_pool_new("{\"max_sise\": 1}", &cb, &p), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("did you mean 'max_size'");
    CHECK_STATUS(mw_pool_new("{", &cb, &p), MW_STATUS_INVALID_CONFIG);
    CHECK_STATUS(mw_pool_new(NULL, NULL, &p), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("'callbacks'");
    mw_pool_callbacks nocreate = cb;
    nocreate.create = NULL;
    CHECK_STATUS(mw_pool_new(NULL, &nocreate, &p), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("callbacks->create");
    CHECK_STATUS(mw_pool_new(NULL, &cb, NULL), MW_STATUS_NULL_ARGUMENT);
    c.fail_create = 1;
    CHECK_STATUS(mw_pool_new(NULL, &cb, &p), MW_STATUS_CALLBACK); /* min_size 2 cannot be created */
    ERR_HAS("returned 5");
    CHECK(c.freed == 8); /* user_data finalized after every failed new that had callbacks */
    void *o;
    CHECK_STATUS(mw_pool_acquire(NULL, NULL, &o), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_pool_release(NULL, &o), MW_STATUS_NULL_ARGUMENT);
    mw_pool_free(NULL);
}

static void test_basic_reuse_and_stats(void) {
    counters c = {0};
    mw_pool_callbacks cb = callbacks(&c);
    mw_pool *p = NULL;
    CHECK_STATUS(mw_pool_new("{\"max_size\": 3, \"min_size\": 2, \"auto_cleanup\": false}", &cb, &p), MW_STATUS_OK);
    CHECK(c.created == 2);
    CHECK(stat_of(p, "idle") == 2);
    void *a = NULL, *b = NULL;
    CHECK_STATUS(mw_pool_acquire(p, NULL, &a), MW_STATUS_OK);
    ((conn *)a)->dirty = 1;
    CHECK_STATUS(mw_pool_release(p, a), MW_STATUS_OK);
    CHECK(c.resets == 1 && ((conn *)a)->dirty == 0);
    CHECK_STATUS(mw_pool_acquire(p, "main", &b), MW_STATUS_OK);
    CHECK(a == b); /* most recently released comes back first */
    CHECK(stat_of(p, "active") == 1);
    /* Double and foreign release change nothing. */
    CHECK_STATUS(mw_pool_release(p, b), MW_STATUS_OK);
    CHECK_STATUS(mw_pool_release(p, b), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("released twice");
    conn stranger = {0};
    CHECK_STATUS(mw_pool_release(p, &stranger), MW_STATUS_INVALID_ARGUMENT);
    CHECK(stat_of(p, "idle") == 2 && stat_of(p, "active") == 0);
    CHECK(stat_of(p, "total_acquired") == 2 && stat_of(p, "hit_rate") == 100);
    /* Exhaustion: try_acquire says no, acquire times out. */
    void *x, *y, *z, *w;
    CHECK_STATUS(mw_pool_acquire(p, NULL, &x), MW_STATUS_OK);
    CHECK_STATUS(mw_pool_acquire(p, NULL, &y), MW_STATUS_OK);
    CHECK_STATUS(mw_pool_acquire(p, NULL, &z), MW_STATUS_OK);
    CHECK(c.created == 3);
    bool got = true;
    CHECK_STATUS(mw_pool_try_acquire(p, NULL, &w, &got), MW_STATUS_OK);
    CHECK(!got);
    CHECK_STATUS(mw_pool_try_acquire(p, NULL, &w, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_pool_release(p, x), MW_STATUS_OK);
    CHECK_STATUS(mw_pool_release(p, y), MW_STATUS_OK);
    CHECK_STATUS(mw_pool_release(p, z), MW_STATUS_OK);
    size_t gone = 0;
    CHECK_STATUS(mw_pool_trim(p, 1, &gone), MW_STATUS_OK);
    CHECK(gone == 2 && c.destroyed == 2);
    mw_pool_free(p);
    CHECK(c.destroyed == 3 && c.freed == 1);
    CHECK_STATUS(mw_pool_acquire(p, NULL, &x), MW_STATUS_INVALID_ARGUMENT); /* freed handle */
    ERR_HAS("not a live");
}

static void test_timeout_and_failures(void) {
    counters c = {0};
    mw_pool_callbacks cb = callbacks(&c);
    mw_pool *p = NULL;
    CHECK_STATUS(mw_pool_new("{\"max_size\": 1, \"min_size\": 0, \"acquire_timeout\": 0.05, \"auto_cleanup\": false}", &cb, &p),
                 MW_STATUS_OK);
    void *a, *b;
    CHECK_STATUS(mw_pool_acquire(p, NULL, &a), MW_STATUS_OK);
    CHECK_STATUS(mw_pool_acquire(p, NULL, &b), MW_STATUS_TIMEOUT);
    ERR_HAS("acquire_timeout");
    CHECK(stat_of(p, "timeouts") == 1);
    /* A failing reset destroys the object. */
    c.fail_reset = 1;
    CHECK_STATUS(mw_pool_release(p, a), MW_STATUS_CALLBACK);
    ERR_HAS("reset callback returned 9");
    CHECK(c.destroyed == 1 && stat_of(p, "size") == 0);
    c.fail_reset = 0;
    /* A failing or NULL-producing create. */
    c.fail_create = 1;
    CHECK_STATUS(mw_pool_acquire(p, NULL, &a), MW_STATUS_CALLBACK);
    c.fail_create = 0;
    c.null_create = 1;
    CHECK_STATUS(mw_pool_acquire(p, NULL, &a), MW_STATUS_CALLBACK);
    ERR_HAS("NULL object");
    c.null_create = 0;
    CHECK(stat_of(p, "size") == 0 && stat_of(p, "active") == 0);
    /* Validation after validation_interval; a broken object is replaced. */
    mw_pool_free(p);
    CHECK_STATUS(mw_pool_new("{\"max_size\": 2, \"min_size\": 1, \"validation_interval\": 0, \"auto_cleanup\": false}", &cb, &p),
                 MW_STATUS_OK);
    CHECK_STATUS(mw_pool_acquire(p, NULL, &a), MW_STATUS_OK);
    ((conn *)a)->broken = 1;
    CHECK_STATUS(mw_pool_release(p, a), MW_STATUS_OK);
    usleep(30 * 1000); /* the coarse clock ticks every 10 ms */
    CHECK_STATUS(mw_pool_acquire(p, NULL, &b), MW_STATUS_OK);
    CHECK(b != NULL && !((conn *)b)->broken);
    CHECK(c.validations >= 1 && stat_of(p, "validation_failures") == 1);
    CHECK_STATUS(mw_pool_release(p, b), MW_STATUS_OK);
    mw_pool_free(p);
}

static void test_leaks_close_and_manager(void) {
    counters c = {0};
    mw_pool_callbacks cb = callbacks(&c);
    mw_pool *p = NULL;
    CHECK_STATUS(mw_pool_new("{\"max_size\": 4, \"min_size\": 1, \"leak_detection_threshold\": 0.02, \"auto_cleanup\": false}", &cb, &p),
                 MW_STATUS_OK);
    void *a;
    CHECK_STATUS(mw_pool_acquire(p, "worker.c:42", &a), MW_STATUS_OK);
    usleep(60 * 1000);
    CHECK_STATUS(mw_pool_maintain(p), MW_STATUS_OK);
    CHECK_STATUS(mw_pool_maintain(p), MW_STATUS_OK);
    CHECK(c.leaks == 1 && strstr(c.last_leak, "worker.c:42"));
    CHECK(stat_of(p, "leaks") == 1);
    /* Registered with a manager, a collection trims the pool to min_size. */
    void *more[3];
    for (int i = 0; i < 3; i++) CHECK_STATUS(mw_pool_acquire(p, NULL, &more[i]), MW_STATUS_OK);
    for (int i = 0; i < 3; i++) CHECK_STATUS(mw_pool_release(p, more[i]), MW_STATUS_OK);
    CHECK(stat_of(p, "idle") == 3);
    mw_manager *m = NULL;
    CHECK_STATUS(mw_manager_new(NULL, &m), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_add_pool(m, "pool", 0, p), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_add_pool(m, NULL, 0, p), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_manager_add_pool(m, "x", 0, (mw_pool *)m), MW_STATUS_INVALID_ARGUMENT); /* wrong handle type */
    CHECK_STATUS(mw_manager_force_gc(m, NULL), MW_STATUS_OK);
    CHECK(stat_of(p, "idle") == 1);
    CHECK_STATUS(mw_manager_emergency_cleanup(m, NULL), MW_STATUS_OK);
    CHECK(stat_of(p, "idle") == 0);
    /* Close: no acquires, the held object destroyed on release. */
    CHECK_STATUS(mw_pool_close(p), MW_STATUS_OK);
    void *b;
    CHECK_STATUS(mw_pool_acquire(p, NULL, &b), MW_STATUS_CLOSED);
    int before = c.destroyed;
    CHECK_STATUS(mw_pool_release(p, a), MW_STATUS_OK);
    CHECK(c.destroyed == before + 1);
    CHECK_STATUS(mw_pool_close(p), MW_STATUS_OK);
    mw_pool_free(p);
    CHECK(c.freed == 0); /* the manager still holds the pool */
    mw_manager_free(m);
    CHECK(c.freed == 1);
    CHECK(c.created == c.destroyed);
}

/* Two threads hammering a pool of 2; the invariant holds afterwards. */
static mw_pool *shared_pool;
static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        void *o;
        if (mw_pool_acquire(shared_pool, NULL, &o) == MW_STATUS_OK) mw_pool_release(shared_pool, o);
    }
    return NULL;
}

static void test_two_threads(void) {
    counters c = {0};
    mw_pool_callbacks cb = callbacks(&c);
    cb.validate = NULL;
    CHECK_STATUS(mw_pool_new("{\"max_size\": 2, \"min_size\": 0, \"acquire_timeout\": 10}", &cb, &shared_pool), MW_STATUS_OK);
    pthread_t t1, t2, t3;
    pthread_create(&t1, NULL, worker, NULL);
    pthread_create(&t2, NULL, worker, NULL);
    pthread_create(&t3, NULL, worker, NULL);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    pthread_join(t3, NULL);
    CHECK(stat_of(shared_pool, "total_created") - stat_of(shared_pool, "total_destroyed") ==
          stat_of(shared_pool, "active") + stat_of(shared_pool, "idle"));
    CHECK(stat_of(shared_pool, "total_acquired") == 60000);
    CHECK(c.created <= 2);
    mw_pool_free(shared_pool);
    CHECK(c.created == c.destroyed);
}

int main(void) {
    test_bad_input();
    test_basic_reuse_and_stats();
    test_timeout_and_failures();
    test_leaks_close_and_manager();
    test_two_threads();
    return CHECK_SUMMARY();
}
