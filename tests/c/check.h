/* The assertions shared by the C tests: each counts a pass or prints the failure with the
 * library's last error. A test's main() ends with CHECK_SUMMARY(). */
#ifndef MEMWARDEN_TEST_CHECK_H
#define MEMWARDEN_TEST_CHECK_H
#include <stdio.h>
#include <string.h>
#include "memwarden.h"

static int failures = 0, passed = 0;
#define CHECK(cond) do { if (cond) { passed++; } else { failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, mw_last_error_message()); } } while (0)
#define CHECK_STATUS(call, want) do { mw_status s_ = (call); if (s_ == (want)) { passed++; } else { failures++; \
    fprintf(stderr, "%s:%d: %s returned %d, want %d (%s)\n", __FILE__, __LINE__, #call, s_, want, mw_last_error_message()); } } while (0)
#define ERR_HAS(text) CHECK(strstr(mw_last_error_message(), (text)) != NULL)
#define CHECK_SUMMARY() (printf("%d passed, %d failed\n", passed, failures), failures == 0 ? 0 : 1)
#endif
