/* accept.c: the acceptance rule, the one function that decides whether a variant's output agrees
 * with the reference's (docs/SPEC.md "Agreement"). The CLI, every test, the fuzzers and the
 * benchmark call apl_accept and print from its verdict; none re-implements a part of it. */
#include "aploss/harness.h"

#include <math.h>
#include <stdio.h>

/* Max relative error of x against ref (n entries); NaN in x counts as infinitely wrong. */
static double rel_err(const float *x, const double *ref, size_t n, double *max_abs,
                      size_t *worst, size_t *bad)
{
    double max_ref = 0.0, max_err = 0.0;
    size_t w = 0, b = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(ref[i]) > max_ref)
            max_ref = fabs(ref[i]);
    const double bound = APL_TOL_GRAD_REL * max_ref;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)x[i] - ref[i]);
        if (!(e <= bound)) /* NaN fails too */
            b++;
        if (e > max_err || (isnan(e) && !isnan(max_err))) {
            max_err = e;
            w = i;
        }
    }
    *max_abs = max_err;
    *worst = w;
    if (bad)
        *bad = b;
    return max_ref > 0.0 ? max_err / max_ref : (max_err > 0.0 || isnan(max_err) ? INFINITY : 0.0);
}

/* 1 when element j is a negative within rounding distance of some positive's s_i - delta.
 * Not for PAP: its contract requires exact classification (docs/SPEC_PAP.md, "Numerical
 * hazards"), so a row on or next to a breakpoint, the window's foot included, must take the same
 * piece as the float64 reference, and a zero there is exact on both sides; a variant that
 * rounded h would move such a row by c_i w_j (jump in slope)/2, and this rule should catch it. */
static int near_window_start(const apl_problem *p, size_t j)
{
    if (!p->logits || !p->targets || p->targets[j] != 0 || p->loss == APL_LOSS_PAP)
        return 0;
    const double x = p->logits[j], delta = p->delta;
    for (size_t i = 0; i < p->n; i++)
        if (p->targets[i] == 1 &&
            fabs(x - ((double)p->logits[i] - delta)) <= 0x1p-20 * (fabs((double)p->logits[i]) + delta))
            return 1;
    return 0;
}

void apl_accept(const apl_problem *p, const float *grad, const float *grad_aux,
                const apl_result *res, const double *grad64, const double *grad_aux64,
                const apl_result *ref, apl_verdict *v)
{
    *v = (apl_verdict){0};
    const size_t n = p->n;
    v->positives = res->positives;
    v->ref_positives = ref->positives;
    v->valid_negatives = res->valid_negatives;
    v->ref_valid_negatives = ref->valid_negatives;
    v->max_rel_err = rel_err(grad, grad64, n, &v->max_abs_err, &v->worst_index, &v->mismatches);
    if (n > 0) {
        v->worst_value = grad[v->worst_index];
        v->worst_ref = grad64[v->worst_index];
    }
    /* Exact zeros where the reference's gradient is exactly 0 (ignored and pruned elements, no
     * window open, no positives), except a negative within rounding distance of a ramp window's
     * lower end s_i - delta: there the true H is 0 or tiny, and a float32 ramp may round it
     * either way; the tolerance decides. Rare, so the positives are scanned per candidate. */
    for (size_t j = 0; j < n; j++)
        if (grad64[j] == 0.0 && grad[j] != 0.0f)
            v->zero_mismatches += !near_window_start(p, j);
    /* A reference that is 0 everywhere leaves the relative bound at 0. The float64 reference
     * itself rounds H to 0 for a negative at a window's foot whose logit is far smaller than the
     * positive's (s_j - s_i loses s_j: 1e-38 - 1 is -1), where the segment variants keep the
     * tiny true value. So when the reference is all 0, such entries pass if they stay within
     * the tolerance of the gradient's natural scale 1/|P|, as the zero rule above lets them. */
    if (v->mismatches > 0 && v->max_rel_err == INFINITY && ref->positives > 0) {
        size_t left = 0;
        for (size_t j = 0; j < n; j++) {
            if (grad64[j] != 0.0)
                break; /* not the all-zero case */
            if (grad[j] != 0.0f &&
                !(fabs((double)grad[j]) <= APL_TOL_GRAD_REL / (double)ref->positives &&
                  near_window_start(p, j)))
                left++;
            if (j + 1 == n && left == 0)
                v->mismatches = 0, v->max_rel_err = 0.0;
        }
    }
    v->loss_err = fabs(res->loss - ref->loss);
    if (isnan(res->loss))
        v->loss_err = INFINITY;
    v->loss_loc_err = fabs(res->loss_loc - ref->loss_loc);
    if (isnan(res->loss_loc))
        v->loss_loc_err = INFINITY;
    int aux_bad = 0;
    if (grad_aux && grad_aux64 && p->n_aux > 0) {
        double a;
        size_t bad;
        v->aux_max_rel_err = rel_err(grad_aux, grad_aux64, p->n_aux, &a, &v->aux_worst_index, &bad);
        aux_bad = bad > 0;
    }
    if (v->positives != v->ref_positives || v->valid_negatives != v->ref_valid_negatives)
        v->reason = APL_REASON_COUNTS;
    else if (v->mismatches > 0)
        v->reason = APL_REASON_GRAD;
    else if (v->zero_mismatches > 0)
        v->reason = APL_REASON_ZEROS;
    else if (!(v->loss_err <= APL_TOL_LOSS_ABS) || !(v->loss_loc_err <= APL_TOL_LOSS_ABS))
        v->reason = APL_REASON_LOSS;
    else if (aux_bad)
        v->reason = APL_REASON_AUX;
    else
        v->reason = APL_REASON_PASS;
    v->pass = v->reason == APL_REASON_PASS;
}

