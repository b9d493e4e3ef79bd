#define _DEFAULT_SOURCE
/* The iterators through the C ABI: streaming chunks, errors, rewind and cache, lazy offset and
 * keyset loaders, filters, bad configs. Built by tests/c/run.sh against libmemwarden.so and
 * libmemwarden.a, and run under valgrind. Chunk-size shrinking under memory pressure needs an
 * injected memory reader, which the C ABI does not expose: it is tested in core (iter.rs). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "memwarden.h"

#include "check.h"

/* A source of the numbers [0, total), failing at the listed call numbers with status 7. */
typedef struct {
    size_t next, total;
    int calls;
    int fail_at[4];
    int n_fail;
} counter_src;

static int32_t count_source(void *user, size_t max, mw_item *items, size_t *n) {
    counter_src *s = user;
    int call = s->calls++;
    for (int i = 0; i < s->n_fail; i++)
        if (s->fail_at[i] == call) return 7;
    size_t k = 0;
    while (k < max && s->next < s->total) items[k++] = s->next++;
    *n = k;
    return 0;
}

static long stat_of(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *at = strstr(json, pat);
    return at ? strtol(at + strlen(pat), NULL, 10) : -1;
}

static char *streaming_stats(mw_streaming *it) {
    char *json = NULL;
    CHECK_STATUS(mw_streaming_stats(it, &json), MW_STATUS_OK);
    return json;
}

static void test_streaming_chunks(void) {
    counter_src src = {.total = 25};
    mw_streaming *it = NULL;
    CHECK_STATUS(mw_streaming_new("{\"chunk_size\": 10}", count_source, &src, &it), MW_STATUS_OK);
    size_t sizes[4] = {0}, n = 0, expect = 0;
    const mw_item *items = NULL;
    int ok_values = 1;
    for (int i = 0; i < 4; i++) {
        CHECK_STATUS(mw_streaming_next(it, &items, &n), MW_STATUS_OK);
        sizes[i] = n;
        for (size_t k = 0; k < n; k++) ok_values &= items[k] == expect++;
    }
    CHECK(sizes[0] == 10 && sizes[1] == 10 && sizes[2] == 5 && sizes[3] == 0);
    CHECK(ok_values);
    CHECK(items == NULL);
    char *json = streaming_stats(it);
    CHECK(stat_of(json, "chunks") == 3 && stat_of(json, "items") == 25 && stat_of(json, "chunk_size") == 10);
    CHECK(strstr(json, "\"finished\":true") != NULL);
    mw_string_free(json);
    /* No cache: a C source cannot restart. */
    CHECK_STATUS(mw_streaming_rewind(it), MW_STATUS_UNSUPPORTED);
    ERR_HAS("cache_chunks is off");
    mw_streaming_free(it);
}

static void test_streaming_errors(void) {
    /* continue: recorded, skipped, the rest arrives. */
    counter_src src = {.total = 6, .fail_at = {1}, .n_fail = 1};
    mw_streaming *it = NULL;
    CHECK_STATUS(mw_streaming_new("{\"chunk_size\": 2}", count_source, &src, &it), MW_STATUS_OK);
    const mw_item *items;
    size_t n, total = 0;
    do {
        CHECK_STATUS(mw_streaming_next(it, &items, &n), MW_STATUS_OK);
        total += n;
    } while (n > 0);
    CHECK(total == 6);
    char *json = streaming_stats(it);
    CHECK(stat_of(json, "skipped_chunks") == 1);
    CHECK(strstr(json, "source callback failed with status 7") != NULL);
    mw_string_free(json);
    mw_streaming_free(it);

    /* stop: the error is returned with its message. */
    counter_src s2 = {.total = 6, .fail_at = {1}, .n_fail = 1};
    CHECK_STATUS(mw_streaming_new("{\"chunk_size\": 2, \"error_handling\": \"stop\"}", count_source, &s2, &it),
                 MW_STATUS_OK);
    CHECK_STATUS(mw_streaming_next(it, &items, &n), MW_STATUS_OK);
    CHECK(n == 2);
    CHECK_STATUS(mw_streaming_next(it, &items, &n), MW_STATUS_CALLBACK);
    ERR_HAS("source callback failed with status 7");
    mw_streaming_free(it);

    /* retry: two failures, two retries, nothing lost. */
    counter_src s3 = {.total = 6, .fail_at = {1, 2}, .n_fail = 2};
    CHECK_STATUS(
        mw_streaming_new("{\"chunk_size\": 2, \"error_handling\": \"retry\", \"retry_attempts\": 2}", count_source, &s3, &it),
        MW_STATUS_OK);
    total = 0;
    do {
        CHECK_STATUS(mw_streaming_next(it, &items, &n), MW_STATUS_OK);
        total += n;
    } while (n > 0);
    CHECK(total == 6);
    json = streaming_stats(it);
    CHECK(stat_of(json, "retries") == 2);
    mw_string_free(json);
    mw_streaming_free(it);
}

