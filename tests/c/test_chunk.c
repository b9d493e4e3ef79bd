#define _DEFAULT_SOURCE
/* The ChunkedDatabaseProcessor through the C ABI: an embedded SQLite database (rows generated
 * by a recursive CTE, so no table is needed), the row accessor, process / process_query,
 * progress and error callbacks, a host-run connection, bad input. PostgreSQL and MariaDB are
 * covered by the core's tests and the bindings'. Built by tests/c/run.sh, run under valgrind. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include "memwarden.h"

#include "check.h"

#define ROWS 1000
static const char *GEN =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) "
    "SELECT x AS id, 'name-' || x AS name, x * 0.5 AS half, NULL AS nada, x % 2 = 0 AS even FROM c";

typedef struct {
    int seen[ROWS + 1];
    long sum;
    int batches, fail_chunk, fail_times, progress_calls;
    long last_processed;
    int errors_seen, error_answer;
} state;

static int32_t on_batch(void *user, const mw_batch *b) {
    state *s = user;
    size_t rows = mw_batch_row_count(b);
    int64_t first = 0;
    mw_batch_int(b, 0, 0, &first);
    /* fail_chunk n: the chunk starting at id (n - 1) * 100 + 1 fails fail_times times */
    if (s->fail_chunk && first == (s->fail_chunk - 1) * 100 + 1 && s->fail_times > 0) {
        s->fail_times--;
        return 9;
    }
    s->batches++;
    for (size_t r = 0; r < rows; r++) {
        int64_t id = 0;
        if (mw_batch_int(b, r, 0, &id) != MW_STATUS_OK || id < 1 || id > ROWS) return 1;
        s->seen[id]++;
        s->sum += id;
    }
    return 0;
}

static int32_t on_row(void *user, const mw_batch *b, size_t row) {
    state *s = user;
    int64_t id = 0;
    double half = 0;
    const char *text = NULL;
    size_t len = 0;
    if (mw_batch_int(b, row, 0, &id) != MW_STATUS_OK) return 1;
    if (mw_batch_real(b, row, 2, &half) != MW_STATUS_OK || half != id * 0.5) return 2;
    if (mw_batch_text(b, row, 1, &text, &len) != MW_STATUS_OK) return 3;
    char want[32];
    snprintf(want, sizeof want, "name-%lld", (long long)id);
    if (len != strlen(want) || memcmp(text, want, len) != 0) return 4;
    if (mw_batch_type(b, row, 3) != MW_VALUE_TYPE_NULL) return 5;
    if (id >= 1 && id <= ROWS) s->seen[id]++;
    return 0;
}

static int32_t on_progress(void *user, const char *json) {
    state *s = user;
    s->progress_calls++;
    const char *at = strstr(json, "\"processed\":");
    s->last_processed = at ? strtol(at + 12, NULL, 10) : -1;
    return strstr(json, "\"estimated_remaining\":") && strstr(json, "\"memory_usage\":") ? 0 : 1;
}

static int32_t on_error(void *user, const char *message, const char *chunk_json) {
    state *s = user;
    s->errors_seen++;
    if (!strstr(message, "batch callback failed with status 9")) return -1;
    if (!strstr(chunk_json, "\"first_key\":201")) return -1;
    return s->error_answer;
}

static int all_once(const state *s) {
    for (int i = 1; i <= ROWS; i++)
        if (s->seen[i] != 1) return 0;
    return 1;
}

