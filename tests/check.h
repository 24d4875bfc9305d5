/* check.h: the tests' assertion macros. A failed CHECK prints file:line and what failed, counts
 * the failure, and the test's main returns check_report(), non-zero on any failure. */
#ifndef APL_CHECK_H
#define APL_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures, check_count;

#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        check_count++;                                                                           \
        if (!(cond)) {                                                                           \
            check_failures++;                                                                    \
            fprintf(stderr, "%s:%d: FAILED: %s: ", __FILE__, __LINE__, #cond);                   \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fputc('\n', stderr);                                                                 \
        }                                                                                        \
    } while (0)

/* The status is `code` and the message contains `needle`. */
#define CHECK_ERR(st, errp, code, needle)                                                        \
    CHECK((st) == (code) && strstr((errp)->msg, (needle)) != NULL,                               \
          "status %d (want %d), message '%s' (want it to contain '%s')", (int)(st), (int)(code),  \
          (errp)->msg, (needle))

static inline int check_report(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