static void test_streaming_cache_rewind(void) {
    counter_src src = {.total = 5};
    mw_streaming *it = NULL;
    CHECK_STATUS(mw_streaming_new("{\"chunk_size\": 2, \"cache_chunks\": true}", count_source, &src, &it), MW_STATUS_OK);
    const mw_item *items;
    size_t n, sum = 0, again = 0;
    do {
        CHECK_STATUS(mw_streaming_next(it, &items, &n), MW_STATUS_OK);
        for (size_t k = 0; k < n; k++) sum += items[k];
    } while (n > 0);
    int calls = src.calls;
    CHECK_STATUS(mw_streaming_rewind(it), MW_STATUS_OK);
    do {
        CHECK_STATUS(mw_streaming_next(it, &items, &n), MW_STATUS_OK);
        for (size_t k = 0; k < n; k++) again += items[k];
    } while (n > 0);
    CHECK(sum == 10 && again == 10);
    CHECK(src.calls == calls); /* replayed from the cache */
    char *json = streaming_stats(it);
    CHECK(stat_of(json, "replayed_chunks") == 3 && stat_of(json, "cached_chunks") == 3);
    mw_string_free(json);

    mw_manager *m = NULL;
    CHECK_STATUS(mw_manager_new(NULL, &m), MW_STATUS_OK);
    CHECK_STATUS(mw_streaming_set_manager(it, m), MW_STATUS_OK);
    mw_manager_free(m); /* the iterator keeps it alive */
    json = streaming_stats(it);
    CHECK(strstr(json, "\"cleanup\":\"callback\"") != NULL);
    mw_string_free(json);
    mw_streaming_free(it);
}

/* Rows with keys 10, 20, ..., 10 * total. */
typedef struct {
    int total, calls;
    int64_t last_after;
    char text_key[32];
    int text_keys, omit_key, fail;
} table;

static int32_t offset_loader(void *user, uint64_t offset, const mw_key *after, size_t limit, mw_item *items,
                             size_t *n, mw_key *last_key) {
    table *t = user;
    t->calls++;
    if (after != NULL) return 3;
    (void)last_key;
    if (t->fail > 0 && offset == 2) {
        t->fail--;
        return 6;
    }
    size_t k = 0;
    for (uint64_t i = offset; i < (uint64_t)t->total && k < limit; i++) items[k++] = (mw_item)(i + 1) * 10;
    *n = k;
    return 0;
}

static int32_t keyset_loader(void *user, uint64_t offset, const mw_key *after, size_t limit, mw_item *items,
                             size_t *n, mw_key *last_key) {
    table *t = user;
    t->calls++;
    if (offset != 0) return 4;
    if (t->fail) return 9;
    int64_t from = 0;
    if (after != NULL) {
        if (t->text_keys) {
            if (after->kind != MW_KEY_KIND_TEXT) return 5;
            from = strtoll(after->text + 1, NULL, 10); /* "k<number>" */
        } else {
            if (after->kind != MW_KEY_KIND_INT) return 5;
            from = after->int_value;
        }
    }
    t->last_after = from;
    size_t k = 0;
    for (int i = 1; i <= t->total && k < limit; i++)
        if (i * 10 > from) items[k++] = (mw_item)i * 10;
    *n = k;
    if (k > 0 && !t->omit_key) {
        if (t->text_keys) {
            snprintf(t->text_key, sizeof t->text_key, "k%zu", (size_t)items[k - 1]);
            last_key->kind = MW_KEY_KIND_TEXT;
            last_key->text = t->text_key;
        } else {
            last_key->kind = MW_KEY_KIND_INT;
            last_key->int_value = (int64_t)items[k - 1];
        }
    }
    return 0;
}