static void test_process_query(const char *url) {
    mw_chunk *p = NULL;
    CHECK_STATUS(mw_chunk_open(url, "{\"chunk_size\": 100, \"key_column\": \"id\", \"retry_delay\": 0}", &p), MW_STATUS_OK);
    state *s = calloc(1, sizeof *s);
    mw_chunk_callbacks cb = {.on_batch = on_batch, .on_progress = on_progress, .user = s};
    char *stats = NULL;
    CHECK_STATUS(mw_chunk_process_query(p, GEN, NULL, &cb, &stats), MW_STATUS_OK);
    CHECK(all_once(s));
    CHECK(s->sum == (long)ROWS * (ROWS + 1) / 2);
    CHECK(s->batches == 10);
    CHECK(s->progress_calls == 10);
    CHECK(s->last_processed == ROWS);
    CHECK(stats && strstr(stats, "\"processed\":1000") && strstr(stats, "\"key_column\":\"id\""));
    mw_string_free(stats);

    /* batch_size and the row callback with every accessor */
    memset(s, 0, sizeof *s);
    mw_chunk_callbacks rows = {.on_row = on_row, .user = s};
    CHECK_STATUS(mw_chunk_process(p, GEN, &rows, NULL), MW_STATUS_OK);
    CHECK(all_once(s));
    memset(s, 0, sizeof *s);
    CHECK_STATUS(mw_chunk_process_query(p, GEN, "{\"batch_size\": 250}", &cb, NULL), MW_STATUS_OK);
    CHECK(s->batches == 4 && all_once(s));

    /* a chunk failing twice is retried (retry_attempts 3 by default) */
    memset(s, 0, sizeof *s);
    s->fail_chunk = 3;
    s->fail_times = 2;
    CHECK_STATUS(mw_chunk_process_query(p, GEN, NULL, &cb, &stats), MW_STATUS_OK);
    CHECK(all_once(s));
    CHECK(stats && strstr(stats, "\"retries\":2"));
    mw_string_free(stats);

    /* failing for good: the error callback is asked; 1 skips the chunk */
    memset(s, 0, sizeof *s);
    s->fail_chunk = 3;
    s->fail_times = 100;
    s->error_answer = 1;
    cb.on_error = on_error;
    CHECK_STATUS(mw_chunk_process_query(p, GEN, NULL, &cb, &stats), MW_STATUS_OK);
    CHECK(s->errors_seen == 1);
    CHECK(stats && strstr(stats, "\"failed_chunks\":1") && strstr(stats, "\"processed\":900"));
    mw_string_free(stats);
    /* 0 stops the run with the chunk's error */
    memset(s, 0, sizeof *s);
    s->fail_chunk = 3;
    s->fail_times = 100;
    s->error_answer = 0;
    CHECK_STATUS(mw_chunk_process_query(p, GEN, NULL, &cb, NULL), MW_STATUS_CALLBACK);
    ERR_HAS("batch callback failed with status 9");
    free(s);
    mw_chunk_free(p);
}

/* ---- a host-run connection: the "database" is an array served by this callback ---- */

static int32_t host_query(void *user, const char *sql, const char *params, const char *key, bool meta,
                          mw_host_result *result) {
    int *calls = user;
    (*calls)++;
    if (strstr(sql, "LIMIT 0")) /* the column probe */
        return mw_host_result_set_json(result, "{\"columns\":[\"id\",\"v\"],\"rows\":[]}") == MW_STATUS_OK ? 0 : 1;
    if (strstr(sql, "COUNT(*)"))
        return mw_host_result_set_json(result, "{\"columns\":[\"n\"],\"rows\":[[95]]}") == MW_STATUS_OK ? 0 : 1;
    if (meta || !key || strcmp(key, "id") != 0) return 2;
    long after = 0, limit = 0;
    if (params[1] != ']') after = strtol(params + 1, NULL, 10);
    const char *l = strstr(sql, "LIMIT ");
    if (!l) return 3;
    limit = strtol(l + 6, NULL, 10);
    long first = after + 1, last = after + limit > 95 ? 95 : after + limit;
    if (first > 95)
        return mw_host_result_set_host_rows(result, "[\"id\",\"v\"]", 0, NULL, NULL, 0) == MW_STATUS_OK ? 0 : 1;
    char fk[32], lk[32];
    snprintf(fk, sizeof fk, "%ld", first);
    snprintf(lk, sizeof lk, "%ld", last);
    return mw_host_result_set_host_rows(result, "[\"id\",\"v\"]", (size_t)(last - first + 1), fk, lk, 64) ==
                   MW_STATUS_OK
               ? 0
               : 1;
}

typedef struct {
    int batches;
    long rows;
} host_state;

