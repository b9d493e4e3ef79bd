#define _DEFAULT_SOURCE
/* mw_stream_* through the C ABI: every function, the error paths, bytes once and in order,
 * gzip round trip (checked with the system's gzip), backpressure with a slow handler on worker
 * threads. Built by tests/c/run.sh against libmemwarden.so and libmemwarden.a, run under valgrind. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "memwarden.h"

#include "check.h"

#define CHUNK 4096
#define NCHUNKS 40
#define TAIL 123
#define TOTAL (CHUNK * NCHUNKS + TAIL)

static unsigned char input[TOTAL];
static char path[64];

static long num_after(const char *json, const char *key) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *at = strstr(json, pat);
    return at ? strtol(at + strlen(pat), NULL, 10) : -1;
}

/* --- sequential: every byte once, in order ------------------------------------------------ */
struct seq {
    unsigned char out[TOTAL];
    size_t len;
    uint64_t next_index;
    int out_of_order;
};

static int seq_handler(void *user, const uint8_t *data, size_t len, uint64_t index, char **error_out) {
    (void)error_out;
    struct seq *s = user;
    if (index != s->next_index++ || s->len + len > TOTAL) {
        s->out_of_order = 1;
        return 1;
    }
    memcpy(s->out + s->len, data, len);
    s->len += len;
    return 0;
}

static void test_sequential(void) {
    mw_stream *st = NULL;
    CHECK_STATUS(mw_stream_new("{\"chunkSize\": 4096, \"concurrentStreams\": 1, \"maxMemoryUsage\": \"1M\"}", &st),
                 MW_STATUS_OK);
    struct seq *s = calloc(1, sizeof *s);
    char *sum = NULL;
    CHECK_STATUS(mw_stream_process_file(st, path, seq_handler, s, &sum), MW_STATUS_OK);
    CHECK(s->len == TOTAL && !s->out_of_order && memcmp(s->out, input, TOTAL) == 0);
    CHECK(sum && num_after(sum, "chunks") == NCHUNKS + 1 && num_after(sum, "bytes") == TOTAL);
    CHECK(sum && strstr(sum, "\"final\":true") && strstr(sum, "\"speed\":") && strstr(sum, "\"processingTime\":"));
    mw_string_free(sum);
    char *ev = NULL;
    CHECK_STATUS(mw_stream_poll(st, &ev), MW_STATUS_OK);
    CHECK(ev && strstr(ev, "\"memoryUsage\":4096") && strstr(ev, "\"index\":40"));
    mw_string_free(ev);
    char *stats = NULL;
    CHECK_STATUS(mw_stream_stats(st, &stats), MW_STATUS_OK);
    CHECK(stats && num_after(stats, "inFlight") == 0 && num_after(stats, "activeResources") == 0);
    mw_string_free(stats);
    /* summary out-pointer may be NULL */
    memset(s, 0, sizeof *s);
    CHECK_STATUS(mw_stream_process_file(st, path, seq_handler, s, NULL), MW_STATUS_OK);
    CHECK(s->len == TOTAL);
    free(s);
    mw_stream_free(st);
}

/* --- parallel with a slow handler: bounded in flight and tracked bytes ---------------------- */
struct par {
    unsigned char *out;
    atomic_int running, most, calls;
    atomic_uint_fast64_t total;
};

static int par_handler(void *user, const uint8_t *data, size_t len, uint64_t index, char **error_out) {
    (void)error_out;
    struct par *p = user;
    int now = atomic_fetch_add(&p->running, 1) + 1;
    int m = atomic_load(&p->most);
    while (now > m && !atomic_compare_exchange_weak(&p->most, &m, now)) {
    }
    memcpy(p->out + index * CHUNK, data, len);
    atomic_fetch_add(&p->total, len);
    atomic_fetch_add(&p->calls, 1);
    usleep(2000);
    atomic_fetch_sub(&p->running, 1);
    return 0;
}