static size_t drain_lazy(mw_lazy *it, size_t *sum, int *batches) {
    const mw_item *items;
    size_t n, total = 0;
    *sum = 0;
    *batches = 0;
    for (;;) {
        if (mw_lazy_next_batch(it, &items, &n) != MW_STATUS_OK) return (size_t)-1;
        if (n == 0) return total;
        (*batches)++;
        total += n;
        for (size_t k = 0; k < n; k++) *sum += items[k];
    }
}

static void test_lazy(void) {
    size_t sum;
    int batches;
    table t = {.total = 10};
    mw_lazy *it = NULL;
    CHECK_STATUS(mw_lazy_new("{\"batch_size\": 4, \"cache_chunks\": true}", offset_loader, &t, &it), MW_STATUS_OK);
    CHECK(drain_lazy(it, &sum, &batches) == 10 && sum == 550 && batches == 3);
    CHECK(t.calls == 4);
    CHECK_STATUS(mw_lazy_rewind(it), MW_STATUS_OK);
    CHECK(drain_lazy(it, &sum, &batches) == 10 && sum == 550);
    CHECK(t.calls == 4); /* the cache answered */
    char *json = NULL;
    CHECK_STATUS(mw_lazy_stats(it, &json), MW_STATUS_OK);
    CHECK(stat_of(json, "chunks") == 3 && stat_of(json, "replayed_chunks") == 3);
    CHECK(strstr(json, "\"prefetch_active\":false") != NULL);
    mw_string_free(json);
    mw_lazy_free(it);

    /* Keyset with integer keys, then text keys; no cache, so rewind reloads. */
    table k = {.total = 7};
    CHECK_STATUS(mw_lazy_new("{\"batch_size\": 3, \"mode\": \"keyset\"}", keyset_loader, &k, &it), MW_STATUS_OK);
    CHECK(drain_lazy(it, &sum, &batches) == 7 && sum == 280 && batches == 3);
    CHECK(k.last_after == 70);
    CHECK_STATUS(mw_lazy_rewind(it), MW_STATUS_OK);
    CHECK(drain_lazy(it, &sum, &batches) == 7 && sum == 280);
    CHECK(k.calls == 8);
    mw_lazy_free(it);

    table tx = {.total = 5, .text_keys = 1};
    CHECK_STATUS(mw_lazy_new("{\"batch_size\": 2, \"mode\": \"keyset\"}", keyset_loader, &tx, &it), MW_STATUS_OK);
    CHECK(drain_lazy(it, &sum, &batches) == 5 && sum == 150 && batches == 3);
    CHECK(tx.last_after == 50);
    mw_lazy_free(it);

    /* A keyset loader that forgets the key fails clearly. */
    table bad = {.total = 5, .omit_key = 1};
    CHECK_STATUS(mw_lazy_new("{\"mode\": \"keyset\"}", keyset_loader, &bad, &it), MW_STATUS_OK);
    const mw_item *items;
    size_t n;
    CHECK_STATUS(mw_lazy_next_batch(it, &items, &n), MW_STATUS_CALLBACK);
    ERR_HAS("last_key");
    mw_lazy_free(it);

    /* A failing keyset page cannot be skipped under 'continue'. */
    table down = {.total = 5, .fail = 1};
    CHECK_STATUS(mw_lazy_new("{\"mode\": \"keyset\"}", keyset_loader, &down, &it), MW_STATUS_OK);
    CHECK_STATUS(mw_lazy_next_batch(it, &items, &n), MW_STATUS_CALLBACK);
    ERR_HAS("loader callback failed with status 9");
    ERR_HAS("cannot skip a batch in keyset mode");
    mw_lazy_free(it);
    /* In offset mode 'retry' gets the page again. */
    table once = {.total = 5, .fail = 1};
    CHECK_STATUS(mw_lazy_new("{\"error_handling\": \"retry\", \"batch_size\": 2}", offset_loader, &once, &it),
                 MW_STATUS_OK);
    CHECK(drain_lazy(it, &sum, &batches) == 5 && sum == 150);
    CHECK(once.fail == 0);
    CHECK_STATUS(mw_lazy_stats(it, &json), MW_STATUS_OK);
    CHECK(stat_of(json, "retries") == 1 && stat_of(json, "skipped_chunks") == 0);
    mw_string_free(json);
    mw_lazy_free(it);
}

