/* test_edge.c: edge cases of the SPEC, for the reference and every runnable variant:
 * hand-computed values, no positives, all ignored, all negatives pruned, one positive, ties,
 * negatives exactly at the pruning threshold and at the ramp's ends, the gradient balance
 * invariant, the exact zero pattern, and every bad input with its message. */
#include "aploss/harness.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_MAX 64

typedef struct {
    const char *name;
    size_t n;
    float s[N_MAX];
    int8_t t[N_MAX];
    double delta;
} edge_case;

/* Reference plus every runnable variant on one case; each variant must pass apl_accept (counts,
 * SPEC tolerance, zero pattern, loss) and, on these cases, reproduce the reference's exact zeros
 * in both directions. */
static void agree(const edge_case *c, double *g64_out, apl_result *ref_out)
{
    double g64[N_MAX];
    float grad[N_MAX];
    apl_error err = {0};
    apl_result ref;
    apl_status st = apl_reference_ap(c->s, c->t, c->n, c->delta, g64, &ref, &err);
    CHECK(st == APL_OK, "%s: reference: %s", c->name, err.msg);
    if (g64_out)
        memcpy(g64_out, g64, c->n * sizeof *g64);
    if (ref_out)
        *ref_out = ref;
    size_t count;
    const apl_variant *v = apl_variants(&count);
    for (size_t i = 0; i < count; i++) {
        if (!apl_variant_runnable(&v[i], NULL))
            continue;
        memset(grad, 0xff, sizeof grad);
        apl_result r;
        st = apl_run_ap(&v[i], c->s, c->t, c->n, c->delta, grad, &r, &err);
        CHECK(st == APL_OK, "%s/%s: %s", c->name, v[i].name, err.msg);
        if (st != APL_OK)
            continue;
        apl_verdict ag;
        apl_accept_ap(c->s, c->t, c->n, c->delta, grad, &r, g64, &ref, &ag);
        char why[APL_MSG_LEN];
        apl_verdict_format(&ag, why, sizeof why);
        CHECK(ag.pass, "%s/%s: %s", c->name, v[i].name, why);
        /* A separate, stronger property than apl_accept's zero rule, for these hand-made cases
         * only: the exact zero pattern in both directions. apl_accept, written for any input,
         * lets a negative within rounding distance of a window start s_i - delta be non-zero, and
         * lets a tiny reference entry come back as 0 (the tolerance decides). Here no element sits
         * near a window start except on purpose, exactly at it or one float below it
         * ("threshold"), where the SPEC's gradient is exactly 0, and no non-zero entry is tiny: a
         * variant must decide these boundaries exactly, so a 0 where the reference is non-zero
         * means an element wrongly pruned, and a non-zero where it is 0 one wrongly counted. */
        for (size_t j = 0; j < c->n; j++)
            CHECK((g64[j] == 0.0) == (grad[j] == 0.0f), "%s/%s: zero pattern at [%zu]: %.9g vs %.9g",
                  c->name, v[i].name, j, (double)grad[j], g64[j]);
    }
}

static void near(const char *what, double got, double want)
{
    CHECK(fabs(got - want) <= 1e-12, "%s = %.17g, want %.17g", what, got, want);
}

/* The SPEC's balance: sum over V of grad = -sum over P of grad = loss. */
static void balance(const edge_case *c, const double *g64, double loss)
{
    double neg = 0.0, pos = 0.0;
    for (size_t j = 0; j < c->n; j++) {
        if (c->t[j] == 0)
            neg += g64[j];
        if (c->t[j] == 1)
            pos += g64[j];
    }
    CHECK(fabs(neg - loss) <= 1e-12 && fabs(pos + loss) <= 1e-12,
          "%s: balance: sum neg %.17g, sum pos %.17g, loss %.17g", c->name, neg, pos, loss);
}