const char *apl_reason_name(apl_reason r)
{
    switch (r) {
    case APL_REASON_PASS: return "pass";
    case APL_REASON_STATUS: return "status";
    case APL_REASON_COUNTS: return "counts";
    case APL_REASON_GRAD: return "grad";
    case APL_REASON_ZEROS: return "zeros";
    case APL_REASON_LOSS: return "loss";
    case APL_REASON_AUX: return "grad_aux";
    }
    return "unknown";
}

void apl_verdict_format(const apl_verdict *v, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return;
    if (v->reason == APL_REASON_STATUS) {
        snprintf(buf, cap, "FAIL (status): the call returned an error");
        return;
    }
    int k = snprintf(buf, cap,
                     "%s%s%s: max rel grad err %.3g at [%zu] (%.9g vs %.9g), loss err %.3g",
                     v->pass ? "pass" : "FAIL (", v->pass ? "" : apl_reason_name(v->reason),
                     v->pass ? "" : ")", v->max_rel_err, v->worst_index, v->worst_value,
                     v->worst_ref, v->loss_err);
    if (k < 0 || (size_t)k >= cap)
        return;
    if (v->loss_loc_err > 0.0 || v->aux_max_rel_err > 0.0)
        k += snprintf(buf + k, cap - (size_t)k, ", loss_loc err %.3g, grad_aux rel err %.3g at [%zu]",
                      v->loss_loc_err, v->aux_max_rel_err, v->aux_worst_index);
    if (k >= 0 && (size_t)k < cap && v->reason == APL_REASON_COUNTS)
        snprintf(buf + k, cap - (size_t)k, "; |P| %zu vs %zu, |V| %zu vs %zu", v->positives,
                 v->ref_positives, v->valid_negatives, v->ref_valid_negatives);
    else if (k >= 0 && (size_t)k < cap && v->zero_mismatches > 0)
        snprintf(buf + k, cap - (size_t)k, "; %zu non-zero where the reference is exactly 0",
                 v->zero_mismatches);
}

apl_problem apl_ap_problem(const float *logits, const int8_t *targets, size_t n, double delta)
{
    apl_problem p = {0};
    p.loss = APL_LOSS_AP;
    p.logits = logits;
    p.targets = targets;
    p.n = n;
    p.delta = delta;
    return p;
}

apl_status apl_run_ap(const apl_variant *v, const float *logits, const int8_t *targets, size_t n,
                      double delta, float *grad, apl_result *res, apl_error *err)
{
    apl_problem p = apl_ap_problem(logits, targets, n, delta);
    apl_output out = {grad, NULL};
    return apl_run(v, &p, &out, res, err);
}

apl_status apl_reference_ap(const float *logits, const int8_t *targets, size_t n, double delta,
                            double *grad64, apl_result *res, apl_error *err)
{
    apl_problem p = apl_ap_problem(logits, targets, n, delta);
    return apl_reference(&p, grad64, NULL, res, err);
}

void apl_accept_ap(const float *logits, const int8_t *targets, size_t n, double delta,
                   const float *grad, const apl_result *res, const double *grad64,
                   const apl_result *ref, apl_verdict *v)
{
    apl_problem p = apl_ap_problem(logits, targets, n, delta);
    apl_accept(&p, grad, NULL, res, grad64, NULL, ref, v);
}
