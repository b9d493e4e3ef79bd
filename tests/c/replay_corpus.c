#define _DEFAULT_SOURCE
/* Replays the `ffi_config` fuzz corpus (fuzz/corpus/ffi_config/ and fuzz/regressions/ffi_config/)
 * through the real mw_*_new functions, as the fuzz target does (fuzz/src/ffi_target.rs: the
 * same table, the same skip rule). Run by tests/c/run.sh under valgrind: every input must give
 * a status (never MW_STATUS_PANIC), a failure must leave a message, a success a handle that
 * frees cleanly.
 *
 *   replay_corpus DIR...        prints how many inputs were replayed; exit 1 on a failure */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "memwarden.h"

static int32_t create(void *u, void **out) { (void)u; static char obj; *out = &obj; return 0; }
static int32_t source(void *u, size_t max, mw_item *items, size_t *n) { (void)u; (void)max; (void)items; *n = 0; return 0; }
static int32_t load(void *u, uint64_t off, const mw_key *after, size_t limit, mw_item *items, size_t *n, mw_key *last) {
    (void)u; (void)off; (void)after; (void)limit; (void)items; (void)last; *n = 0; return 0;
}
static int32_t query(void *u, const char *sql, const char *params, const char *key, bool meta, mw_host_result *r) {
    (void)u; (void)sql; (void)params; (void)key; (void)meta; (void)r; return 1;
}

static const char *const NAMES[] = {"mw_manager_new", "mw_pool_new", "mw_container_new", "mw_tracker_new",
    "mw_request_new", "mw_chunk_new_host", "mw_streaming_new", "mw_lazy_new", "mw_filtered_new", "mw_alert_new",
    "mw_size_parse"};
enum { N_FUNCTIONS = sizeof NAMES / sizeof NAMES[0] };

/* 0 = ok, 1 = a failed check. */
static int replay(const unsigned char *data, size_t len, const char *file) {
    if (len == 0) return 0;
    unsigned which = data[0] % N_FUNCTIONS;
    size_t n = 0;
    while (1 + n < len && data[1 + n] != 0) n++;
    char *cfg = malloc(n + 1);
    memcpy(cfg, data + 1, n);
    cfg[n] = 0;
    /* Valid requests for real work are skipped, as in the fuzz target. */
    if (strstr(cfg, "min_size") || strstr(cfg, "history_path")) { free(cfg); return 0; }
    void *h = NULL;
    mw_status s;
    mw_pool_callbacks cb = {0};
    cb.create = create;
    int64_t bytes = 0;
    switch (which) {
    case 0: s = mw_manager_new(cfg, (mw_manager **)&h); if (!s) mw_manager_free(h); break;
    case 1: s = mw_pool_new(cfg, &cb, (mw_pool **)&h); if (!s) mw_pool_free(h); break;
    case 2: s = mw_container_new(cfg, (mw_container **)&h); if (!s) mw_container_free(h); break;
    case 3: s = mw_tracker_new(cfg, (mw_tracker **)&h); if (!s) mw_tracker_free(h); break;
    case 4: s = mw_request_new(cfg, (mw_request **)&h); if (!s) mw_request_free(h); break;
    case 5: s = mw_chunk_new_host("sqlite", "qmark", query, NULL, cfg, (mw_chunk **)&h); if (!s) mw_chunk_free(h); break;
    case 6: s = mw_streaming_new(cfg, source, NULL, (mw_streaming **)&h); if (!s) mw_streaming_free(h); break;
    case 7: s = mw_lazy_new(cfg, load, NULL, (mw_lazy **)&h); if (!s) mw_lazy_free(h); break;
    case 8: s = mw_filtered_new(cfg, source, NULL, NULL, NULL, 0, (mw_filtered **)&h); if (!s) mw_filtered_free(h); break;
    case 9: s = mw_alert_new(cfg, NULL, (mw_alert **)&h); if (!s) mw_alert_free(h); break;
    default: s = mw_size_parse(cfg, &bytes); h = &bytes; break;
    }
    int bad = 0;
    if (s == MW_STATUS_PANIC) {
        fprintf(stderr, "%s: %s panicked: %s\n", file, NAMES[which], mw_last_error_message());
        bad = 1;
    } else if (s != MW_STATUS_OK && mw_last_error_message()[0] == 0) {
        fprintf(stderr, "%s: %s returned %d without a message\n", file, NAMES[which], s);
        bad = 1;
    } else if (s == MW_STATUS_OK && h == NULL) {
        fprintf(stderr, "%s: %s returned OK without a handle\n", file, NAMES[which]);
        bad = 1;
    }
    free(cfg);
    return bad;
}

int main(int argc, char **argv) {
    int count = 0, failed = 0;
    for (int a = 1; a < argc; a++) {
        DIR *d = opendir(argv[a]);
        if (!d) continue; /* fuzz/regressions/ffi_config exists only once there is a finding */
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[a], e->d_name);
            FILE *f = fopen(path, "rb");
            if (!f) continue;
            unsigned char buf[65536];
            size_t len = fread(buf, 1, sizeof buf, f);
            fclose(f);
            failed += replay(buf, len, path);
            count++;
        }
        closedir(d);
    }
    printf("ffi_config: %d inputs replayed, %d failed\n", count, failed);
    if (count == 0) {
        fprintf(stderr, "no corpus found\n");
        return 1;
    }
    return failed ? 1 : 0;
}
