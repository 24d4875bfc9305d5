/* pap_common.c: steps the PAP variants share (see pap_common.h). */
#include "pap_common.h"

#include <stdlib.h>
#include <string.h>

void apl_pap_fns_init(const float *params, int rows, apl_pap_fns *fns)
{
    memset(fns, 0, sizeof *fns);
    fns->h1_step = rows == 4;
    for (int r = 0; r < rows; r++) {
        apl_pwl *f = &fns->f[r];
        for (int k = 0; k < APL_PAP_POINTS; k++) {
            f->X[k] = (double)params[12 * r + 2 * k];
            f->Y[k] = (double)params[12 * r + 2 * k + 1];
            f->T[k] = 2.0 * f->X[k] - 1.0;
        }
        for (int m = 0; m < APL_PAP_PIECES; m++)
            f->sigma[m] = (f->Y[m + 1] - f->Y[m]) / (f->X[m + 1] - f->X[m]);
    }
}

/* ---- top-K selection: a radix select on order-preserving keys, exact integer counts ---- */

/* Monotone map of a float onto uint32 (a < b as floats iff key(a) < key(b)), -0 folded onto +0
 * so that equal logits have equal keys. */
static inline uint32_t key_of(float s)
{
    if (s == 0.0f)
        s = 0.0f;
    uint32_t u;
    memcpy(&u, &s, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static float float_of(uint32_t key)
{
    uint32_t u = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
    float s;
    memcpy(&s, &u, sizeof s);
    return s;
}

/* Fixed blocks for the tie scan: their bounds do not depend on the thread count. */
enum { SEL_BLOCK = 1 << 16 };

apl_status apl_pap_select(const float *logits, const int8_t *targets, size_t n, size_t topk,
                          int threads, apl_pap_rows *sel, apl_error *err)
{
    size_t valid = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : valid) schedule(static)
    for (size_t j = 0; j < n; j++)
        valid += targets[j] != -1;
    *sel = (apl_pap_rows){.all = 1, .rows = valid};
    if (topk == 0 || topk >= valid)
        return APL_OK;

    /* Three digits (11, 11, 10 bits) from the top: each pass counts the valid keys that share
     * the prefix found so far, by their next digit, and walks down from the largest digit. The
     * counts are integers, so the result does not depend on how the threads split the work. */
    static const int shift[3] = {21, 10, 0}, bits[3] = {11, 11, 10};
    uint32_t prefix = 0, prefix_mask = 0;
    size_t need = topk; /* rows still to take among the keys with this prefix */
    size_t *hist = malloc(2048 * sizeof *hist);
    if (!hist)
        return apl_fail(err, APL_ERR_NOMEM, "pap: cannot allocate the selection histogram");
    for (int d = 0; d < 3; d++) {
        const size_t size = (size_t)1 << bits[d];
        const uint32_t dmask = (uint32_t)(size - 1);
        memset(hist, 0, size * sizeof *hist);
#pragma omp parallel num_threads(threads)
        {
            size_t local[2048] = {0};
#pragma omp for schedule(static)
            for (size_t j = 0; j < n; j++) {
                if (targets[j] == -1)
                    continue;
                uint32_t key = key_of(logits[j]);
                if ((key & prefix_mask) == prefix)
                    local[(key >> shift[d]) & dmask]++;
            }
#pragma omp critical(apl_pap_select_hist)
            for (size_t b = 0; b < size; b++)
                hist[b] += local[b];
        }
        size_t b = size;
        while (b-- > 0) {
            if (hist[b] >= need)
                break;
            need -= hist[b];
        }
        prefix |= (uint32_t)b << shift[d];
        prefix_mask |= dmask << shift[d];
    }
    free(hist);
    sel->all = 0;
    sel->tau = float_of(prefix);
    sel->rows = topk;

    /* The cut: the need-th entry (in flat order) of those tied at tau. Count the ties per fixed
     * block in parallel, then scan the one block that holds it. */
    const size_t nb = (n + SEL_BLOCK - 1) / SEL_BLOCK;
    size_t *ties = malloc(nb * sizeof *ties);
    if (!ties)
        return apl_fail(err, APL_ERR_NOMEM, "pap: cannot allocate %zu block counts", nb);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t b = 0; b < nb; b++) {
        size_t c = 0, end = (b + 1) * SEL_BLOCK < n ? (b + 1) * SEL_BLOCK : n;
        for (size_t j = b * SEL_BLOCK; j < end; j++)
            c += targets[j] != -1 && key_of(logits[j]) == prefix;
        ties[b] = c;
    }
    size_t b = 0;
    for (; b < nb && ties[b] < need; b++)
        need -= ties[b];
    free(ties);
    for (size_t j = b * SEL_BLOCK; j < n; j++)
        if (targets[j] != -1 && key_of(logits[j]) == prefix && --need == 0) {
            sel->cut = j;
            break;
        }
    return APL_OK;
}

