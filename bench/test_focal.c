/* test_focal.c: the benchmark's fused focal pass (bench/passes.c, float32, -ffast-math) against
 * the focal loss written from its definition in float64 (torchvision's sigmoid_focal_loss:
 * BCE-with-logits times (1 - p_t)^gamma times alpha_t), gradient by central differences of that
 * float64 loss; on generated inputs and on edge logits, with 1 and 3 threads. Also checks the
 * memory-floor pass. */
#include "aploss/harness.h"
#include "passes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;
#define CHECK(c, ...)                                                                            \
    do {                                                                                         \
        if (!(c)) {                                                                              \
            failures++;                                                                          \
            fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                      \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fputc('\n', stderr);                                                                 \
        }                                                                                        \
    } while (0)

/* The definition, in double: ce = BCE(sigmoid(x), t) computed stably, p_t, alpha_t. */
static double focal64(double x, int t, double alpha)
{
    if (t < 0)
        return 0.0;
    double p = 1.0 / (1.0 + exp(-x));
    double ce = fmax(x, 0.0) - x * t + log1p(exp(-fabs(x))); /* BCE with logits */
    double pt = p * t + (1.0 - p) * (1 - t);
    double at = alpha * t + (1.0 - alpha) * (1 - t);
    return at * ce * (1.0 - pt) * (1.0 - pt);
}

static void check(const float *s, const int8_t *t, size_t n, int threads, const char *what)
{
    const double alpha = 0.25, norm = 1.0 / 7.0;
    float *g = malloc(n * sizeof *g);
    double *g64 = malloc(n * sizeof *g64);
    double loss64 = 0.0, gmax = 0.0;
    for (size_t j = 0; j < n; j++) {
        double x = s[j], h = 1e-4 * fmax(1.0, fabs(x));
        loss64 += norm * focal64(x, t[j], alpha);
        g64[j] = norm * (focal64(x + h, t[j], alpha) - focal64(x - h, t[j], alpha)) / (2 * h);
        gmax = fmax(gmax, fabs(g64[j]));
    }
    double loss = apl_bench_focal(s, t, g, n, (float)alpha, (float)norm, threads);
    double err = 0.0;
    size_t worst = 0, zero_bad = 0;
    for (size_t j = 0; j < n; j++) {
        double d = fabs(g[j] - g64[j]);
        if (!(d <= err)) {
            err = d;
            worst = j;
        }
        zero_bad += t[j] == -1 && g[j] != 0.0f;
    }
    CHECK(fabs(loss - loss64) <= 1e-5 * fmax(1.0, fabs(loss64)),
          "%s, %d threads: loss %.9g vs float64 %.9g", what, threads, loss, loss64);
    CHECK(err <= 1e-5 * gmax, "%s, %d threads: grad[%zu] = %.9g vs float64 %.9g (max |g| %.3g)",
          what, threads, worst, (double)g[worst], g64[worst], gmax);
    CHECK(zero_bad == 0, "%s: %zu ignored entries with a non-zero gradient", what, zero_bad);
    printf("focal %s, %d thread(s): loss %.9g (float64 %.9g), max grad err %.3g of max %.3g\n",
           what, threads, loss, loss64, err, gmax);

    apl_bench_floor(s, t, g, n, threads);
    size_t bad = 0;
    for (size_t j = 0; j < n; j++)
        bad += g[j] != (t[j] == 1 ? -s[j] : 0.5f * s[j]);
    CHECK(bad == 0, "%s: floor pass wrong at %zu entries", what, bad);
    free(g);
    free(g64);
}

int main(void)
{
    /* Edge logits: saturated both ways, zero, tiny, each as positive, negative and ignored. */
    const float xs[] = {-88.0f, -30.0f, -17.0f, -5.0f, -1.0f, -1e-6f, 0.0f, 1e-6f,
                        0.5f,   3.0f,   17.0f,  30.0f, 88.0f};
    enum { NX = sizeof xs / sizeof xs[0] };
    float s[3 * NX];
    int8_t t[3 * NX];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < NX; i++) {
            s[k * NX + i] = xs[i];
            t[k * NX + i] = (int8_t)(k - 1);
        }
    check(s, t, 3 * NX, 1, "edge logits");

    apl_gen_params p;
    apl_gen_defaults(&p);
    p.anchors = 2000;
    p.pos_rate = 0.01;
    for (int d = 0; d < 3; d++) {
        p.dist = (apl_dist)d;
        size_t n = 0;
        apl_error err = {0};
        if (apl_gen_count(&p, &n, &err) != APL_OK) {
            fprintf(stderr, "generator: %s\n", err.msg);
            return 1;
        }
        float *gs = malloc(n * sizeof *gs);
        int8_t *gt = malloc(n);
        if (apl_generate(&p, gs, gt, &err) != APL_OK) {
            fprintf(stderr, "generator: %s\n", err.msg);
            return 1;
        }
        for (int th = 1; th <= 3; th += 2)
            check(gs, gt, n, th, apl_dist_name(p.dist));
        free(gs);
        free(gt);
    }
    if (failures)
        fprintf(stderr, "test_focal: %d failure(s)\n", failures);
    return failures != 0;
}
