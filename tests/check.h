/* check.h: the tests' assertion macros. A failed CHECK prints file:line and what failed, counts
 * the failure, and the test's main returns check_report(), non-zero on any failure. */
#ifndef APL_CHECK_H
#define APL_CHECK_H

#include "aploss/aploss.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
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

/* APL_REQUIRE_GPU=1 (tests/gpu_check.sh sets it on a GPU machine): a GPU row that cannot run
 * is a failure, not a skip, so a broken driver cannot pass as "no GPU here". */
static inline int check_require_gpu(void)
{
    const char *e = getenv("APL_REQUIRE_GPU");
    return e && *e && strcmp(e, "0") != 0;
}

/* Whether row v runs here. When it cannot: a CPU row, or a GPU row on a machine without a device
 * (APL_ERR_NODEVICE) or built without CUDA, is skipped visibly ("  NAME skipped: why"); a GPU row
 * is a failure when the driver failed (APL_ERR_CUDA: e.g. older than the CUDA runtime needs, or
 * a device node without a working driver) or when APL_REQUIRE_GPU=1. */
static inline int check_runnable(const apl_variant *v)
{
    apl_error why = {0};
    if (apl_variant_runnable(v, &why))
        return 1;
    if (v->device == APL_GPU && (why.code == APL_ERR_CUDA || check_require_gpu())) {
        CHECK(0, "%s cannot run%s: %s", v->name,
              why.code == APL_ERR_CUDA ? " (a CUDA device node exists, but the driver failed)"
                                       : " and APL_REQUIRE_GPU=1 makes that a failure",
              why.msg);
        return 0;
    }
    printf("  %-18s skipped: %s\n", v->name, why.msg);
    return 0;
}

/* Calls fn(dir, name) for every case folder in dir, in name order; returns the number of cases,
 * or -1 (with a message) when dir cannot be opened. */
static inline int check_cmp_names(const void *a, const void *b) { return strcmp(a, b); }
static inline int check_for_each_case(const char *dir, void (*fn)(const char *, const char *))
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "cannot open the fixture directory %s (tests/cases/<loss> in the "
                        "repository)\n", dir);
        return -1;
    }
    static char names[64][256];
    int cases = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && cases < 64)
        if (e->d_name[0] != '.')
            snprintf(names[cases++], sizeof names[0], "%s", e->d_name);
    closedir(d);
    qsort(names, (size_t)cases, sizeof names[0], check_cmp_names);
    for (int i = 0; i < cases; i++)
        fn(dir, names[i]);
    return cases;
}

static inline int check_report(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