static void test_parallel_backpressure(void) {
    /* warning 0.5 of 40960 = 20480 bytes = 5 chunks: the tracker, not concurrentStreams (8), bounds it */
    const char *cfgs[2] = {
        "{\"chunkSize\": 4096, \"concurrentStreams\": 8, \"maxMemoryUsage\": 40960, "
        "\"thresholds\": {\"warning\": 0.5, \"critical\": 0.9}}",
        "{\"chunk_size\": 4096, \"concurrent_streams\": 2, \"max_memory_usage\": 1048576}"};
    const int cap[2] = {5, 2};
    for (int i = 0; i < 2; i++) {
        mw_stream *st = NULL;
        CHECK_STATUS(mw_stream_new(cfgs[i], &st), MW_STATUS_OK);
        struct par p = {.out = calloc(1, TOTAL)};
        char *sum = NULL;
        CHECK_STATUS(mw_stream_process_file(st, path, par_handler, &p, &sum), MW_STATUS_OK);
        CHECK(atomic_load(&p.total) == TOTAL && memcmp(p.out, input, TOTAL) == 0);
        CHECK(atomic_load(&p.most) <= cap[i] && atomic_load(&p.most) >= 2);
        CHECK(sum && num_after(sum, "peakInFlight") <= cap[i] && num_after(sum, "memoryUsage") <= cap[i] * CHUNK);
        CHECK(sum && num_after(sum, "pauses") > 0);
        mw_string_free(sum);
        char *stats = NULL;
        CHECK_STATUS(mw_stream_stats(st, &stats), MW_STATUS_OK);
        CHECK(stats && num_after(stats, "peakMemoryUsage") <= cap[i] * CHUNK && num_after(stats, "activeResources") == 0);
        mw_string_free(stats);
        free(p.out);
        mw_stream_free(st);
    }
}

/* --- compression: the gzip members, concatenated, decompress to the input ------------------- */
struct gz {
    FILE *f;
    uint64_t next;
    int bad;
};

static int gz_handler(void *user, const uint8_t *data, size_t len, uint64_t index, char **error_out) {
    (void)error_out;
    struct gz *g = user;
    if (index != g->next++ || len < 2 || data[0] != 0x1f || data[1] != 0x8b) g->bad = 1;
    fwrite(data, 1, len, g->f);
    return 0;
}

static void test_compression(void) {
    mw_stream *st = NULL;
    CHECK_STATUS(mw_stream_new("{\"chunkSize\": 4096, \"concurrentStreams\": 1, \"compressionEnabled\": true}", &st),
                 MW_STATUS_OK);
    char gzpath[80];
    snprintf(gzpath, sizeof gzpath, "%s.gz", path);
    struct gz g = {.f = fopen(gzpath, "wb")};
    CHECK(g.f != NULL);
    char *sum = NULL;
    CHECK_STATUS(mw_stream_process_file(st, path, gz_handler, &g, &sum), MW_STATUS_OK);
    long written = ftell(g.f);
    fclose(g.f);
    CHECK(!g.bad && sum && num_after(sum, "compressedBytes") == written);
    mw_string_free(sum);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "gzip -dc < %s | cmp -s - %s", gzpath, path);
    CHECK(system(cmd) == 0);
    unlink(gzpath);

    /* the driver's compress + mw_bytes_free */
    uint8_t *z = NULL;
    size_t zlen = 0;
    CHECK_STATUS(mw_stream_compress(st, input, TOTAL, &z, &zlen), MW_STATUS_OK);
    CHECK(z && zlen > 18 && z[0] == 0x1f && z[1] == 0x8b);
    mw_bytes_free(z, zlen);
    CHECK_STATUS(mw_stream_compress(st, NULL, 0, &z, &zlen), MW_STATUS_OK);
    mw_bytes_free(z, zlen);
    mw_bytes_free(NULL, 0);
    CHECK_STATUS(mw_stream_compress(st, NULL, 5, &z, &zlen), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_stream_compress(st, input, 5, NULL, &zlen), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_stream_compress(st, input, 5, &z, NULL), MW_STATUS_NULL_ARGUMENT);
    mw_stream_free(st);
}

/* --- handler errors ---------------------------------------------------------------------- */
static int fail_at_3(void *user, const uint8_t *data, size_t len, uint64_t index, char **error_out) {
    (void)data;
    (void)len;
    atomic_fetch_add((atomic_int *)user, 1);
    if (index == 3) {
        *error_out = "upload refused";
        return 1;
    }
    return 0;
}