/* ---- the positives ---- */

static int by_logit_then_index(const void *x, const void *y)
{
    const apl_pap_pos *a = x, *b = y;
    if (a->s != b->s)
        return a->s < b->s ? -1 : 1;
    return a->index < b->index ? -1 : (a->index > b->index);
}

void apl_pap_pos_sort(apl_pap_pos *pos, size_t np)
{
    qsort(pos, np, sizeof *pos, by_logit_then_index);
}

apl_status apl_pap_gather(const apl_problem *p, const apl_pap_fns *fns, const apl_pap_rows *sel,
                          apl_pap_pos **pos, size_t *np, apl_error *err)
{
    size_t count = 0;
    for (size_t j = 0; j < p->n; j++)
        count += p->targets[j] == 1;
    *np = count;
    *pos = NULL;
    if (count == 0)
        return APL_OK;
    apl_pap_pos *q = malloc(count * sizeof *q);
    if (!q)
        return apl_fail(err, APL_ERR_NOMEM, "pap: cannot allocate %zu positives", count);
    for (size_t j = 0, k = 0; j < p->n; j++)
        if (p->targets[j] == 1) {
            apl_pap_pos *e = &q[k];
            e->s = (double)p->logits[j];
            e->index = j;
            e->k = k;
            e->v = (double)p->aux[k];
            e->row = apl_pap_is_row(sel, p->logits[j], 1, j);
            e->w = e->row ? 1.0 - apl_pwl_value(&fns->f[APL_PAP_I2], e->v) : 0.0;
            k++;
        }
    apl_pap_pos_sort(q, count);
    *pos = q;
    return APL_OK;
}

size_t apl_pap_negative_rows(const apl_pap_rows *sel, const apl_pap_pos *pos, size_t np)
{
    size_t r = 0;
    for (size_t i = 0; i < np; i++)
        r += (size_t)pos[i].row;
    return sel->rows - r;
}

double apl_pap_loss(const apl_pap_fns *fns, const apl_pap_pos *pos, size_t np, const double *N,
                    const double *D, double *c)
{
    /* The float64 contract divides by P + 1e-8 (the official float32 run rounds it to P). */
    const double scale = 1.0 / ((double)np + 1e-8);
    double sum = 0.0;
    for (size_t i = 0; i < np; i++) {
        double i3 = apl_pwl_value(&fns->f[APL_PAP_I3], pos[i].v);
        double i1 = apl_pwl_value(&fns->f[APL_PAP_I1], pos[i].v);
        c[i] = i3 * scale / D[i];
        sum += 1.0 - i1 + i3 * N[i] / D[i];
    }
    return sum * scale;
}

void apl_pap_grad_aux(const apl_pap_fns *fns, const apl_pap_pos *pos, size_t np, const double *N,
                      const double *D, const double *F, float *grad_aux)
{
    const double scale = 1.0 / ((double)np + 1e-8);
    for (size_t i = 0; i < np; i++) {
        double v = pos[i].v;
        double g = (-apl_pwl_slope(&fns->f[APL_PAP_I1], v) +
                    apl_pwl_slope(&fns->f[APL_PAP_I3], v) * N[i] / D[i]) * scale;
        if (pos[i].row)
            g -= apl_pwl_slope(&fns->f[APL_PAP_I2], v) * F[i];
        grad_aux[pos[i].k] = (float)g;
    }
}

apl_status apl_pap_begin(const apl_problem *p, int threads, apl_pap_fns *fns, apl_pap_rows *sel,
                         apl_pap_pos **pos, size_t *np, apl_result *res, float *grad,
                         apl_error *err)
{
    apl_pap_fns_init(p->params, p->param_rows, fns);
    apl_status st = apl_pap_select(p->logits, p->targets, p->n, p->topk, threads, sel, err);
    if (st == APL_OK)
        st = apl_pap_gather(p, fns, sel, pos, np, err);
    if (st != APL_OK)
        return st;
    *res = (apl_result){.positives = *np,
                        .valid_negatives = apl_pap_negative_rows(sel, *pos, *np)};
    if (*np == 0) /* loss 0, every gradient 0 */
        memset(grad, 0, p->n * sizeof *grad);
    return APL_OK;
}
