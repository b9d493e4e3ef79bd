#define _DEFAULT_SOURCE
/* mw_monitor_* and mw_analyze_file through the C ABI: background sampling, the series, analysis,
 * export and read-back, and the error paths (bad pid, bad config, unreadable, truncated and
 * foreign files). Built by tests/c/run.sh and run under valgrind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "memwarden.h"

#include "check.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long num_after(const char *json, const char *key) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *at = json ? strstr(json, pat) : NULL;
    return at ? strtol(at + strlen(pat), NULL, 10) : -1;
}

static long samples_in(mw_monitor *m) {
    char *j = NULL;
    if (mw_monitor_status(m, &j) != MW_STATUS_OK) return -1;
    long n = num_after(j, "samples");
    mw_string_free(j);
    return n;
}

static void write_file(const char *path, const char *text, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fwrite(text, 1, len, f);
    fclose(f);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

int main(void) {
    char dir[] = "/tmp/mw-c-monitor-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char live[256], copy[256], bad[256], cfg[512];
    snprintf(live, sizeof live, "%s/live.jsonl", dir);
    snprintf(copy, sizeof copy, "%s/copy.jsonl", dir);
    snprintf(bad, sizeof bad, "%s/bad.jsonl", dir);

    /* this process, every 20 ms, appended to an export file while sampling */
    snprintf(cfg, sizeof cfg, "{\"pid\": %d, \"interval\": 0.02, \"threshold\": 75, \"export\": \"%s\"}", (int)getpid(),
             live);
    mw_monitor *m = NULL;
    CHECK_STATUS(mw_monitor_new(cfg, &m), MW_STATUS_OK);
    int running = -1;
    CHECK_STATUS(mw_monitor_running(m, &running), MW_STATUS_OK);
    CHECK(running == 0);
    CHECK_STATUS(mw_monitor_start(m), MW_STATUS_OK);
    CHECK_STATUS(mw_monitor_start(m), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("already running");
    double deadline = now_s() + 10.0;
    while (samples_in(m) < 5 && now_s() < deadline) usleep(5000);
    CHECK(samples_in(m) >= 5);
    /* while it runs, the file already holds what was sampled */
    char *an = NULL;
    CHECK_STATUS(mw_analyze_file(live, &an), MW_STATUS_OK);
    CHECK(an && num_after(an, "samples") >= 1);
    mw_string_free(an);
    CHECK_STATUS(mw_monitor_stop(m), MW_STATUS_OK);
    CHECK_STATUS(mw_monitor_running(m, &running), MW_STATUS_OK);
    CHECK(running == 0);

    char *j = NULL;
    CHECK_STATUS(mw_monitor_sample_now(m, &j), MW_STATUS_OK);
    CHECK(j && num_after(j, "current_bytes") > 0 && num_after(j, "limit_bytes") > 0);
    mw_string_free(j);
    long n = samples_in(m);
    CHECK_STATUS(mw_monitor_samples(m, &j), MW_STATUS_OK);
    CHECK(j && j[0] == '[' && strstr(j, "\"peak_bytes\":"));
    mw_string_free(j);
    CHECK_STATUS(mw_monitor_status(m, &j), MW_STATUS_OK);
    CHECK(j && strstr(j, "\"running\":false") && strstr(j, "\"threshold\":75.0") && strstr(j, "\"ended\":null"));
    mw_string_free(j);

    CHECK_STATUS(mw_monitor_analyze(m, &an), MW_STATUS_OK);
    CHECK(an && num_after(an, "samples") == n && strstr(an, "\"efficiency_percent\":") && strstr(an, "\"spikes\":[")
          && strstr(an, "\"slope_mb_per_min\":") && strstr(an, "\"sentence\":"));
    /* the live file, the series exported at once, and the series itself agree */
    char *from_live = NULL, *from_copy = NULL;
    CHECK_STATUS(mw_monitor_export(m, copy), MW_STATUS_OK);
    CHECK_STATUS(mw_analyze_file(copy, &from_copy), MW_STATUS_OK);
    CHECK_STATUS(mw_analyze_file(live, &from_live), MW_STATUS_OK);
    CHECK(an && from_copy && from_live && strcmp(an, from_copy) == 0 && strcmp(an, from_live) == 0);
    mw_string_free(an);
    mw_string_free(from_copy);
    mw_string_free(from_live);

    /* a file cut in the middle of its last line: every whole sample is kept */
    size_t len = 0;
    char *whole = read_file(copy, &len);
    CHECK(whole && len > 10);
    if (whole) {
        write_file(bad, whole, len - 5);
        CHECK_STATUS(mw_analyze_file(bad, &an), MW_STATUS_OK);
        CHECK(an && num_after(an, "samples") == n - 1);
        mw_string_free(an);
        /* cut inside the header line: truncated */
        write_file(bad, whole, 20);
        CHECK_STATUS(mw_analyze_file(bad, &an), MW_STATUS_INVALID_ARGUMENT);
        ERR_HAS("is truncated");
        ERR_HAS("bad.jsonl");
        free(whole);
    }
    write_file(bad, "", 0);
    CHECK_STATUS(mw_analyze_file(bad, &an), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("is empty");
    write_file(bad, "{\"name\": \"something else\"}\n", 27);
    CHECK_STATUS(mw_analyze_file(bad, &an), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("not a memwarden monitor export");
    write_file(bad, "\x89PNG\r\n", 6);
    CHECK_STATUS(mw_analyze_file(bad, &an), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("not a memwarden monitor export");
    CHECK_STATUS(mw_analyze_file("/nonexistent-dir/run.jsonl", &an), MW_STATUS_IO);
    ERR_HAS("cannot read '/nonexistent-dir/run.jsonl'");
    CHECK_STATUS(mw_analyze_file(NULL, &an), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_analyze_file(copy, NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_monitor_export(m, "/nonexistent-dir/out.jsonl"), MW_STATUS_IO);
    ERR_HAS("cannot write export file");

    mw_monitor_free(m);
    CHECK_STATUS(mw_monitor_samples(m, &j), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("not a live");
    mw_monitor_free(NULL);

    /* bad configs and targets */
    CHECK_STATUS(mw_monitor_new("{\"pid\": 999999999}", &m), MW_STATUS_NOT_FOUND);
    ERR_HAS("no process with pid 999999999");
    CHECK_STATUS(mw_monitor_new("{\"interval\": 0}", &m), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("'interval'");
    CHECK_STATUS(mw_monitor_new("{\"intervall\": 1}", &m), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("did you mean 'interval'");
    CHECK_STATUS(mw_monitor_new("{not json", &m), MW_STATUS_INVALID_CONFIG);
    CHECK_STATUS(mw_monitor_new("{\"export\": \"/nonexistent-dir/x.jsonl\"}", &m), MW_STATUS_IO);
    CHECK_STATUS(mw_monitor_new(NULL, NULL), MW_STATUS_NULL_ARGUMENT);

    /* the whole system by default; freeing a running monitor stops its thread */
    CHECK_STATUS(mw_monitor_new(NULL, &m), MW_STATUS_OK);
    CHECK_STATUS(mw_monitor_status(m, &j), MW_STATUS_OK);
    CHECK(j && strstr(j, "\"target\":\"system\""));
    mw_string_free(j);
    CHECK_STATUS(mw_monitor_start(m), MW_STATUS_OK);
    mw_monitor_free(m);

    unlink(live);
    unlink(copy);
    unlink(bad);
    rmdir(dir);
    return CHECK_SUMMARY();
}