static int fail_silently(void *user, const uint8_t *data, size_t len, uint64_t index, char **error_out) {
    (void)user;
    (void)data;
    (void)len;
    (void)error_out;
    return index == 0 ? 7 : 0;
}

static void test_handler_errors(void) {
    for (int streams = 1; streams <= 4; streams += 3) {
        char cfg[96];
        snprintf(cfg, sizeof cfg, "{\"chunkSize\": 4096, \"concurrentStreams\": %d}", streams);
        mw_stream *st = NULL;
        CHECK_STATUS(mw_stream_new(cfg, &st), MW_STATUS_OK);
        atomic_int calls = 0;
        char *sum = NULL;
        CHECK_STATUS(mw_stream_process_file(st, path, fail_at_3, &calls, &sum), MW_STATUS_CALLBACK);
        ERR_HAS("chunk 3 (offset 12288, 4096 bytes): upload refused");
        CHECK(sum == NULL && atomic_load(&calls) < NCHUNKS);
        CHECK_STATUS(mw_stream_process_file(st, path, fail_silently, NULL, NULL), MW_STATUS_CALLBACK);
        ERR_HAS("chunk 0 (offset 0, 4096 bytes): the handler returned 7");
        char *stats = NULL;
        CHECK_STATUS(mw_stream_stats(st, &stats), MW_STATUS_OK);
        CHECK(stats && num_after(stats, "activeResources") == 0 && num_after(stats, "totalAllocated") == 0);
        mw_string_free(stats);
        mw_stream_free(st);
    }
}

