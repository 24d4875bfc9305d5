/* cpu_common.c: steps shared by the CPU variants (see cpu_common.h). */
#include "cpu_common.h"
#include "kernels.h"
#include "alrp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int by_logit_then_index(const void *x, const void *y)
{
    const apl_pos *a = x, *b = y;
    if (a->s != b->s)
        return a->s < b->s ? -1 : 1;
    return a->index < b->index ? -1 : (a->index > b->index);
}

apl_status apl_gather_positives(const float *logits, const int8_t *targets, size_t n,
                                apl_pos **pos, size_t *np, float *grad, apl_result *res,
                                apl_error *err)
{
    size_t count = 0;
    for (size_t j = 0; j < n; j++)
        count += targets[j] == 1;
    *np = count;
    *pos = NULL;
    *res = (apl_result){.positives = count};
    if (count == 0) {
        memset(grad, 0, n * sizeof *grad);
        return APL_OK;
    }
    apl_pos *p = malloc(count * sizeof *p);
    if (!p)
        return apl_fail(err, APL_ERR_NOMEM, "cannot allocate %zu positives", count);
    for (size_t j = 0, k = 0; j < n; j++)
        if (targets[j] == 1)
            p[k++] = (apl_pos){logits[j], j};
    qsort(p, count, sizeof *p, by_logit_then_index);
    *pos = p;
    return APL_OK;
}

float apl_prune_threshold(float min_pos, double delta)
{
    double thr = (double)min_pos - delta;
    float f = (float)thr;
    if ((double)f < thr)
        f = nextafterf(f, INFINITY);
    return f;
}

double apl_precision_recurrence(size_t np, const double *a, const double *b, double *w,
                                double *one_minus_prec)
{
    /* om_max = 1 - max_prec, starting from max_prec = 0. */
    double om_max = 1.0, sum = 0.0;
    for (size_t i = 0; i < np; i++) {
        double om_cur = b[i] / (a[i] + b[i]); /* 1 - cur, without the cancellation */
        if (om_cur <= om_max) {               /* max_prec <= cur */
            om_max = om_cur;
            w[i] = 1.0 / (a[i] + b[i]);
        } else {
            /* factor/(a+b) = ((1-max_prec)/(1-cur))/(a+b) = (1-max_prec)/b, and b > 0 here */
            w[i] = om_max / b[i];
        }
        one_minus_prec[i] = om_max;
        sum += om_max;
    }
    return np ? sum / (double)np : 0.0;
}

void apl_write_positive_grads(float *grad, size_t n, const apl_pos *pos, size_t np,
                              const double *one_minus_prec)
{
    memset(grad, 0, n * sizeof *grad);
    for (size_t i = 0; i < np; i++)
        grad[pos[i].index] = (float)(-one_minus_prec[i] / (double)np);
}

static inline float ramp(float d, float inv2d) /* H(d) = clamp(d / (2 delta) + 1/2, 0, 1) */
{
    float h = d * inv2d + 0.5f;
    return h < 0.0f ? 0.0f : (h > 1.0f ? 1.0f : h);
}

/* sum_j H(x[j] - si): vectorised, double accumulation, fixed order for a given binary. */
static double ramp_sum(const float *restrict x, size_t nx, float si, float inv2d)
{
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (size_t j = 0; j < nx; j++)
        acc += (double)ramp(x[j] - si, inv2d);
    return acc;
}

/* aLRP's weights w_i = L_i / b_i are unbounded where b_i is small (docs/SPEC_ALRP.md, "Numerical
 * hazards"): a float x - s_i there is off by 1.9e-5 of max|grad|. Its ramps take the exact form:
 * the window's foot lo_i = s_i - delta in double, the offset x - lo_i in double. */
static inline double ramp_exact(double x, double lo, double inv2d)
{
    double h = (x - lo) * inv2d;
    return h < 0.0 ? 0.0 : (h > 1.0 ? 1.0 : h);
}

static double ramp_sum_exact(const float *restrict x, size_t nx, double lo, double inv2d)
{
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (size_t j = 0; j < nx; j++)
        acc += ramp_exact((double)x[j], lo, inv2d);
    return acc;
}