static void hand_computed(void)
{
    double g[N_MAX];
    apl_result r;
    /* One positive and one negative at the same logit: H(0) = 1/2, a = 1, b = 1/2, cur = 2/3,
     * loss 1/3, w = 2/3, grad_neg = w/2 = 1/3, grad_pos = -1/3. */
    edge_case c1 = {"one-each", 2, {0.0f, 0.0f}, {1, 0}, 1.0};
    agree(&c1, g, &r);
    near("one-each loss", r.loss, 1.0 / 3.0);
    near("one-each grad_pos", g[0], -1.0 / 3.0);
    near("one-each grad_neg", g[1], 1.0 / 3.0);

    /* Two positives at 0 and 2, one negative at 1, delta 1 (ramp ends meet the other points).
     * Ascending: p0 = 0: a = 0.5 + H(0) + H(2) = 2, b = H(1) = 1, cur 2/3, w = 1/3.
     * p1 = 2: a = 0.5 + H(-2) + H(0) = 1, b = H(-1) = 0, cur 1, w = 1.
     * loss = 1 - (2/3 + 1)/2 = 1/6; grad_neg = (w0 H(1) + w1 H(-1))/2 = 1/6;
     * grads of positives: -(1/3)/2 and 0. */
    edge_case c2 = {"ramp-ends", 3, {0.0f, 2.0f, 1.0f}, {1, 1, 0}, 1.0};
    agree(&c2, g, &r);
    near("ramp-ends loss", r.loss, 1.0 / 6.0);
    near("ramp-ends grad p0", g[0], -1.0 / 6.0);
    near("ramp-ends grad p1", g[1], 0.0);
    near("ramp-ends grad neg", g[2], 1.0 / 6.0);
    balance(&c2, g, r.loss);

    /* The rescaled path: p0 = 0, p1 = 1 with a negative at 1.5 (delta 1).
     * p0: a = 0.5 + 0.5 + H(1) = 2, b = H(1.5) = 1, cur 2/3, max 2/3, w0 = 1/3.
     * p1: a = 0.5 + H(-1) + 0.5 = 1, b = H(0.5) = 0.75, cur 4/7 < 2/3:
     *     factor = (1/3)/(3/7) = 7/9, w1 = (1/3)/0.75 = 4/9, prec 2/3.
     * loss = 1/3; grad_neg = (w0 * 1 + w1 * 0.75)/2 = (1/3 + 1/3)/2 = 1/3. */
    edge_case c3 = {"rescaled", 3, {0.0f, 1.0f, 1.5f}, {1, 1, 0}, 1.0};
    agree(&c3, g, &r);
    near("rescaled loss", r.loss, 1.0 / 3.0);
    near("rescaled grad neg", g[2], 1.0 / 3.0);
    near("rescaled grad p1", g[1], -1.0 / 6.0);
    balance(&c3, g, r.loss);
}

static void degenerate(void)
{
    double g[N_MAX];
    apl_result r;
    edge_case none = {"no-positives", 5, {0.3f, -1.0f, 2.0f, 5.0f, 0.0f}, {0, 0, -1, 0, -1}, 1.0};
    agree(&none, g, &r);
    near("no-positives loss", r.loss, 0.0);
    for (size_t j = 0; j < none.n; j++)
        CHECK(g[j] == 0.0, "no-positives grad[%zu] = %g", j, g[j]);

    edge_case ignored = {"all-ignored", 4, {0.3f, -1.0f, 2.0f, 5.0f}, {-1, -1, -1, -1}, 1.0};
    agree(&ignored, g, &r);
    near("all-ignored loss", r.loss, 0.0);

    edge_case empty = {"zero-elements", 0, {0}, {0}, 1.0};
    agree(&empty, g, &r);
    near("zero-elements loss", r.loss, 0.0);

    /* Every negative more than delta below the lowest positive: V is empty, AP = 1. */
    edge_case pruned = {"all-pruned", 6, {3.0f, 4.0f, 1.0f, -2.0f, 1.5f, 0.0f}, {1, 1, 0, 0, 0, -1},
                        1.0};
    agree(&pruned, g, &r);
    near("all-pruned loss", r.loss, 0.0);
    CHECK(r.valid_negatives == 0, "all-pruned: %zu valid negatives", r.valid_negatives);
    for (size_t j = 0; j < pruned.n; j++)
        CHECK(g[j] == 0.0, "all-pruned grad[%zu] = %g", j, g[j]);

    edge_case one = {"one-positive", 6, {0.5f, 0.2f, 0.9f, -3.0f, 0.6f, 7.0f}, {0, 1, 0, 0, -1, 0},
                     0.5};
    agree(&one, g, &r);
    balance(&one, g, r.loss);
}

