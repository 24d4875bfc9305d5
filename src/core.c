/* core.c: status and error messages, loss names, input checks, thread counts and apl_run. One
 * place for each; the CLI, the tests, the benchmarks and the Python package all call these. */
#include "aploss/aploss.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <unistd.h>

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
    /* One range for every variant (docs/SPEC.md, "Delta range"): inside it 1/(2 delta) is a
     * normal float (the CPU ramps), 2 delta and the fixed-point scales of thrust_sorted.inl are
     * finite doubles, and the breakpoints s -+ delta keep their ramp. */
    if (!(delta >= APL_DELTA_MIN && delta <= APL_DELTA_MAX))
        return apl_fail(err, APL_ERR_ARG,
                        "delta = %g: expected a finite value in [2^-100, 2^100] (%.2g to %.2g)",
                        delta, APL_DELTA_MIN, APL_DELTA_MAX);
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

static const char *const loss_names[APL_LOSS_COUNT] = {"ap", "alrp", "pap"};

const char *apl_loss_name(apl_loss l)
{
    return (unsigned)l < APL_LOSS_COUNT ? loss_names[l] : "unknown";
}

apl_status apl_loss_parse(const char *name, apl_loss *l, apl_error *err)
{
    for (int i = 0; name && i < APL_LOSS_COUNT; i++)
        if (strcmp(name, loss_names[i]) == 0) {
            *l = (apl_loss)i;
            return APL_OK;
        }
    return apl_fail(err, APL_ERR_ARG, "loss '%s': expected ap, alrp or pap", name ? name : "(null)");
}

/* PAP (docs/SPEC_PAP.md): delta is not one of its inputs (the contract fixes the window at
 * delta = 1), so it is neither read nor required; the parameter rows (apl_check_pap_params); one
 * IoU in [0, 1] per positive. topk needs no check: 0 ranks every valid entry, any other value
 * is a K >= 1. */
static apl_status check_pap(const apl_problem *p, apl_error *err)
{
    apl_status st = apl_check_inputs(p->logits, p->targets, p->n, 1.0, err);
    if (st != APL_OK)
        return st;
    if ((st = apl_check_pap_params(p->params, p->param_rows, err)) != APL_OK)
        return st;
    size_t np = 0;
    for (size_t j = 0; j < p->n; j++)
        np += p->targets[j] == 1;
    if (p->n_aux != np)
        return apl_fail(err, APL_ERR_INPUT, "iou has %zu values: expected one per positive (%zu)",
                        p->n_aux, np);
    if (np > 0 && !p->aux)
        return apl_fail(err, APL_ERR_ARG, "null iou for %zu positives", np);
    for (size_t k = 0; k < np; k++)
        if (!(p->aux[k] >= 0.0f && p->aux[k] <= 1.0f)) /* NaN fails too */
            return apl_fail(err, APL_ERR_INPUT, "iou[%zu] = %g: expected a finite value in [0, 1]",
                            k, (double)p->aux[k]);
    return APL_OK;
}

apl_status apl_check_problem(const apl_problem *p, apl_error *err)
{
    if (!p)
        return apl_fail(err, APL_ERR_ARG, "no problem given");
    if ((unsigned)p->loss >= APL_LOSS_COUNT)
        return apl_fail(err, APL_ERR_ARG, "loss %d: expected ap, alrp or pap", (int)p->loss);
    if (p->threads < 0)
        return apl_fail(err, APL_ERR_ARG, "threads = %d: expected 0 (default) or more", p->threads);
    if (p->loss == APL_LOSS_PAP)
        return check_pap(p, err);
    apl_status st = apl_check_inputs(p->logits, p->targets, p->n, p->delta, err);
    if (st != APL_OK || p->loss == APL_LOSS_AP)
        return st;
    /* aLRP: one finite, non-negative localisation error per positive. */
    size_t np = 0;
    for (size_t j = 0; j < p->n; j++)
        np += p->targets[j] == 1;
    if (p->n_aux != np)
        return apl_fail(err, APL_ERR_INPUT, "eloc has %zu values: expected one per positive (%zu)",
                        p->n_aux, np);
    if (np > 0 && !p->aux)
        return apl_fail(err, APL_ERR_ARG, "null eloc for %zu positives", np);
    for (size_t k = 0; k < np; k++)
        if (!isfinite(p->aux[k]) || p->aux[k] < 0.0f)
            return apl_fail(err, APL_ERR_INPUT, "eloc[%zu] = %g: expected a finite value >= 0", k,
                            (double)p->aux[k]);
    return APL_OK;
}

#ifndef APL_HAVE_CUDA
apl_status apl_gpu_release_cache(void) { return APL_OK; } /* no pool without CUDA */
size_t apl_cuda_sorted_shared_segments(void) { return 0; }
#endif

int apl_threads(int requested)
{
    if (requested > 0)
        return requested;
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && *env) {
        char *end;
        long t = strtol(env, &end, 10); /* "4" or the first of a list "4,2" */
        if (end != env && t > 0 && t < 65536)
            return (int)t;
    }
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
#endif
}

apl_status apl_run(const apl_variant *v, const apl_problem *p, const apl_output *out,
                   apl_result *res, apl_error *err)
{
    if (!v)
        return apl_fail(err, APL_ERR_ARG, "no variant given");
    if (!p || !out)
        return apl_fail(err, APL_ERR_ARG, "%s: null problem or output", v->name);
    if (!apl_variant_has_loss(v, p->loss))
        return apl_fail(err, APL_ERR_UNAVAILABLE, "%s: does not implement loss %s", v->name,
                        apl_loss_name(p->loss));
    if (!apl_variant_runnable(v, err))
        return err ? err->code : APL_ERR_UNAVAILABLE;
    if (p->n > 0 && !out->grad)
        return apl_fail(err, APL_ERR_ARG, "null gradient output for %zu elements", p->n);
    apl_status st = apl_check_problem(p, err);
    if (st != APL_OK)
        return st;
    apl_result r = {0};
    st = v->fn(p, out, &r, err);
    if (st == APL_OK && res)
        *res = r;
    return st;
}