apl_status apl_quadratic_core(const float *x, size_t nx, const apl_pos *pos, size_t np,
                              double delta, int threads, float *gx, double *loss,
                              double *one_minus_prec, struct apl_alrp_job *alrp, apl_error *err)
{
    const int exact = alrp != NULL;
    const double inv2d_exact = 0.5 / delta;
    /* Threads split the positives (each b_i is one thread's ramp_sum) and then the negatives
     * (each G(x_j) is one thread's sum): every value is computed whole by one thread in a fixed
     * order, so the bits do not depend on the thread count. */
    const int T = threads > 1 && (double)nx * (double)np > 1e6 ? threads : 1;
    const float inv2d = (float)(0.5 / delta);
    double *a = malloc(np * sizeof *a), *b = malloc(np * sizeof *b), *w = malloc(np * sizeof *w);
    float *sp = malloc(np * sizeof *sp);
    double *lo = malloc(np * sizeof *lo);
    if (!a || !b || !w || !sp || !lo) {
        free(a), free(b), free(w), free(sp), free(lo);
        return apl_fail(err, APL_ERR_NOMEM, "cannot allocate work arrays for %zu positives", np);
    }
    for (size_t i = 0; i < np; i++) {
        sp[i] = pos[i].s;
        lo[i] = (double)pos[i].s - delta;
    }
#pragma omp parallel for num_threads(T) schedule(static)
    for (size_t i = 0; i < np; i++) {
        if (exact) {
            a[i] = 0.5 + ramp_sum_exact(sp, np, lo[i], inv2d_exact);
            b[i] = ramp_sum_exact(x, nx, lo[i], inv2d_exact);
        } else {
            a[i] = 0.5 + ramp_sum(sp, np, sp[i], inv2d);
            b[i] = ramp_sum(x, nx, sp[i], inv2d);
        }
    }
    /* The loss's own middle (the seam between the losses): w_i and each positive's share. */
    apl_status st = APL_OK;
    if (alrp)
        st = apl_alrp_quadratic_middle(alrp, sp, np, delta, a, b, w, one_minus_prec, loss, err);
    else
        *loss = apl_precision_recurrence(np, a, b, w, one_minus_prec);
    if (st != APL_OK) {
        free(a), free(b), free(w), free(sp), free(lo);
        return st;
    }
    const double inv_np = 1.0 / (double)np;
#pragma omp parallel for num_threads(T) schedule(static)
    for (size_t j = 0; j < nx; j++) {
        const float xj = x[j];
        double g = 0.0;
        if (exact) {
#pragma omp simd reduction(+ : g)
            for (size_t i = 0; i < np; i++)
                g += w[i] * ramp_exact((double)xj, lo[i], inv2d_exact);
        } else {
#pragma omp simd reduction(+ : g)
            for (size_t i = 0; i < np; i++)
                g += w[i] * (double)ramp(xj - sp[i], inv2d);
        }
        gx[j] = (float)(g * inv_np);
    }
    free(a), free(b), free(w), free(sp), free(lo);
    return APL_OK;
}

apl_status apl_quadratic_variant(const float *logits, const int8_t *targets, size_t n,
                                 double delta, int prune, int threads, float *grad,
                                 const struct apl_alrp_io *alrp, apl_result *res, apl_error *err)
{
    apl_pos *pos;
    size_t np;
    apl_status st = apl_gather_positives(logits, targets, n, &pos, &np, grad, res, err);
    if (st != APL_OK || np == 0)
        return st;
    const float thr = apl_prune_threshold(pos[0].s, delta);
    size_t nx = 0, nv = 0;
    for (size_t j = 0; j < n; j++)
        if (targets[j] == 0) {
            nx += !prune || logits[j] >= thr;
            nv += logits[j] >= thr;
        }
    float *x = malloc((nx ? nx : 1) * sizeof *x), *gx = malloc((nx ? nx : 1) * sizeof *gx);
    size_t *xi = malloc((nx ? nx : 1) * sizeof *xi);
    double *omp = malloc(np * sizeof *omp);
    if (!x || !gx || !xi || !omp) {
        free(x), free(gx), free(xi), free(omp), free(pos);
        return apl_fail(err, APL_ERR_NOMEM, "cannot allocate %zu negatives", nx);
    }
    for (size_t j = 0, k = 0; j < n; j++)
        if (targets[j] == 0 && (!prune || logits[j] >= thr)) {
            x[k] = logits[j];
            xi[k++] = j;
        }
    /* aLRP: e in the sorted order in, grad_e back in flat order out. */
    double *e_sorted = NULL, *ge_sorted = NULL;
    size_t *rank = NULL;
    struct apl_alrp_job job = {0};
    if (st == APL_OK && alrp) {
        e_sorted = malloc(np * sizeof *e_sorted);
        ge_sorted = malloc(np * sizeof *ge_sorted);
        st = !e_sorted || !ge_sorted
                 ? apl_fail(err, APL_ERR_NOMEM, "cannot allocate e for %zu positives", np)
                 : apl_alrp_sorted_e(pos, np, alrp->e, e_sorted, &rank, err);
        job = (struct apl_alrp_job){e_sorted, ge_sorted, 0.0};
    }
    if (st == APL_OK)
        st = apl_quadratic_core(x, nx, pos, np, delta, threads, gx, &res->loss, omp,
                                alrp ? &job : NULL, err);
    if (st == APL_OK && alrp) {
        res->loss_loc = job.loss_loc;
        if (alrp->grad_e)
            apl_alrp_scatter_grad_e(np, ge_sorted, rank, alrp->grad_e);
    }
    free(e_sorted), free(ge_sorted), free(rank);
    if (st == APL_OK) {
        res->valid_negatives = nv;
        apl_write_positive_grads(grad, n, pos, np, omp);
        for (size_t k = 0; k < nx; k++)
            grad[xi[k]] = gx[k];
    }
    free(x), free(gx), free(xi), free(omp), free(pos);
    return st;
}

int apl_segments_in_range(float min_pos, float max_pos, size_t np, double delta)
{
    double mag = fabs((double)min_pos) > fabs((double)max_pos) ? fabs((double)min_pos)
                                                               : fabs((double)max_pos);
    return np <= 0x7fffffff && ((double)max_pos - (double)min_pos) <= APL_SEGMENT_MAX_SPAN * delta &&
           mag <= APL_SEGMENT_MAX_MAGNITUDE * delta;
}