static void ties_and_thresholds(void)
{
    double g[N_MAX];
    apl_result r;
    /* Equal positives, and negatives tied with positives. */
    edge_case ties = {"ties", 10, {1.0f, 1.0f, 1.0f, 0.5f, 1.0f, 0.5f, 2.0f, 1.0f, 0.5f, -5.0f},
                      {1, 1, 0, 1, 0, 0, 0, 1, 1, 0}, 1.0};
    agree(&ties, g, &r);
    balance(&ties, g, r.loss);
    CHECK(g[0] == g[1] && g[1] == g[7], "tied positives differ: %g %g %g", g[0], g[1], g[7]);
    CHECK(g[2] == g[4], "tied negatives differ: %g %g", g[2], g[4]);

    /* Negatives exactly at thr = 1.0 - 0.5 (valid, gradient exactly 0), just below it (pruned),
     * and at the upper ramp end s_i + delta (H = 1). */
    edge_case thr = {"threshold", 6, {1.0f, 0.5f, 0.49999997f, 1.5f, 2.0f, 0.75f},
                     {1, 0, 0, 0, 1, 0}, 0.5};
    agree(&thr, g, &r);
    CHECK(r.valid_negatives == 3, "threshold: %zu valid negatives, want 3 (0.5, 1.5, 0.75)",
          r.valid_negatives);
    CHECK(g[1] == 0.0 && g[2] == 0.0, "threshold grads %g %g, want exactly 0", g[1], g[2]);
    CHECK(g[3] > 0.0 && g[5] > 0.0, "valid negatives with weight: %g %g", g[3], g[5]);
    balance(&thr, g, r.loss);

    /* Wide logits and a tiny delta: windows do not overlap, most sums are over empty sets. */
    edge_case wide = {"wide", 8, {-40.0f, 40.0f, 39.95f, -39.99f, 0.0f, 80.0f, -40.01f, 12.0f},
                      {1, 1, 0, 0, 0, 0, 0, 1}, 0.1};
    agree(&wide, g, &r);
    balance(&wide, g, r.loss);
}