typedef struct { int calls; mw_item threshold; } filter_state;

static int32_t is_even(void *user, mw_item item) {
    ((filter_state *)user)->calls++;
    return item % 2 == 0;
}
static int32_t above(void *user, mw_item item) {
    filter_state *f = user;
    f->calls++;
    if (item == 99) return -2;
    return item > f->threshold;
}

static void test_filtered(void) {
    for (int early = 1; early >= 0; early--) {
        counter_src src = {.total = 10};
        filter_state a = {0}, b = {.threshold = 3};
        mw_filter_fn fns[2] = {is_even, above};
        void *users[2] = {&a, &b};
        mw_filtered *it = NULL;
        const char *cfg = early ? "{\"early_exit\": true, \"chunk_size\": 3}" : "{\"early_exit\": false}";
        CHECK_STATUS(mw_filtered_new(cfg, count_source, &src, fns, users, 2, &it), MW_STATUS_OK);
        const mw_item *items;
        size_t n;
        CHECK_STATUS(mw_filtered_next_batch(it, 2, &items, &n), MW_STATUS_OK);
        CHECK(n == 2 && items[0] == 4 && items[1] == 6);
        CHECK_STATUS(mw_filtered_next_batch(it, 100, &items, &n), MW_STATUS_OK);
        CHECK(n == 1 && items[0] == 8);
        CHECK_STATUS(mw_filtered_next_batch(it, 100, &items, &n), MW_STATUS_OK);
        CHECK(n == 0);
        CHECK(a.calls == 10);
        CHECK(b.calls == (early ? 5 : 10));
        char *json = NULL;
        CHECK_STATUS(mw_filtered_stats(it, &json), MW_STATUS_OK);
        CHECK(strstr(json, "\"items_seen\":10,\"passed\":3,\"rejected\":7") != NULL);
        CHECK(strstr(json, early ? "{\"evaluated\":5,\"rejected\":2}" : "{\"evaluated\":10,\"rejected\":4}") != NULL);
        CHECK(strstr(json, "\"source\":{") != NULL);
        mw_string_free(json);
        CHECK_STATUS(mw_filtered_next_batch(it, 0, &items, &n), MW_STATUS_INVALID_ARGUMENT);
        mw_filtered_free(it);
    }
    /* A filter error ends the iteration; items before it come first. */
    counter_src src = {.total = 200};
    filter_state b = {.threshold = 95};
    mw_filter_fn fns[1] = {above};
    void *users[1] = {&b};
    mw_filtered *it = NULL;
    CHECK_STATUS(mw_filtered_new(NULL, count_source, &src, fns, users, 1, &it), MW_STATUS_OK);
    const mw_item *items;
    size_t n;
    CHECK_STATUS(mw_filtered_next_batch(it, 10, &items, &n), MW_STATUS_OK);
    CHECK(n == 3 && items[0] == 96);
    CHECK_STATUS(mw_filtered_next_batch(it, 10, &items, &n), MW_STATUS_CALLBACK);
    ERR_HAS("filter 0 failed with status -2");
    mw_filtered_free(it);
    /* No filters: everything passes; NULL filter_users is allowed. */
    counter_src s2 = {.total = 4};
    CHECK_STATUS(mw_filtered_new(NULL, count_source, &s2, NULL, NULL, 0, &it), MW_STATUS_OK);
    CHECK_STATUS(mw_filtered_next_batch(it, 10, &items, &n), MW_STATUS_OK);
    CHECK(n == 4);
    mw_filtered_free(it);
}

