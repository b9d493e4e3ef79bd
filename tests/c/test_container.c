/* The LazyContainer through the C ABI: every function, every error path.
 * Built by tests/c/run.sh against libmemwarden.so and libmemwarden.a, and run under valgrind. */
#define _DEFAULT_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include "check.h"

/* A service instance: its name and a serial number. */
typedef struct { char name[32]; int serial; void *dep; } svc;

typedef struct {
    const char *name;
    const char *dep;      /* resolved through the container, or NULL */
    int fail;             /* non-zero: the factory returns this */
    int null_out;         /* write a NULL instance */
    int sleep_ms;
    int made;
    char *log;            /* destroy order is appended here */
} spec;

static int serial = 0;
static int32_t make(void *ud, mw_container *c, void **out) {
    spec *s = ud;
    if (s->sleep_ms) usleep(s->sleep_ms * 1000);
    if (s->fail) return s->fail;
    if (s->null_out) { *out = NULL; return 0; }
    void *dep = NULL;
    if (s->dep) {
        mw_status st = mw_container_get(c, s->dep, &dep);
        if (st != MW_STATUS_OK) return 100 + (int)st;
    }
    svc *v = calloc(1, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", s->name);
    v->serial = ++serial;
    v->dep = dep;
    __atomic_add_fetch(&s->made, 1, __ATOMIC_SEQ_CST);
    *out = v;
    return 0;
}
static void destroy(void *ud, void *instance) {
    spec *s = ud;
    if (s->log) {
        strcat(s->log, ((svc *)instance)->name);
        strcat(s->log, ",");
    }
    free(instance);
}
static int freed = 0;
static void free_spec(void *ud) { (void)ud; freed++; }

static mw_container *fresh(const char *json) {
    mw_container *c = NULL;
    CHECK_STATUS(mw_container_new(json, &c), MW_STATUS_OK);
    return c;
}

static void test_seed_usage_lifetimes_and_stats(void) {
    char log[256] = "";
    spec db = {.name = "database", .log = log};
    spec users = {.name = "userService", .dep = "database", .log = log};
    spec tr = {.name = "request"};
    mw_container *c = fresh(NULL);
    CHECK_STATUS(mw_container_register(c, "database", MW_LIFETIME_LAZY, make, destroy, &db, free_spec, false), MW_STATUS_OK);
    CHECK_STATUS(mw_container_register(c, "userService", MW_LIFETIME_SINGLETON, make, destroy, &users, free_spec, false), MW_STATUS_OK);
    CHECK_STATUS(mw_container_register(c, "request", MW_LIFETIME_FACTORY, make, NULL, &tr, NULL, false), MW_STATUS_OK);
    CHECK(db.made == 0); /* nothing created at registration */
    void *u1 = NULL, *u2 = NULL, *d = NULL;
    CHECK_STATUS(mw_container_get(c, "userService", &u1), MW_STATUS_OK);
    CHECK(db.made == 1 && users.made == 1);
    CHECK_STATUS(mw_container_get(c, "userService", &u2), MW_STATUS_OK);
    CHECK(u1 == u2);
    CHECK_STATUS(mw_container_get(c, "database", &d), MW_STATUS_OK);
    CHECK(((svc *)u1)->dep == d);
    void *r1, *r2;
    CHECK_STATUS(mw_container_get(c, "request", &r1), MW_STATUS_OK);
    CHECK_STATUS(mw_container_get(c, "request", &r2), MW_STATUS_OK);
    CHECK(r1 != r2); /* transient: the caller owns each */
    free(r1);
    free(r2);
    bool has = false;
    CHECK_STATUS(mw_container_has(c, "database", &has), MW_STATUS_OK);
    CHECK(has);
    CHECK_STATUS(mw_container_has(c, "nothing", &has), MW_STATUS_OK);
    CHECK(!has);
    char *stats = NULL;
    CHECK_STATUS(mw_container_stats_json(c, &stats), MW_STATUS_OK);
    CHECK(stats && strstr(stats, "\"created\":4") && strstr(stats, "\"cached\":2") && strstr(stats, "\"memory_saved\""));
    mw_string_free(stats);
    CHECK_STATUS(mw_container_dispose(c), MW_STATUS_OK);
    CHECK(strcmp(log, "userService,database,") == 0); /* reverse creation order */
    CHECK_STATUS(mw_container_get(c, "database", &d), MW_STATUS_CLOSED);
    CHECK_STATUS(mw_container_dispose(c), MW_STATUS_OK);
    mw_container_free(c);
    CHECK(freed == 2);
}

static void test_aliases_tags_and_bad_input(void) {
    spec email = {.name = "emailService"}, sms = {.name = "smsService"}, logger = {.name = "logger"};
    mw_container *c = fresh("{\"auto_wire\": true, \"circular_detection\": true, \"cache_instances\": true, \"debug_mode\": true}");
    CHECK_STATUS(mw_container_register(c, "emailService", MW_LIFETIME_LAZY, make, destroy, &email, NULL, false), MW_STATUS_OK);
    CHECK_STATUS(mw_container_register(c, "smsService", MW_LIFETIME_LAZY, make, destroy, &sms, NULL, false), MW_STATUS_OK);
    CHECK_STATUS(mw_container_register(c, "logger", MW_LIFETIME_LAZY, make, destroy, &logger, NULL, false), MW_STATUS_OK);
    CHECK_STATUS(mw_container_alias(c, "log", "logger"), MW_STATUS_OK);
    void *a, *b;
    CHECK_STATUS(mw_container_get(c, "log", &a), MW_STATUS_OK);
    CHECK_STATUS(mw_container_get(c, "logger", &b), MW_STATUS_OK);
    CHECK(a == b);
    const char *tags[] = {"notification", "communication"};
    CHECK_STATUS(mw_container_tag(c, "emailService", tags, 2), MW_STATUS_OK);
    CHECK_STATUS(mw_container_tag(c, "smsService", tags, 1), MW_STATUS_OK);
    size_t n = 0;
    CHECK_STATUS(mw_container_get_by_tag(c, "notification", NULL, 0, &n), MW_STATUS_OK);
    CHECK(n == 2);
    void *found[2];
    CHECK_STATUS(mw_container_get_by_tag(c, "notification", found, 2, &n), MW_STATUS_OK);
    CHECK(strcmp(((svc *)found[0])->name, "emailService") == 0 && strcmp(((svc *)found[1])->name, "smsService") == 0);
    CHECK_STATUS(mw_container_get_by_tag(c, "notification", NULL, 2, &n), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_container_tag(c, "nothing", tags, 1), MW_STATUS_NOT_FOUND);
    /* Bad input: each an error naming the problem, the container unchanged. */
    CHECK_STATUS(mw_container_get(c, "loger", &a), MW_STATUS_NOT_FOUND);
    ERR_HAS("did you mean 'logger'");
    CHECK_STATUS(mw_container_alias(c, "ghost", "nowhere"), MW_STATUS_OK);
    CHECK_STATUS(mw_container_get(c, "ghost", &a), MW_STATUS_NOT_FOUND);
    ERR_HAS("alias 'ghost' points to 'nowhere'");
    CHECK_STATUS(mw_container_alias(c, "x", "y"), MW_STATUS_OK);
    CHECK_STATUS(mw_container_alias(c, "y", "x"), MW_STATUS_CYCLE);
    ERR_HAS("alias cycle: y -> x -> y");
    CHECK_STATUS(mw_container_register(c, "logger", MW_LIFETIME_LAZY, make, NULL, &logger, NULL, false), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("already registered");
    CHECK_STATUS(mw_container_register(c, "", MW_LIFETIME_LAZY, make, NULL, &logger, NULL, false), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("must not be empty");
    CHECK_STATUS(mw_container_register(c, "z", 9, make, NULL, &logger, NULL, false), MW_STATUS_INVALID_ARGUMENT);
    ERR_HAS("invalid lifetime 9");
    CHECK_STATUS(mw_container_register(c, "z", MW_LIFETIME_LAZY, NULL, NULL, NULL, NULL, false), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_container_get(c, NULL, &a), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_container_get(c, "logger", NULL), MW_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(mw_container_new("{\"cache_instance\": true}", &c), MW_STATUS_INVALID_CONFIG);
    ERR_HAS("did you mean 'cache_instances'");
    char *stats = NULL;
    CHECK_STATUS(mw_container_stats_json(c, &stats), MW_STATUS_OK);
    CHECK(stats && strstr(stats, "\"services\""));
    mw_string_free(stats);
    CHECK_STATUS(mw_container_dispose(c), MW_STATUS_OK);
    mw_container_free(c);
    CHECK_STATUS(mw_container_get(c, "logger", &a), MW_STATUS_INVALID_ARGUMENT); /* freed handle */
}

static void test_cycles_failures_and_scopes(void) {
    spec a = {.name = "a", .dep = "b"}, b = {.name = "b", .dep = "c"}, cc = {.name = "c", .dep = "a"};
    mw_container *c = fresh(NULL);
    CHECK_STATUS(mw_container_register(c, "a", MW_LIFETIME_LAZY, make, destroy, &a, NULL, false), MW_STATUS_OK);
    CHECK_STATUS(mw_container_register(c, "b", MW_LIFETIME_LAZY, make, destroy, &b, NULL, false), MW_STATUS_OK);
    CHECK_STATUS(mw_container_register(c, "c", MW_LIFETIME_LAZY, make, destroy, &cc, NULL, false), MW_STATUS_OK);
    void *v;
    /* The innermost get reports the cycle; each factory above it returns non-zero. The message
     * names each factory with its status and keeps the innermost cause. */
    CHECK_STATUS(mw_container_get(c, "a", &v), MW_STATUS_CALLBACK);
    ERR_HAS("failed to create service 'a'");
    ERR_HAS("factory of 'a' failed with status 110"); /* 100 + MW_STATUS_CALLBACK from get(b) */
    ERR_HAS("factory of 'b' failed with status 110");
    ERR_HAS("factory of 'c' failed with status 106"); /* 100 + MW_STATUS_CYCLE from get(a) */
    ERR_HAS("circular dependency: a -> b -> c -> a");
    /* Fixing c breaks the cycle: nothing stale was left behind. */
    spec c2 = {.name = "c"};
    CHECK_STATUS(mw_container_register(c, "c", MW_LIFETIME_LAZY, make, destroy, &c2, NULL, true), MW_STATUS_OK);
    CHECK_STATUS(mw_container_get(c, "a", &v), MW_STATUS_OK);
    /* Failing and NULL factories. */
    spec bad = {.name = "bad", .fail = 7}, nul = {.name = "nul", .null_out = 1};
    CHECK_STATUS(mw_container_register(c, "bad", MW_LIFETIME_SINGLETON, make, destroy, &bad, NULL, false), MW_STATUS_OK);
    CHECK_STATUS(mw_container_register(c, "nul", MW_LIFETIME_SINGLETON, make, destroy, &nul, NULL, false), MW_STATUS_OK);
    CHECK_STATUS(mw_container_get(c, "bad", &v), MW_STATUS_CALLBACK);
    ERR_HAS("failed to create service 'bad'");
    ERR_HAS("factory of 'bad' failed with status 7");
    /* A dependency's failure: the outer factory's status, then the inner cause. */
    spec needs_bad = {.name = "needsBad", .dep = "bad"};
    CHECK_STATUS(mw_container_register(c, "needsBad", MW_LIFETIME_LAZY, make, destroy, &needs_bad, NULL, false), MW_STATUS_OK);
    CHECK_STATUS(mw_container_get(c, "needsBad", &v), MW_STATUS_CALLBACK);
    CHECK(strcmp(mw_last_error_message(),
                 "failed to create service 'needsBad' (via needsBad): factory of 'needsBad' failed with status 110; "
                 "caused by: failed to create service 'bad' (via needsBad -> bad): factory of 'bad' failed with status 7") == 0);
    CHECK_STATUS(mw_container_get(c, "nul", &v), MW_STATUS_CALLBACK);
    ERR_HAS("NULL instance");
    /* Scopes: one instance per scope, torn down with it. */
    char log[128] = "";
    spec req = {.name = "req", .log = log};
    CHECK_STATUS(mw_container_register(c, "req", MW_LIFETIME_SCOPED, make, destroy, &req, NULL, false), MW_STATUS_OK);
    CHECK_STATUS(mw_container_get(c, "req", &v), MW_STATUS_INVALID_ARGUMENT);
    CHECK(strcmp(mw_last_error_message(), "service 'req' is scoped: resolve it through a scope") == 0);
    mw_scope *s1 = NULL, *s2 = NULL;
    CHECK_STATUS(mw_container_create_scope(c, &s1), MW_STATUS_OK);
    CHECK_STATUS(mw_container_create_scope(c, &s2), MW_STATUS_OK);
    void *x1, *x2, *y;
    CHECK_STATUS(mw_scope_get(s1, "req", &x1), MW_STATUS_OK);
    CHECK_STATUS(mw_scope_get(s1, "req", &x2), MW_STATUS_OK);
    CHECK_STATUS(mw_scope_get(s2, "req", &y), MW_STATUS_OK);
    CHECK(x1 == x2 && x1 != y);
    CHECK_STATUS(mw_scope_dispose(s1), MW_STATUS_OK);
    CHECK(strcmp(log, "req,") == 0);
    CHECK_STATUS(mw_scope_get(s1, "req", &x1), MW_STATUS_CLOSED);
    mw_scope_free(s1);
    mw_scope_free(s2); /* disposes s2 */
    CHECK(strcmp(log, "req,req,") == 0);
    /* Registered with a manager: a collection drops lazy instances when configured. */
    mw_container_dispose(c);
    mw_container_free(c);
    c = fresh("{\"release_lazy_on_cleanup\": true}");
    char log2[64] = "";
    spec l = {.name = "lazy", .log = log2};
    CHECK_STATUS(mw_container_register(c, "lazy", MW_LIFETIME_LAZY, make, destroy, &l, NULL, false), MW_STATUS_OK);
    CHECK_STATUS(mw_container_get(c, "lazy", &v), MW_STATUS_OK);
    mw_manager *m = NULL;
    CHECK_STATUS(mw_manager_new(NULL, &m), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_add_container(m, "services", 0, c), MW_STATUS_OK);
    CHECK_STATUS(mw_manager_force_gc(m, NULL), MW_STATUS_OK);
    CHECK(strcmp(log2, "lazy,") == 0);
    CHECK_STATUS(mw_container_get(c, "lazy", &v), MW_STATUS_OK);
    CHECK(l.made == 2);
    mw_manager_free(m);
    mw_container_dispose(c);
    mw_container_free(c);
}

/* Eight threads ask for a slow singleton at once: one creation. */
static mw_container *racing;
static void *ask(void *out) {
    mw_container_get(racing, "slow", (void **)out);
    return NULL;
}

static void test_eight_threads_one_creation(void) {
    spec slow = {.name = "slow", .sleep_ms = 50};
    racing = fresh(NULL);
    CHECK_STATUS(mw_container_register(racing, "slow", MW_LIFETIME_SINGLETON, make, destroy, &slow, NULL, false), MW_STATUS_OK);
    pthread_t t[8];
    void *got[8] = {0};
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, ask, &got[i]);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    CHECK(slow.made == 1);
    for (int i = 0; i < 8; i++) CHECK(got[i] == got[0] && got[0] != NULL);
    mw_container_dispose(racing);
    mw_container_free(racing);
}

int main(void) {
    test_seed_usage_lifetimes_and_stats();
    test_aliases_tags_and_bad_input();
    test_cycles_failures_and_scopes();
    test_eight_threads_one_creation();
    return CHECK_SUMMARY();
}
