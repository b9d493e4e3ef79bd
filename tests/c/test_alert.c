#define _DEFAULT_SOURCE
/* The MemoryAlertingService through the C ABI: construction errors, send to a webhook on a port
 * with nothing listening (the delivery fails; history keeps the failed attempt with a redacted
 * error; poll returns the failed event), the event callback on the library thread, flush,
 * history filters, a manager handle as the source. Loopback HTTP/SMTP receivers are covered by
 * the core's Rust tests. Built by tests/c/run.sh, run under valgrind. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "memwarden.h"

#include "check.h"

/* A loopback port with nothing listening: bind to port 0, read the port, close. */
static int dead_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static void bad_config(const char *json, const char *want) {
    mw_alert *a = NULL;
    CHECK_STATUS(mw_alert_new(json, NULL, &a), MW_STATUS_INVALID_CONFIG);
    ERR_HAS(want);
    CHECK(a == NULL);
}

typedef struct {
    pthread_mutex_t lock;
    int events, failed;
    pthread_t caller;
    int on_other_thread;
} seen_t;

static void on_event(void *user, const char *json) {
    seen_t *s = user;
    pthread_mutex_lock(&s->lock);
    s->events++;
    if (strstr(json, "\"delivery_failed\"")) s->failed++;
    if (!pthread_equal(pthread_self(), s->caller)) s->on_other_thread++;
    pthread_mutex_unlock(&s->lock);
}

int main(void) {
    bad_config("{\"channels\": {\"pagerduty\": {}}}", "unknown channel 'pagerduty'");
    bad_config("{\"channels\": {\"webhook\": {\"url\": \"gopher://x/SECRET\"}}}", "bad URL");
    CHECK(strstr(mw_last_error_message(), "SECRET") == NULL);
    bad_config("{\"channels\": {\"email\": {\"recipients\": [\"nobody\"]}}}", "bad e-mail address 'nobody'");
    bad_config("{\"channels\": {\"email\": {\"recipients\": [\"a@example.com\"], \"threshold\": \"high\"}}}",
               "unknown threshold name 'high'");
    bad_config("{\"escalation\": {\"enabled\": true, \"levels\": {\"1\": {\"slack\": true}}}}", "channel 'slack'");
    bad_config("{\"escalation\": {\"escalation_intervals\": [-5]}}", "negative");
    bad_config("{\"queue_capasity\": 3}", "did you mean 'queue_capacity'");
    bad_config("{", "malformed JSON");
    CHECK_STATUS(mw_alert_new(NULL, NULL, NULL), MW_STATUS_NULL_ARGUMENT);

    /* A manager with host readings as the source. */
    mw_manager *m = NULL;
    CHECK_STATUS(mw_manager_new("{\"source\": \"host\", \"memory_limit\": 1000}", &m), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_update_host_reading(m, 800, 800, -1), MW_STATUS_OK);

    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "{\"channels\": {\"webhook\": {\"url\": \"http://127.0.0.1:%d/hooks/SECRET-TOKEN\", \"threshold\": "
             "\"warning\", \"timeout\": 2, \"retry_attempts\": 1}}}",
             dead_port());
    mw_alert *a = NULL;
    CHECK_STATUS(mw_alert_new(cfg, m, &a), MW_STATUS_OK);
    mw_manager_free(m); /* the service keeps it alive */

    seen_t seen = {PTHREAD_MUTEX_INITIALIZER, 0, 0, pthread_self(), 0};
    CHECK_STATUS(mw_alert_set_event_callback(a, on_event, &seen), MW_STATUS_OK);

    mw_state level = MW_STATE_NORMAL;
    CHECK_STATUS(mw_alert_check(a, &level), MW_STATUS_OK);
    CHECK(level == MW_STATE_WARNING);
    int64_t id = 0;
    CHECK_STATUS(mw_alert_send(a, "queue backlog", MW_STATE_CRITICAL, &id), MW_STATUS_OK);
    CHECK(id > 0);
    CHECK_STATUS(mw_alert_send(a, "calm", MW_STATE_NORMAL, NULL), MW_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(mw_alert_send(a, NULL, MW_STATE_WARNING, NULL), MW_STATUS_NULL_ARGUMENT);

    bool drained = false;
    CHECK_STATUS(mw_alert_flush(a, 10.0, &drained), MW_STATUS_OK);
    CHECK(drained);

    char *json = NULL;
    CHECK_STATUS(mw_alert_history(a, NULL, &json), MW_STATUS_OK);
    CHECK(json && strstr(json, "\"outcome\":\"failed\"") != NULL);
    CHECK(json && strstr(json, "SECRET-TOKEN") == NULL);
    CHECK(json && strstr(json, "queue backlog") != NULL);
    mw_string_free(json);

    json = NULL;
    CHECK_STATUS(mw_alert_history(a, "{\"level\": \"critical\", \"channel\": \"webhook\", \"limit\": 5}", &json),
                 MW_STATUS_OK);
    CHECK(json && strstr(json, "queue backlog") != NULL && strstr(json, "reached the warning") == NULL);
    mw_string_free(json);
    json = NULL;
    CHECK_STATUS(mw_alert_history(a, "{\"kind\": \"resolved\"}", &json), MW_STATUS_OK);
    CHECK(json && strcmp(json, "[]") == 0);
    mw_string_free(json);
    CHECK_STATUS(mw_alert_history(a, "{\"colour\": 1}", &json), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("unknown key 'colour'");

    char *events = NULL;
    CHECK_STATUS(mw_alert_poll(a, &events), MW_STATUS_OK);
    CHECK(events && strstr(events, "\"delivery_failed\"") != NULL);
    CHECK(events && strstr(events, "\"alert_raised\"") != NULL);
    CHECK(events && strstr(events, "SECRET") == NULL);
    mw_string_free(events);
    CHECK_STATUS(mw_alert_poll(a, &events), MW_STATUS_OK);
    CHECK(events && strcmp(events, "[]") == 0);
    mw_string_free(events);

    pthread_mutex_lock(&seen.lock);
    CHECK(seen.failed == 2);
    CHECK(seen.events == 4);
    CHECK(seen.on_other_thread == seen.events);
    pthread_mutex_unlock(&seen.lock);
    CHECK_STATUS(mw_alert_set_event_callback(a, NULL, NULL), MW_STATUS_OK);

    mw_alert_free(a);
    CHECK_STATUS(mw_alert_check(a, NULL), MW_STATUS_INVALID_ARGUMENT);
    mw_alert_free(NULL);

    /* Defaults: no channels, the process as the source. */
    CHECK_STATUS(mw_alert_new(NULL, NULL, &a), MW_STATUS_OK);
    CHECK_STATUS(mw_alert_check(a, &level), MW_STATUS_OK);
    CHECK_STATUS(mw_alert_flush(a, -1, NULL), MW_STATUS_OK);
    mw_alert_free(a);
    return CHECK_SUMMARY();
}