/* --- the host's own loop ----------------------------------------------------------------- */
static void test_driver(void) {
    mw_stream *st = NULL;
    CHECK_STATUS(mw_stream_new("{\"chunkSize\": 100, \"concurrentStreams\": 2, \"maxMemoryUsage\": 1000}", &st),
                 MW_STATUS_OK);
    CHECK_STATUS(mw_stream_begin(st), MW_STATUS_OK);
    mw_chunk_ticket a, b, c;
    bool ok = false;
    CHECK_STATUS(mw_stream_admit(st, 100, 0, &a, &ok), MW_STATUS_OK);
    CHECK(ok && a.index == 0 && a.offset == 0 && a.size == 100 && a.resource_id != 0);
    CHECK_STATUS(mw_stream_admit(st, 100, 0, &b, &ok), MW_STATUS_OK);
    CHECK(ok && b.index == 1 && b.offset == 100);
    CHECK_STATUS(mw_stream_admit(st, 100, 0, &c, &ok), MW_STATUS_OK);
    CHECK(!ok);
    CHECK_STATUS(mw_stream_admit(st, 100, 10, &c, &ok), MW_STATUS_OK);
    CHECK(!ok);
    CHECK_STATUS(mw_stream_begin(st), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("in flight");
    char *ev = NULL;
    CHECK_STATUS(mw_stream_finish(st, a, 100, 0, 2.5, &ev), MW_STATUS_OK);
    CHECK(ev && strstr(ev, "\"processingTime\":2.5") && num_after(ev, "memoryUsage") == 200);
    mw_string_free(ev);
    CHECK_STATUS(mw_stream_admit(st, 100, -1, &c, &ok), MW_STATUS_OK);
    CHECK(ok && c.index == 2);
    CHECK_STATUS(mw_stream_cancel(st, c, true), MW_STATUS_OK);
    char *sum = NULL;
    CHECK_STATUS(mw_stream_end(st, &sum), MW_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(mw_stream_finish(st, b, 101, 0, 0, NULL), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("finished with 101");
    CHECK_STATUS(mw_stream_finish(st, b, 50, 0, -1, NULL), MW_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(mw_stream_finish(st, b, 50, 20, 1, &ev), MW_STATUS_OK);
    CHECK(ev && num_after(ev, "compressedSize") == 20);
    mw_string_free(ev);
    CHECK_STATUS(mw_stream_cancel(st, b, false), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("not in flight");
    CHECK_STATUS(mw_stream_end(st, &sum), MW_STATUS_OK);
    CHECK(sum && num_after(sum, "chunks") == 2 && num_after(sum, "bytes") == 150 && num_after(sum, "cancelled") == 1);
    mw_string_free(sum);
    CHECK_STATUS(mw_stream_admit(st, 0, 0, &c, &ok), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("0 bytes");
    CHECK_STATUS(mw_stream_admit(st, 5000, 0, &c, &ok), MW_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(mw_stream_admit(st, 10, -2, &c, &ok), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("timeout_ms -2");
    CHECK_STATUS(mw_stream_admit(st, 10, 0, NULL, &ok), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_stream_admit(st, 10, 0, &c, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_stream_end(st, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_stream_stats(st, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_stream_poll(st, NULL), MW_STATUS_NULL_ARGUMENT);
    mw_stream_free(st);
}

/* --- a tracker of the host's own ---------------------------------------------------------- */
struct tr_seen {
    atomic_int warning, critical, freed;
};

static void tr_event(void *user, const char *event) {
    struct tr_seen *s = user;
    if (strstr(event, "\"type\":\"memoryWarning\"")) atomic_fetch_add(&s->warning, 1);
    if (strstr(event, "\"type\":\"memoryCritical\"")) atomic_fetch_add(&s->critical, 1);
}

static void tr_free(void *user) {
    atomic_fetch_add(&((struct tr_seen *)user)->freed, 1);
}

static int count_occurrences(const char *text, const char *needle) {
    int n = 0;
    for (const char *at = text; at && (at = strstr(at, needle)) != NULL; at += strlen(needle)) n++;
    return n;
}

static void test_own_tracker(void) {
    mw_tracker *t = NULL;
    CHECK_STATUS(mw_tracker_new("{\"maxMemoryUsage\": 1000, \"thresholds\": {\"warning\": 0.5, \"critical\": 0.9}}", &t),
                 MW_STATUS_OK);
    static struct tr_seen seen;
    CHECK_STATUS(mw_tracker_set_event_callback(t, tr_event, &seen, tr_free), MW_STATUS_OK);
    mw_stream *st = NULL;
    CHECK_STATUS(mw_stream_new_with_tracker("{\"chunkSize\": 200, \"concurrentStreams\": 8}", t, &st), MW_STATUS_OK);

    /* the host's loop: the tracker's warning level (500 bytes) pauses reading, not concurrentStreams */
    CHECK_STATUS(mw_stream_begin(st), MW_STATUS_OK);
    mw_chunk_ticket a, b, c;
    bool ok = false;
    CHECK_STATUS(mw_stream_admit(st, 200, 0, &a, &ok), MW_STATUS_OK);
    CHECK(ok);
    CHECK_STATUS(mw_stream_admit(st, 200, 0, &b, &ok), MW_STATUS_OK);
    CHECK(ok);
    CHECK_STATUS(mw_stream_admit(st, 200, 0, &c, &ok), MW_STATUS_OK);
    CHECK(!ok); /* 600 would pass 500 */
    char *stats = NULL;
    CHECK_STATUS(mw_tracker_stats(t, &stats), MW_STATUS_OK); /* the chunks show in the host's tracker */
    CHECK(stats && num_after(stats, "totalAllocated") == 400 && num_after(stats, "activeResources") == 2);
    CHECK(stats && strstr(stats, "\"byType\":{\"chunk\":2}"));
    mw_string_free(stats);
    uint64_t other = 0;
    CHECK_STATUS(mw_tracker_track(t, "buffer", 100, NULL, &other), MW_STATUS_OK); /* 500: warning */
    CHECK(atomic_load(&seen.warning) == 1);
    CHECK_STATUS(mw_stream_finish(st, a, 200, 0, 1.0, NULL), MW_STATUS_OK);
    CHECK_STATUS(mw_stream_finish(st, b, 200, 0, 1.0, NULL), MW_STATUS_OK);
    CHECK_STATUS(mw_tracker_track(t, "buffer", 500, NULL, &other), MW_STATUS_OK); /* 600: warning again */
    CHECK(atomic_load(&seen.warning) == 2);
    /* nothing in flight: one chunk is admitted; 800 passes... 900 is critical */
    CHECK_STATUS(mw_stream_admit(st, 200, 0, &a, &ok), MW_STATUS_OK);
    CHECK(ok);
    CHECK_STATUS(mw_stream_admit(st, 200, 0, &b, &ok), MW_STATUS_OK);
    CHECK(!ok);
    CHECK_STATUS(mw_tracker_track(t, "buffer", 100, NULL, &other), MW_STATUS_OK);
    CHECK(atomic_load(&seen.critical) == 1);
    char *ev = NULL;
    CHECK_STATUS(mw_stream_poll(st, &ev), MW_STATUS_OK);
    /* the stream's queue has the performance events, and none of the tracker's events it did not cause */
    CHECK(ev && count_occurrences(ev, "\"type\":\"performance\"") == 2);
    CHECK(ev && strstr(ev, "memoryWarning") == NULL && strstr(ev, "memoryCritical") == NULL);
    mw_string_free(ev);
    CHECK_STATUS(mw_stream_finish(st, a, 200, 0, 1.0, NULL), MW_STATUS_OK);
    char *sum = NULL;
    CHECK_STATUS(mw_stream_end(st, &sum), MW_STATUS_OK);
    CHECK(sum && num_after(sum, "chunks") == 3 && num_after(sum, "peakInFlight") == 2);
    mw_string_free(sum);
    char *polled = NULL;
    CHECK_STATUS(mw_tracker_poll(t, &polled), MW_STATUS_OK); /* queued for the tracker's poll too */
    CHECK(polled && count_occurrences(polled, "memoryWarning") == 2 && count_occurrences(polled, "memoryCritical") == 1);
    mw_string_free(polled);
    mw_tracker_free(t); /* the stream keeps the tracker; the callback ends with the handle */
    CHECK(atomic_load(&seen.freed) == 1);
    mw_stream_free(st);

    /* the whole loop on worker threads, chunks that cross the warning level as they come in */
    static struct tr_seen seen2;
    CHECK_STATUS(mw_tracker_new("{\"maxMemoryUsage\": 16384, \"thresholds\": {\"warning\": 0.5, \"critical\": 0.9}}", &t),
                 MW_STATUS_OK);
    CHECK_STATUS(mw_tracker_set_event_callback(t, tr_event, &seen2, tr_free), MW_STATUS_OK);
    CHECK_STATUS(mw_tracker_track(t, "buffer", 6000, NULL, &other), MW_STATUS_OK);
    CHECK_STATUS(mw_stream_new_with_tracker("{\"chunkSize\": 4096, \"concurrentStreams\": 4}", t, &st), MW_STATUS_OK);
    struct par p = {.out = calloc(1, TOTAL)};
    CHECK_STATUS(mw_stream_process_file(st, path, par_handler, &p, &sum), MW_STATUS_OK);
    CHECK(atomic_load(&p.total) == TOTAL && memcmp(p.out, input, TOTAL) == 0);
    /* 6000 + one chunk of 4096 is past 8192: one chunk at a time, though concurrentStreams is 4 */
    CHECK(sum && num_after(sum, "peakInFlight") == 1 && atomic_load(&p.most) == 1);
    CHECK(sum && num_after(sum, "memoryUsage") == 6000 + CHUNK);
    mw_string_free(sum);
    CHECK(atomic_load(&seen2.warning) == NCHUNKS + 2); /* every chunk, the tail and the end-of-input probe */
    CHECK_STATUS(mw_stream_poll(st, &ev), MW_STATUS_OK);
    CHECK(ev && count_occurrences(ev, "\"type\":\"memoryWarning\"") == NCHUNKS + 2 && strstr(ev, "\"index\":0"));
    mw_string_free(ev);
    CHECK_STATUS(mw_tracker_stats(t, &stats), MW_STATUS_OK);
    CHECK(stats && num_after(stats, "totalAllocated") == 6000 && num_after(stats, "activeResources") == 1);
    CHECK(stats && num_after(stats, "totalTracked") == NCHUNKS + 3 && num_after(stats, "peakMemoryUsage") == 6000 + CHUNK);
    mw_string_free(stats);
    free(p.out);
    mw_stream_free(st); /* either order */
    mw_tracker_free(t);
    CHECK(atomic_load(&seen2.freed) == 1);

    /* bad input */
    CHECK_STATUS(mw_tracker_new("{\"maxMemoryUsage\": 1000}", &t), MW_STATUS_OK);
    CHECK_STATUS(mw_stream_new_with_tracker("{\"maxMemoryUsage\": 10}", t, &st), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("'maxMemoryUsage' is an option of the tracker");
    CHECK_STATUS(mw_stream_new_with_tracker("{\"thresholds\": {}}", t, &st), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("'thresholds'");
    CHECK_STATUS(mw_stream_new_with_tracker("{\"chunkSize\": 2000}", t, &st), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("larger than maxMemoryUsage (1000)");
    CHECK_STATUS(mw_stream_new_with_tracker("{\"chunkSiz\": 1}", t, &st), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("did you mean 'chunkSize'");
    CHECK_STATUS(mw_stream_new_with_tracker("{", t, &st), MW_STATUS_INVALID_CONFIG);
    CHECK_STATUS(mw_stream_new_with_tracker(NULL, NULL, &st), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("tracker");
    CHECK_STATUS(mw_stream_new_with_tracker(NULL, t, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_stream_new_with_tracker(NULL, (mw_tracker *)&seen, &st), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("not a live");
    CHECK_STATUS(mw_stream_new_with_tracker(NULL, t, &st), MW_STATUS_INVALID_CONFIG); /* the default 1 MiB chunk */
    ERR_HAS("larger than maxMemoryUsage (1000)");
    mw_tracker_free(t);
    CHECK_STATUS(mw_stream_new_with_tracker("{\"chunkSize\": 10}", t, &st), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("not a live");
}

/* --- bad input --------------------------------------------------------------------------- */
static void test_bad_input(void) {
    mw_stream *st = NULL;
    CHECK_STATUS(mw_stream_new("{\"chunkSize\": 0}", &st), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("chunkSize");
    CHECK_STATUS(mw_stream_new("{\"chunkSize\": -1}", &st), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("negative");
    CHECK_STATUS(mw_stream_new("{\"concurrentStreams\": 0}", &st), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("concurrentStreams");
    CHECK_STATUS(mw_stream_new("{\"maxMemoryUsage\": \"-5M\"}", &st), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("negative");
    CHECK_STATUS(mw_stream_new("{\"chunkSise\": 1}", &st), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("did you mean 'chunkSize'");
    CHECK_STATUS(mw_stream_new("{\"chunkSize\": \"2M\", \"maxMemoryUsage\": \"1M\"}", &st), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("larger than maxMemoryUsage");
    CHECK_STATUS(mw_stream_new("{", &st), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("malformed JSON");
    CHECK_STATUS(mw_stream_new("\xff", &st), MW_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(mw_stream_new(NULL, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_stream_new(NULL, &st), MW_STATUS_OK);
    CHECK_STATUS(mw_stream_process_file(st, "/nonexistent/memwarden.bin", seq_handler, NULL, NULL), MW_STATUS_IO);
    ERR_HAS("cannot open '/nonexistent/memwarden.bin'");
    CHECK_STATUS(mw_stream_process_file(st, NULL, seq_handler, NULL, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_stream_process_file(st, path, NULL, NULL, NULL), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("handler");
    CHECK_STATUS(mw_stream_process_file(NULL, path, seq_handler, NULL, NULL), MW_STATUS_NULL_ARGUMENT);
    mw_stream_free(st);
    CHECK_STATUS(mw_stream_begin(st), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("not a live");
    mw_stream_free(st);
    mw_stream_free(NULL);
}

int main(void) {
    for (size_t i = 0; i < TOTAL; i++) input[i] = (unsigned char)((i * 31u) % 251u);
    snprintf(path, sizeof path, "/tmp/mw-stream-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, input, TOTAL) != TOTAL) {
        perror("mkstemp/write");
        return 2;
    }
    close(fd);
    test_sequential();
    test_parallel_backpressure();
    test_compression();
    test_handler_errors();
    test_driver();
    test_own_tracker();
    test_bad_input();
    unlink(path);
    return CHECK_SUMMARY();
}