static void bad_inputs(void)
{
    float s[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    int8_t t[4] = {1, 0, 0, -1};
    float grad[4];
    apl_error err = {0};
    apl_result r;
    size_t count;
    const apl_variant *v = apl_variants(&count);
    for (size_t i = 0; i < count; i++) {
        if (!apl_variant_runnable(&v[i], NULL))
            continue;
        const apl_variant *x = &v[i];
        CHECK_ERR(apl_run_ap(x, s, t, 4, 0.0, grad, &r, &err), &err, APL_ERR_ARG, "delta = 0");
        CHECK_ERR(apl_run_ap(x, s, t, 4, -1.0, grad, &r, &err), &err, APL_ERR_ARG, "delta = -1");
        CHECK_ERR(apl_run_ap(x, s, t, 4, NAN, grad, &r, &err), &err, APL_ERR_ARG, "delta = nan");
        CHECK_ERR(apl_run_ap(x, s, t, 4, INFINITY, grad, &r, &err), &err, APL_ERR_ARG, "delta = inf");
        s[2] = NAN;
        CHECK_ERR(apl_run_ap(x, s, t, 4, 1.0, grad, &r, &err), &err, APL_ERR_INPUT,
                  "logits[2] = nan: logits must be finite");
        s[2] = INFINITY;
        CHECK_ERR(apl_run_ap(x, s, t, 4, 1.0, grad, &r, &err), &err, APL_ERR_INPUT, "logits[2] = inf");
        s[2] = -INFINITY;
        CHECK_ERR(apl_run_ap(x, s, t, 4, 1.0, grad, &r, &err), &err, APL_ERR_INPUT, "logits[2] = -inf");
        s[2] = 0.3f;
        t[3] = 3;
        CHECK_ERR(apl_run_ap(x, s, t, 4, 1.0, grad, &r, &err), &err, APL_ERR_INPUT,
                  "targets[3] = 3: expected -1, 0 or 1");
        t[3] = -2;
        CHECK_ERR(apl_run_ap(x, s, t, 4, 1.0, grad, &r, &err), &err, APL_ERR_INPUT, "targets[3] = -2");
        t[3] = -1;
    }
    double g64[4];
    CHECK_ERR(apl_reference_ap(s, t, 4, 0.0, g64, &r, &err), &err, APL_ERR_ARG, "delta = 0");
    CHECK_ERR(apl_run_ap(NULL, s, t, 4, 1.0, grad, &r, &err), &err, APL_ERR_ARG, "no variant");
}

/* The agreement check itself must catch a wrong gradient or loss: otherwise every test above
 * could pass a broken variant. */
static void compare_can_fail(void)
{
    double g64[3] = {-0.5, 0.25, 0.0};
    float g[3] = {-0.5f, 0.25f, 0.0f};
    const float s[3] = {0.4f, 0.0f, -5.0f}; /* one positive, one valid and one pruned negative */
    const int8_t t[3] = {1, 0, 0};
    apl_verdict ag;
    const apl_result ref = {.loss = 0.5, .positives = 1, .valid_negatives = 1};
    apl_result r = ref;
    apl_accept_ap(s, t, 3, 1.0, g, &r, g64, &ref, &ag);
    CHECK(ag.pass, "identical gradients must pass");
    g[1] = 0.25f * (1.0f + 4e-6f);
    apl_accept_ap(s, t, 3, 1.0, g, &r, g64, &ref, &ag);
    CHECK(!ag.pass && ag.worst_index == 1 && ag.mismatches == 1, "a 2e-6 relative error must fail");
    g[1] = 0.25f;
    g[2] = 1e-6f; /* the zero of a pruned element replaced by 2e-6 of max|grad| */
    apl_accept_ap(s, t, 3, 1.0, g, &r, g64, &ref, &ag);
    CHECK(!ag.pass && ag.worst_index == 2, "a wrong zero must fail");
    g[2] = NAN;
    apl_accept_ap(s, t, 3, 1.0, g, &r, g64, &ref, &ag);
    CHECK(!ag.pass, "a NaN gradient must fail");
    g[2] = 0.0f;
    r.loss = 0.5 + 2e-6;
    apl_accept_ap(s, t, 3, 1.0, g, &r, g64, &ref, &ag);
    CHECK(!ag.pass && ag.reason == APL_REASON_LOSS, "a loss 2e-6 off must fail");
    r.loss = 0.5;
    r.valid_negatives = 2;
    apl_accept_ap(s, t, 3, 1.0, g, &r, g64, &ref, &ag);
    CHECK(!ag.pass && ag.reason == APL_REASON_COUNTS, "a wrong count of valid negatives must fail");
    r.valid_negatives = 1;
    g[2] = 1e-30f; /* inside the tolerance, but not the reference's exact 0 */
    apl_accept_ap(s, t, 3, 1.0, g, &r, g64, &ref, &ag);
    CHECK(!ag.pass && ag.reason == APL_REASON_ZEROS, "a tiny non-zero where the reference is 0 must fail");
}

int main(void)
{
    hand_computed();
    degenerate();
    ties_and_thresholds();
    bad_inputs();
    compare_can_fail();
    return check_report("test_edge");
}