static int32_t host_batch(void *user, const mw_batch *b) {
    host_state *h = user;
    h->batches++;
    h->rows += (long)mw_batch_row_count(b);
    int64_t x;
    /* the rows stay with the host: cells are not readable here */
    if (!mw_batch_is_host_rows(b) || mw_batch_int(b, 0, 0, &x) == MW_STATUS_OK) return 1;
    char *info = NULL;
    if (mw_batch_info(b, &info) != MW_STATUS_OK) return 2;
    int ok = strstr(info, "\"host_rows\":true") != NULL;
    mw_string_free(info);
    return ok ? 0 : 3;
}

static void test_host_connection(void) {
    int calls = 0;
    mw_chunk *p = NULL;
    CHECK_STATUS(mw_chunk_new_host("sqlite", "qmark", host_query, &calls, "{\"chunk_size\": 10, \"parallel_chunks\": 4, \"key_column\": \"id\"}", &p),
                 MW_STATUS_OK);
    host_state h = {0};
    mw_chunk_callbacks cb = {.on_batch = host_batch, .user = &h};
    char *stats = NULL;
    CHECK_STATUS(mw_chunk_process_query(p, "SELECT id, v FROM items", NULL, &cb, &stats), MW_STATUS_OK);
    CHECK(h.batches == 10 && h.rows == 95);
    CHECK(stats && strstr(stats, "\"total\":95") && strstr(stats, "used 1"));
    mw_string_free(stats);
    mw_chunk_free(p);

    CHECK_STATUS(mw_chunk_new_host("oracle", "qmark", host_query, &calls, NULL, &p), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("unknown SQL dialect 'oracle'");
    CHECK_STATUS(mw_chunk_new_host("sqlite", "qmark", NULL, &calls, NULL, &p), MW_STATUS_NULL_ARGUMENT);
}

static void test_bad_input(const char *url) {
    mw_chunk *p = NULL;
    CHECK_STATUS(mw_chunk_open("postgres://u:secret@host:99999/db", NULL, &p), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("port '99999'");
    CHECK(strstr(mw_last_error_message(), "secret") == NULL);
    CHECK_STATUS(mw_chunk_open("mysql://root@127.0.0.1:1/test", "{\"connect_timeout\": 2}", &p), MW_STATUS_DATABASE);
    ERR_HAS("could not connect to mysql://root@127.0.0.1:1/test");
    CHECK_STATUS(mw_chunk_open(url, "{\"chunk_size\": 0}", &p), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("'chunk_size'");
    CHECK_STATUS(mw_chunk_open(url, "{\"chunk_sise\": 10}", &p), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("did you mean 'chunk_size'");
    CHECK_STATUS(mw_chunk_open(NULL, NULL, &p), MW_STATUS_NULL_ARGUMENT);

    CHECK_STATUS(mw_chunk_open(url, NULL, &p), MW_STATUS_OK);
    state *s = calloc(1, sizeof *s);
    mw_chunk_callbacks cb = {.on_batch = on_batch, .user = s};
    CHECK_STATUS(mw_chunk_process_query(p, "SELECT * FROM nowhere WHERE", NULL, &cb, NULL), MW_STATUS_DATABASE);
    ERR_HAS("the query failed");
    CHECK_STATUS(mw_chunk_process_query(p, "DELETE FROM t", NULL, &cb, NULL), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("must be a SELECT");
    CHECK_STATUS(mw_chunk_process_query(p, "SELECT 1 AS x", NULL, &cb, NULL), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("key_column");
    CHECK_STATUS(mw_chunk_process_query(p, GEN, "{\"batch_size\": 0}", &cb, NULL), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("'batch_size'");
    mw_chunk_callbacks none = {0};
    CHECK_STATUS(mw_chunk_process_query(p, GEN, NULL, &none, NULL), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("on_batch");
    free(s);
    mw_chunk_free(p);
    CHECK_STATUS(mw_chunk_stats(p, &(char *){NULL}), MW_STATUS_INVALID_ARGUMENT);
    mw_chunk_free(NULL);
}

/* A descriptor of the program's own on the file stands for a second SQLite library (the
 * system's libsqlite3, say): memwarden's bundled SQLite would not see its locks. */
static void test_file_held_open_elsewhere(const char *url, const char *path) {
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    mw_chunk *p = NULL;
    CHECK_STATUS(mw_chunk_open(url, NULL, &p), MW_STATUS_INVALID_ARGUMENT);
    CHECK(p == NULL);
    ERR_HAS("two SQLite libraries in one process");
    ERR_HAS("allow_shared_sqlite_file");
    CHECK_STATUS(mw_chunk_open(url, "{\"allow_shared_sqlite_file\": true}", &p), MW_STATUS_OK);
    mw_chunk_free(p);
    close(fd);
    p = NULL;
    CHECK_STATUS(mw_chunk_open(url, NULL, &p), MW_STATUS_OK);
    mw_chunk_free(p);
}

/* ---- the same-transaction mode (checkpoint_table) ---------------------------------------- */

typedef struct {
    int stop_at;          /* fail hard (after writing) on the chunk starting at this id */
    int64_t first_id;     /* first id handed to the callback in this run */
    long out_rows_at_start;
    int calls;
    int bad_checks;       /* bad-input calls inside the callback that did not fail as they should */
} tx_state;

static int32_t on_batch_tx(void *user, const mw_batch *b, mw_tx *tx) {
    tx_state *s = user;
    size_t rows = mw_batch_row_count(b);
    int64_t first = 0;
    mw_batch_int(b, 0, 0, &first);
    if (s->calls++ == 0) {
        s->first_id = first;
        if (mw_chunk_tx_execute(tx, "CREATE TABLE IF NOT EXISTS tx_out (id INTEGER NOT NULL, v INTEGER NOT NULL)",
                                NULL) != MW_STATUS_OK)
            return 11;
        char *json = NULL;
        if (mw_chunk_tx_query(tx, "SELECT COUNT(*) AS n FROM tx_out", "[]", &json) != MW_STATUS_OK) return 12;
        const char *at = strstr(json, "\"n\":");
        s->out_rows_at_start = at ? strtol(at + 4, NULL, 10) : -1;
        mw_string_free(json);
        /* bad input inside the transaction: errors, not crashes */
        if (mw_chunk_tx_execute(tx, "INSERT INTO tx_out VALUES (?, ?)", "not json") != MW_STATUS_INVALID_ARGUMENT)
            s->bad_checks++;
        if (!strstr(mw_last_error_message(), "'params_json' is not JSON")) s->bad_checks++;
        if (mw_chunk_tx_execute(tx, "INSERT INTO tx_out VALUES (?, ?)", "{\"a\": 1}") != MW_STATUS_INVALID_ARGUMENT)
            s->bad_checks++;
        if (mw_chunk_tx_execute(tx, "INSERT INTO tx_out VALUES (?, ?)", "[[1], 2]") != MW_STATUS_INVALID_ARGUMENT)
            s->bad_checks++;
        if (mw_chunk_tx_execute(tx, NULL, NULL) != MW_STATUS_NULL_ARGUMENT) s->bad_checks++;
        if (mw_chunk_tx_query(tx, "SELECT 1", NULL, NULL) != MW_STATUS_NULL_ARGUMENT) s->bad_checks++;
    }
    for (size_t r = 0; r < rows; r++) {
        int64_t id = 0;
        char params[64];
        if (mw_batch_int(b, r, 0, &id) != MW_STATUS_OK) return 13;
        snprintf(params, sizeof params, "[%lld, %lld]", (long long)id, (long long)id * 2);
        if (mw_chunk_tx_execute(tx, "INSERT INTO tx_out (id, v) VALUES (?, ?)", params) != MW_STATUS_OK) return 14;
    }
    return first == s->stop_at ? 7 : 0;
}

static int32_t count_out(void *user, const mw_batch *b) {
    state *s = user;
    for (size_t r = 0; r < mw_batch_row_count(b); r++) {
        int64_t id = 0, n = 0, bad = 0;
        mw_batch_int(b, r, 0, &id);
        mw_batch_int(b, r, 1, &n);
        mw_batch_int(b, r, 2, &bad);
        if (id >= 1 && id <= ROWS && bad == 0) s->seen[id] += (int)n;
    }
    return 0;
}

static void test_same_transaction(const char *url) {
    const char *cfg = "{\"chunk_size\": 100, \"key_column\": \"id\", \"checkpoint_table\": \"mw_ck\", "
                      "\"retry_attempts\": 0, \"retry_delay\": 0}";
    mw_chunk *p = NULL;
    CHECK_STATUS(mw_chunk_open(url, cfg, &p), MW_STATUS_OK);
    tx_state t = {.stop_at = 501};
    mw_chunk_callbacks cb = {.on_batch_tx = on_batch_tx, .user = &t};
    /* chunk 6 writes its rows, then fails for good: rolled back, the run stops */
    CHECK_STATUS(mw_chunk_process_query(p, GEN, NULL, &cb, NULL), MW_STATUS_CALLBACK);
    ERR_HAS("batch callback failed with status 7");
    CHECK(t.first_id == 1 && t.out_rows_at_start == 0 && t.bad_checks == 0);
    mw_chunk_free(p);

    /* the rerun resumes after the last committed chunk (500), where 500 rows are written */
    CHECK_STATUS(mw_chunk_open(url, cfg, &p), MW_STATUS_OK);
    tx_state t2 = {.stop_at = -1};
    cb.user = &t2;
    char *stats = NULL;
    CHECK_STATUS(mw_chunk_process_query(p, GEN, NULL, &cb, &stats), MW_STATUS_OK);
    CHECK(t2.first_id == 501 && t2.out_rows_at_start == 500 && t2.bad_checks == 0);
    CHECK(stats && strstr(stats, "\"resumed\":true") && strstr(stats, "\"processed\":1000"));
    mw_string_free(stats);
    mw_chunk_free(p);

    /* every id written exactly once, each with v = 2 * id */
    CHECK_STATUS(mw_chunk_open(url, "{\"key_column\": \"id\"}", &p), MW_STATUS_OK);
    state *s = calloc(1, sizeof *s);
    mw_chunk_callbacks counter = {.on_batch = count_out, .user = s};
    CHECK_STATUS(mw_chunk_process_query(
                     p, "SELECT id, COUNT(*) AS n, SUM(v <> 2 * id) AS bad FROM tx_out GROUP BY id", NULL, &counter, NULL),
                 MW_STATUS_OK);
    CHECK(all_once(s));
    /* the finished run's checkpoint row is gone */
    memset(s, 0, sizeof *s);
    CHECK_STATUS(mw_chunk_process_query(p, "SELECT 1 AS id, COUNT(*) AS n, 0 AS bad FROM mw_ck", NULL, &counter, NULL),
                 MW_STATUS_OK);
    CHECK(s->seen[1] == 0);
    free(s);

    /* on_batch_tx without checkpoint_table is not called; on_batch is then missing */
    CHECK_STATUS(mw_chunk_process_query(p, GEN, NULL, &cb, NULL), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("on_batch_tx is only called with checkpoint_table set");
    mw_chunk_free(p);

    /* bad config and handles */
    CHECK_STATUS(mw_chunk_open(url, "{\"checkpoint_table\": \"ck\", \"checkpoint\": \"/tmp/x\"}", &p),
                 MW_STATUS_INVALID_CONFIG);
    ERR_HAS("'checkpoint_table' and 'checkpoint' exclude each other");
    CHECK_STATUS(mw_chunk_open(url, "{\"checkpoint_table\": \"ck\", \"parallel_chunks\": 2}", &p), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("'parallel_chunks' must be 1");
    CHECK_STATUS(mw_chunk_open(url, "{\"checkpoint_table\": \"ck\", \"pagination\": \"offset\"}", &p),
                 MW_STATUS_INVALID_CONFIG);
    ERR_HAS("needs keyset pagination");
    CHECK_STATUS(mw_chunk_open(url, "{\"checkpoint_table\": \"ck; DROP TABLE x\"}", &p), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("invalid value for 'checkpoint_table'");
    CHECK_STATUS(mw_chunk_tx_execute(NULL, "SELECT 1", NULL), MW_STATUS_NULL_ARGUMENT);
    ERR_HAS("tx");
}

int main(void) {
    char path[] = "/tmp/mw-chunk-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 2;
    close(fd); /* memwarden refuses a SQLite file the program holds open itself */
    char url[128];
    snprintf(url, sizeof url, "sqlite://%s", path);
    test_file_held_open_elsewhere(url, path);
    test_process_query(url);
    test_host_connection();
    test_bad_input(url);
    test_same_transaction(url);
    remove(path);
    return CHECK_SUMMARY();
}
