/* core.c: status and error messages, input checks, apl_run, and the agreement check against the
 * reference. One place for each; the CLI, tests and benchmarks all call these. */
#include "aploss.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

apl_status apl_fail(apl_error *err, apl_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

const char *apl_status_name(apl_status s)
{
    switch (s) {
    case APL_OK: return "ok";
    case APL_ERR_ARG: return "bad argument";
    case APL_ERR_INPUT: return "bad input";
    case APL_ERR_NOMEM: return "out of memory";
    case APL_ERR_IO: return "i/o error";
    case APL_ERR_FORMAT: return "bad file format";
    case APL_ERR_CUDA: return "CUDA error";
    case APL_ERR_NODEVICE: return "no CUDA device";
    case APL_ERR_UNAVAILABLE: return "not built";
    }
    return "unknown status";
}

apl_status apl_check_inputs(const float *logits, const int8_t *targets, size_t n, double delta,
                            apl_error *err)
{
    if (!(delta > 0.0) || !isfinite(delta))
        return apl_fail(err, APL_ERR_ARG, "delta = %g: expected a finite value > 0", delta);
    if (n > 0 && (!logits || !targets))
        return apl_fail(err, APL_ERR_ARG, "null logits or targets for %zu elements", n);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(logits[i]))
            return apl_fail(err, APL_ERR_INPUT, "logits[%zu] = %g: logits must be finite", i,
                            (double)logits[i]);
        if (targets[i] < -1 || targets[i] > 1)
            return apl_fail(err, APL_ERR_INPUT, "targets[%zu] = %d: expected -1, 0 or 1", i,
                            (int)targets[i]);
    }
    return APL_OK;
}

apl_status apl_run(const apl_variant *v, const float *logits, const int8_t *targets, size_t n,
                   double delta, float *grad, apl_result *res, apl_error *err)
{
    if (!v)
        return apl_fail(err, APL_ERR_ARG, "no variant given");
    if (!apl_variant_runnable(v, err))
        return err ? err->code : APL_ERR_UNAVAILABLE;
    if (n > 0 && !grad)
        return apl_fail(err, APL_ERR_ARG, "null gradient output for %zu elements", n);
    apl_status st = apl_check_inputs(logits, targets, n, delta, err);
    if (st != APL_OK)
        return st;
    apl_result r = {0};
    st = v->fn(logits, targets, n, delta, grad, &r, err);
    if (st == APL_OK && res)
        *res = r;
    return st;
}

void apl_compare(const float *grad, double loss, const double *grad64, double loss64, size_t n,
                 apl_agreement *out)
{
    double max_ref = 0.0, max_err = 0.0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs(grad64[i]);
        if (r > max_ref)
            max_ref = r;
    }
    double bound = APL_TOL_GRAD_REL * max_ref;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)grad[i] - grad64[i]);
        /* A NaN gradient must fail: compare with !(e <= bound). */
        if (!(e <= bound))
            bad++;
        if (e > max_err || (isnan(e) && !isnan(max_err))) {
            max_err = e;
            worst = i;
        }
    }
    out->max_abs_err = max_err;
    out->max_rel_err = max_ref > 0.0 ? max_err / max_ref : (max_err > 0.0 ? INFINITY : 0.0);
    out->loss_err = fabs(loss - loss64);
    out->worst_index = worst;
    out->mismatches = bad;
    out->pass = bad == 0 && out->loss_err <= APL_TOL_LOSS_ABS;
}
