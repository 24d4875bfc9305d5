/* test_nomem.c: an allocation that fails becomes APL_ERR_NOMEM with a message, never a crash.
 *
 * The address-space limit (RLIMIT_AS) is lowered to just above what the process already uses,
 * then: every CPU variant and the reference on inputs whose work arrays cannot fit (the inputs
 * themselves were allocated before), and the three .npy readers on a sparse file whose data
 * (1 GiB, all zeros, so valid) cannot fit. Skipped (77) under AddressSanitizer, which reserves
 * terabytes of address space and cannot run under RLIMIT_AS. */
#define _POSIX_C_SOURCE 200809L

#include "aploss/harness.h"
#include "check.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define APL_UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(APL_UNDER_ASAN)
#define APL_UNDER_ASAN 1
#endif

/* Bytes of address space in use now (VmSize), 0 if unknown. */
static size_t vm_size(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %zu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

static struct rlimit saved;

/* Allows `headroom` more bytes of address space than is in use now. */
static int limit_memory(size_t headroom)
{
    size_t used = vm_size();
    if (used == 0)
        return 0;
    struct rlimit lim = saved;
    lim.rlim_cur = (rlim_t)(used + headroom);
    if (saved.rlim_max != RLIM_INFINITY && lim.rlim_cur > saved.rlim_max)
        return 0;
    return setrlimit(RLIMIT_AS, &lim) == 0;
}

static void unlimit_memory(void)
{
    setrlimit(RLIMIT_AS, &saved);
}

/* 4M elements, every one positive: the inputs are 36 MB, but every variant's first O(|P|) work
 * array is at least 64 MB (and a quadratic variant that did get its memory would run for hours:
 * the alarm turns that into a failure). */
static void test_variants(void)
{
    const size_t n = (size_t)4 << 20;
    float *s = malloc(n * sizeof *s), *grad = malloc(n * sizeof *grad);
    int8_t *t = malloc(n);
    double *g64 = malloc(n * sizeof *g64);
    if (!s || !t || !grad || !g64) {
        CHECK(0, "cannot allocate the inputs");
        return;
    }
    for (size_t j = 0; j < n; j++) {
        s[j] = (float)(j % 1000) * 0.01f;
        t[j] = 1;
    }
    /* Touch the outputs so their pages are not what the limit cuts. */
    memset(grad, 0, n * sizeof *grad);
    memset(g64, 0, n * sizeof *g64);

    size_t count;
    const apl_variant *v = apl_variants(&count);
    for (size_t i = 0; i < count; i++) {
        if (v[i].device != APL_CPU || !apl_variant_runnable(&v[i], NULL))
            continue;
        apl_error err = {0};
        apl_result r;
        CHECK(limit_memory((size_t)32 << 20), "cannot set RLIMIT_AS");
        alarm(120);
        apl_status st = apl_run_ap(&v[i], s, t, n, 1.0, grad, &r, &err);
        alarm(0);
        unlimit_memory();
        CHECK(st == APL_ERR_NOMEM && err.code == APL_ERR_NOMEM && err.msg[0] != '\0',
              "%s under a 32 MB headroom: status %d (%s), message '%s'", v[i].name, (int)st,
              apl_status_name(st), err.msg);
        printf("  %-18s -> %s: %s\n", v[i].name, apl_status_name(st), err.msg);
    }
    apl_error err = {0};
    apl_result r;
    CHECK(limit_memory((size_t)16 << 20), "cannot set RLIMIT_AS");
    alarm(120);
    apl_status st = apl_reference_ap(s, t, n, 1.0, g64, &r, &err);
    alarm(0);
    unlimit_memory();
    CHECK_ERR(st, &err, APL_ERR_NOMEM, "cannot allocate");
    printf("  %-18s -> %s: %s\n", "reference", apl_status_name(st), err.msg);
    free(s), free(t), free(grad), free(g64);
}

/* A valid .npy whose data section is `bytes` of zeros, without writing them (a sparse file). */
static int sparse_npy(const char *path, const char *descr, size_t count, size_t itemsize)
{
    char dict[128];
    int dl = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu,), }",
                      descr, count);
    size_t pad = (64 - (10 + (size_t)dl + 1) % 64) % 64, hlen = (size_t)dl + pad + 1;
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)dl, f) == (size_t)dl;
    for (size_t k = 0; ok && k < pad; k++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF && fclose(f) == 0;
    return ok && truncate(path, (off_t)(10 + hlen + count * itemsize)) == 0;
}

static void test_readers(void)
{
    const size_t count = (size_t)1 << 30; /* 1 GiB of i1 targets, 4 GiB of logits */
    char lp[1024], tp[1024], fp[1024];
    snprintf(lp, sizeof lp, "%s/nomem_logits.npy", APL_TEST_TMP);
    snprintf(tp, sizeof tp, "%s/nomem_targets.npy", APL_TEST_TMP);
    snprintf(fp, sizeof fp, "%s/nomem_f64.npy", APL_TEST_TMP);
    if (!sparse_npy(lp, "<f4", count, 4) || !sparse_npy(tp, "|i1", count, 1) ||
        !sparse_npy(fp, "<f8", count / 8, 8)) {
        CHECK(0, "cannot create sparse files in %s: %s", APL_TEST_TMP, strerror(errno));
        return;
    }
    apl_error err = {0};
    apl_shape shape;
    float *l = NULL;
    int8_t *t = NULL;
    double *d = NULL;
    CHECK(limit_memory((size_t)256 << 20), "cannot set RLIMIT_AS");
    apl_status sl = apl_npy_read_logits(lp, &l, &shape, &err);
    apl_error el = err;
    apl_status st = apl_npy_read_targets(tp, &t, &shape, &err);
    apl_error et = err;
    apl_status sd = apl_npy_read_f64(fp, &d, &shape, &err);
    unlimit_memory();
    CHECK_ERR(sl, &el, APL_ERR_NOMEM, "nomem_logits.npy");
    CHECK_ERR(st, &et, APL_ERR_NOMEM, "nomem_targets.npy");
    CHECK_ERR(sd, &err, APL_ERR_NOMEM, "nomem_f64.npy");
    CHECK(l == NULL && t == NULL && d == NULL, "data returned on failure");
    printf("  logits  -> %s: %s\n  targets -> %s: %s\n  f64     -> %s: %s\n", apl_status_name(sl),
           el.msg, apl_status_name(st), et.msg, apl_status_name(sd), err.msg);
    free(l), free(t), free(d);
    unlink(lp), unlink(tp), unlink(fp);
}

int main(void)
{
#ifdef APL_UNDER_ASAN
    printf("test_nomem: skipped: AddressSanitizer cannot run under RLIMIT_AS\n");
    return 77;
#else
    if (getrlimit(RLIMIT_AS, &saved) != 0 || vm_size() == 0) {
        printf("test_nomem: skipped: no RLIMIT_AS or /proc/self/status here\n");
        return 77;
    }
    test_variants();
    test_readers();
    return check_report("test_nomem");
#endif
}