static void test_bad_input(void) {
    counter_src src = {.total = 3};
    mw_streaming *it = NULL;
    CHECK_STATUS(mw_streaming_new("{\"chunk_size\": 0}", count_source, &src, &it), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("'chunk_size'");
    CHECK_STATUS(mw_streaming_new("{\"chunk_sise\": 5}", count_source, &src, &it), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("did you mean 'chunk_size'?");
    CHECK_STATUS(mw_streaming_new("{\"memory_limit\": \"lots\"}", count_source, &src, &it), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("'memory_limit'");
    CHECK_STATUS(mw_streaming_new("{", count_source, &src, &it), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("malformed JSON");
    CHECK_STATUS(mw_streaming_new(NULL, NULL, &src, &it), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("'source'");
    CHECK_STATUS(mw_streaming_new(NULL, count_source, &src, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK(it == NULL);
    mw_lazy *lz = NULL;
    CHECK_STATUS(mw_lazy_new("{\"mode\": \"cursor\"}", offset_loader, NULL, &lz), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("'mode'");
    CHECK_STATUS(mw_lazy_new("{\"chunk_sise\": 1}", offset_loader, NULL, &lz), MW_STATUS_INVALID_CONFIG);
    CHECK_STATUS(mw_lazy_new(NULL, NULL, NULL, &lz), MW_STATUS_NULL_ARGUMENT);
    mw_filtered *f = NULL;
    mw_filter_fn none[1] = {NULL};
    CHECK_STATUS(mw_filtered_new(NULL, count_source, &src, none, NULL, 1, &f), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("filters[0]");
    CHECK_STATUS(mw_filtered_new(NULL, count_source, &src, NULL, NULL, 2, &f), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_filtered_new("{\"early_exit\": 1}", count_source, &src, NULL, NULL, 0, &f), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("'early_exit'");

    CHECK_STATUS(mw_streaming_new(NULL, count_source, &src, &it), MW_STATUS_OK);
    const mw_item *items;
    size_t n;
    CHECK_STATUS(mw_streaming_next(it, NULL, &n), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_streaming_next(it, &items, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_streaming_next(NULL, &items, &n), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_streaming_stats(it, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_streaming_set_manager(it, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK(src.calls == 0);
    mw_streaming_free(it);
    CHECK_STATUS(mw_streaming_next(it, &items, &n), MW_STATUS_INVALID_ARGUMENT); /* freed handle */
    ERR_HAS("not a live");
    mw_streaming_free(NULL);
    mw_lazy_free(NULL);
    mw_filtered_free(NULL);
}

/* A source that calls back into its own iterator gets an error, not a deadlock. */
static mw_streaming *reentrant_it;
static mw_status reentrant_status;
static int32_t reentrant_source(void *user, size_t max, mw_item *items, size_t *n) {
    (void)user;
    (void)max;
    (void)items;
    const mw_item *inner;
    size_t k;
    reentrant_status = mw_streaming_next(reentrant_it, &inner, &k);
    *n = 0;
    return 0;
}

static void test_reentrancy(void) {
    CHECK_STATUS(mw_streaming_new(NULL, reentrant_source, NULL, &reentrant_it), MW_STATUS_OK);
    const mw_item *items;
    size_t n;
    CHECK_STATUS(mw_streaming_next(reentrant_it, &items, &n), MW_STATUS_OK);
    CHECK(reentrant_status == MW_STATUS_INVALID_ARGUMENT);
    mw_streaming_free(reentrant_it);
}

int main(void) {
    test_streaming_chunks();
    test_streaming_errors();
    test_streaming_cache_rewind();
    test_lazy();
    test_filtered();
    test_bad_input();
    test_reentrancy();
    return CHECK_SUMMARY();
}
