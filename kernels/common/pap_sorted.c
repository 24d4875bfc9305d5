/* pap_sorted.c: Parameterized AP Loss in O(M log |P|), the exact segment formulation of
 * docs/SPEC_PAP.md ("An exact fast formulation exists").
 *
 * Every positive i has the breakpoints B_im = s_i + T_m (T_m = 2 X_m - 1) of H2 and of H1 (or
 * s_i itself when H1 is the 4-row step). All of them, merged, sorted and deduplicated, are O;
 * segment k is (O_k-1, O_k] (closed on the right, as a breakpoint takes the left piece), segment
 * 0 is everything at or below O_0 and segment S everything above O_S-1. In logit space each
 * function is linear on each piece, so one pass over the rows collects per segment a count, the
 * sum of offsets x - O_k-1 and the count of rows exactly on O_k (the foot of a window gets the
 * gradient of piece 0); prefix sums over segments then give N_i, D_i and Q_i with twelve range
 * sums per positive. The row gradient is G_k (+ Gfoot_k on a foot), from prefix sums of c over
 * the sorted positives: exactly 0 outside every window.
 *
 * Exact classification (the gradient jumps at a breakpoint): rows and breakpoints are compared
 * in double, which is the contract's float64 rule h > X_m when every B_im is exact and every
 * logit is 0 or of magnitude in [2^-29, 2^26]. Outside that range this variant hands the call
 * to naive.
 *
 * Determinism: the rows are split into fixed blocks (their bounds depend on M and |P| only),
 * each with its own histogram summed in element order, and the blocks are added in block
 * order; every O(|P|) step is serial. Any thread count gives the same bits.
 *
 * Prefix sums of count * (O_k-1 - O_0) reach |rows| * span, and a range sum subtracts two of
 * them: they are kept in double-double, so a steep piece (RPN's H2 rises with slope 464) does
 * not amplify their rounding. */
#include "kernels.h"
#include "pap_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- double-double: sums whose rounding stays relative to the result ---- */
typedef struct {
    double hi, lo;
} dd;
static inline dd fast_two_sum(double a, double b)
{
    double s = a + b;
    return (dd){s, b - (s - a)};
}
static inline dd dd_add(dd a, dd b)
{
    double s = a.hi + b.hi, bb = s - a.hi;
    double e = (a.hi - (s - bb)) + (b.hi - bb);
    return fast_two_sum(s, e + a.lo + b.lo);
}
static inline dd dd_sub(dd a, dd b)
{
    return dd_add(a, (dd){-b.hi, -b.lo});
}
static inline dd dd_mul(dd a, double b)
{
    double p = a.hi * b;
    return fast_two_sum(p, fma(a.hi, b, -p) + a.lo * b);
}
static inline dd dd_of(double a)
{
    return (dd){a, 0.0};
}
static inline double dd_val(dd a)
{
    return a.hi + a.lo;
}

/* ---- segments: O ascending and distinct, S of them; find() = first k with O_k >= x ---- */
typedef struct {
    const double *O;
    size_t S;
    double base, inv;
    size_t cells;
    size_t *start; /* cells + 1: first k with O_k >= the cell's left end (a hint) */
} segments;

static size_t lower_bound(const double *O, size_t lo, size_t hi, double x)
{
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        if (O[m] < x)
            lo = m + 1;
        else
            hi = m;
    }
    return lo;
}

static int segments_init(segments *g, const double *O, size_t S)
{
    g->O = O;
    g->S = S;
    g->base = O[0];
    g->cells = 4 * S < 256 ? 256 : 4 * S;
    g->inv = (double)g->cells / (O[S - 1] - O[0]); /* > 0: a window is 2 wide */
    g->start = malloc((g->cells + 1) * sizeof *g->start);
    if (!g->start)
        return -1;
    const double width = (O[S - 1] - O[0]) / (double)g->cells;
    for (size_t c = 0; c <= g->cells; c++)
        g->start[c] = lower_bound(O, 0, S, O[0] + (double)c * width);
    return 0;
}

static inline size_t find(const segments *g, double x)
{
    const double *O = g->O;
    if (x <= O[0])
        return 0;
    if (x > O[g->S - 1])
        return g->S;
    double c = (x - g->base) * g->inv;
    size_t cell = c < (double)g->cells ? (size_t)c : g->cells - 1;
    size_t k = lower_bound(O, g->start[cell], g->start[cell + 1], x);
    /* The cells' ends were rounded: step to the exact answer (almost always no step). */
    while (k < g->S && O[k] < x)
        k++;
    while (k > 0 && O[k - 1] >= x)
        k--;
    return k;
}

/* Per-segment sums (S + 1 entries each): rows, their offsets x - O_k-1, rows exactly on O_k. */
typedef struct {
    double *count, *offset, *tie;
} histogram;

static inline void hist_add(const histogram *h, const segments *g, size_t k, double x, double w)
{
    h->count[k] += w;
    if (k > 0)
        h->offset[k] += w * (x - g->O[k - 1]);
    if (k < g->S && x == g->O[k])
        h->tie[k] += w;
}

/* Prefix sums (S + 2 entries each) of count, offset and count * (O_k-1 - O_0). */
typedef struct {
    dd *c, *e, *co;
    const double *tie;
} prefix;

static void prefix_init(prefix *pf, const histogram *h, const double *O, size_t S)
{
    pf->c[0] = pf->e[0] = pf->co[0] = dd_of(0.0);
    for (size_t k = 0; k <= S; k++) {
        double rel = k > 0 ? O[k - 1] - O[0] : 0.0;
        pf->c[k + 1] = dd_add(pf->c[k], dd_of(h->count[k]));
        pf->e[k + 1] = dd_add(pf->e[k], dd_of(h->offset[k]));
        pf->co[k + 1] = dd_add(pf->co[k], dd_mul(dd_of(h->count[k]), rel));
    }
    pf->tie = h->tie;
}

/* sum over the rows of weight * f(h) for one positive, f through the breakpoints O_lo[m]
 * (m = 0..5); *q (when not NULL) gets sum of weight * f'(h) where the clamp passes. */
static double window_sum(const prefix *pf, const apl_pwl *f, const size_t *lo, const double *O,
                         size_t S, double *q)
{
    double val = 0.0, slope = 0.0;
    for (int m = 0; m < APL_PAP_PIECES; m++) {
        size_t a = lo[m] + 1, b = lo[m + 1] + 1; /* segments lo_m + 1 .. lo_m+1 */
        dd cnt = dd_sub(pf->c[b], pf->c[a]);
        /* sum of w (x - B_m) = offsets + sum of w (O_k-1 - O_0) - count (B_m - O_0) */
        dd off = dd_add(dd_sub(pf->e[b], pf->e[a]),
                        dd_sub(dd_sub(pf->co[b], pf->co[a]), dd_mul(cnt, O[lo[m]] - O[0])));
        val += f->Y[m] * dd_val(cnt) + 0.5 * f->sigma[m] * dd_val(off);
        slope += f->sigma[m] * dd_val(cnt);
    }
    val += f->Y[5] * dd_val(dd_sub(pf->c[S + 1], pf->c[lo[5] + 1])); /* above the window */
    if (q)
        *q = slope + f->sigma[0] * pf->tie[lo[0]]; /* rows on the foot */
    return val;
}

/* #{i : lo_m(i) < k}; lo_m(i) ascends with i (the positives are sorted). */
static size_t count_below(const size_t *lo, size_t per, size_t m, size_t np, size_t k)
{
    size_t l = 0, r = np;
    while (l < r) {
        size_t mid = l + (r - l) / 2;
        if (lo[per * mid + m] < k)
            l = mid + 1;
        else
            r = mid;
    }
    return l;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The logits for which the double comparisons are the float64 rule (see the top comment). */
static inline int logit_in_range(float s)
{
    float a = fabsf(s);
    return a == 0.0f || (a >= 0x1p-29f && a <= 0x1p26f);
}

/* ---- the O(|P|) phases, shared with cuda_pap (pap_common.h, "segment phases") ---- */

struct apl_pap_seg {
    const apl_pap_fns *fns;
    const apl_pap_pos *pos;
    size_t np, per, S; /* per: breakpoints per positive (6 of H2, then 6 of H1 or 1) */
    double *O;         /* S distinct breakpoints, ascending */
    size_t *lo;        /* lo[per i + m]: index of B_im in O */
    segments g;
};

void apl_pap_seg_free(apl_pap_seg *q)
{
    if (q)
        free(q->O), free(q->lo), free(q->g.start), free(q);
}

const double *apl_pap_seg_breakpoints(const apl_pap_seg *q, size_t *S)
{
    *S = q->S;
    return q->O;
}

size_t apl_pap_seg_find(const apl_pap_seg *q, double x)
{
    return find(&q->g, x);
}

int apl_pap_logit_exact(float s)
{
    return logit_in_range(s);
}

apl_status apl_pap_seg_build(const apl_pap_fns *fns, const apl_pap_pos *pos, size_t np,
                             apl_pap_seg **out, apl_error *err)
{
    *out = NULL;
    const apl_pwl *H2 = &fns->f[APL_PAP_H2], *H1 = &fns->f[APL_PAP_H1];
    /* Breakpoints: H2's six per positive, H1's six (or s_i for the step); exact or fall back. */
    const int n1 = fns->h1_step ? 1 : APL_PAP_POINTS;
    const size_t per = APL_PAP_POINTS + (size_t)n1;
    apl_pap_seg *q = calloc(1, sizeof *q);
    double *O = malloc(per * np * sizeof *O);
    size_t *lo = malloc(per * np * sizeof *lo);
    if (!q || !O || !lo) {
        free(q), free(O), free(lo);
        return apl_fail(err, APL_ERR_NOMEM, "pap: cannot allocate %zu breakpoints", per * np);
    }
    *q = (apl_pap_seg){.fns = fns, .pos = pos, .np = np, .per = per, .O = O, .lo = lo};
    int exact = 1;
    size_t S = 0;
    for (size_t i = 0; i < np; i++) {
        exact &= logit_in_range((float)pos[i].s);
        for (size_t m = 0; m < per; m++) {
            double T = m < APL_PAP_POINTS ? H2->T[m] : (fns->h1_step ? 0.0 : H1->T[m - 6]);
            double B = pos[i].s + T;
            double bb = B - pos[i].s; /* TwoSum: the rounding error of s_i + T is 0 */
            exact &= (pos[i].s - (B - bb)) + (T - bb) == 0.0;
            O[S++] = B;
        }
    }
    if (!exact) { /* APL_OK with no plan: the caller hands the call to naive */
        apl_pap_seg_free(q);
        return APL_OK;
    }
    qsort(O, S, sizeof *O, by_value);
    size_t u = 0;
    for (size_t k = 0; k < S; k++)
        if (u == 0 || O[k] != O[u - 1])
            O[u++] = O[k];
    q->S = S = u;
    for (size_t i = 0; i < np; i++)
        for (size_t m = 0; m < per; m++) {
            double T = m < APL_PAP_POINTS ? H2->T[m] : (fns->h1_step ? 0.0 : H1->T[m - 6]);
            lo[per * i + m] = lower_bound(O, 0, S, pos[i].s + T);
        }
    if (segments_init(&q->g, O, S) != 0) {
        q->g.start = NULL;
        apl_pap_seg_free(q);
        return apl_fail(err, APL_ERR_NOMEM, "pap: cannot allocate the segment index");
    }
    *out = q;
    return APL_OK;
}

apl_status apl_pap_seg_middle(const apl_pap_seg *q, const double *hist, double *loss, double *Gk,
                              double *Gf, double *grad_pos, float *grad_aux, apl_error *err)
{
    const apl_pap_fns *fns = q->fns;
    const apl_pwl *H2 = &fns->f[APL_PAP_H2], *H1 = &fns->f[APL_PAP_H1];
    const apl_pap_pos *pos = q->pos;
    const size_t np = q->np, per = q->per, S = q->S, S1 = S + 1, *lo = q->lo;
    const double *O = q->O;
    const segments *g = &q->g;
    /* Two histograms (unit weights, IoU weights), their prefixes, the per-positive values. */
    double *hmem = malloc(2 * 3 * S1 * sizeof *hmem);
    dd *pmem = malloc(2 * 3 * (S + 2) * sizeof *pmem);
    double *mem = malloc((6 * np + 1 + S1) * sizeof *mem);
    size_t *kpos = malloc(np * sizeof *kpos);
    if (!hmem || !pmem || !mem || !kpos) {
        free(hmem), free(pmem), free(mem), free(kpos);
        return apl_fail(err, APL_ERR_NOMEM, "pap: cannot allocate histograms for %zu segments",
                        S);
    }
    double *hu = hmem, *hw = hu + 3 * S1;
    memcpy(hu, hist, 3 * S1 * sizeof *hu);
    memcpy(hw, hist, 3 * S1 * sizeof *hw);
    histogram unit = {hu, hu + S1, hu + 2 * S1}, weighted = {hw, hw + S1, hw + 2 * S1};
    double *N = mem, *D = N + np, *Q = D + np, *c = Q + np, *F = c + np, *cc = F + np;
    /* The positive rows, in sorted order: weight 1 for D, w_i = 1 - I2(v_i) for N. */
    for (size_t i = 0; i < np; i++) {
        kpos[i] = find(g, pos[i].s);
        if (pos[i].row) {
            hist_add(&unit, g, kpos[i], pos[i].s, 1.0);
            hist_add(&weighted, g, kpos[i], pos[i].s, pos[i].w);
        }
    }
    prefix pu = {pmem, pmem + (S + 2), pmem + 2 * (S + 2), NULL};
    prefix pw = {pmem + 3 * (S + 2), pmem + 4 * (S + 2), pmem + 5 * (S + 2), NULL};
    prefix_init(&pu, &unit, O, S);
    prefix_init(&pw, &weighted, O, S);

    for (size_t i = 0; i < np; i++) {
        const size_t *l = lo + per * i;
        N[i] = window_sum(&pw, H2, l, O, S, &Q[i]);
        if (fns->h1_step) /* rows above s_i, and half of those on it */
            D[i] = dd_val(dd_sub(pu.c[S + 1], pu.c[l[6] + 1])) + 0.5 * pu.tie[l[6]];
        else
            D[i] = window_sum(&pu, H1, l + 6, O, S, NULL);
    }
    *loss = apl_pap_loss(fns, pos, np, N, D, c);

    /* G_k = sum_m sigma_m/2 sum{c_i : lo_m(i) < k <= lo_m+1(i)}: for each m the i form the run
     * [a_m, b_m) of the sorted positives, a difference of prefix sums of c (equal indices give
     * exactly 0). Gfoot_k = sigma_0/2 sum{c_i : lo_0(i) = k}. F(O_k) by its slopes G_k. */
    double *FO = cc + np + 1;
    cc[0] = 0.0;
    for (size_t i = 0; i < np; i++)
        cc[i + 1] = cc[i] + c[i];
    {
        size_t a[APL_PAP_PIECES] = {0}, bnd[APL_PAP_PIECES] = {0}, f0 = 0, f1 = 0;
        for (size_t k = 0; k <= S; k++) {
            double sum = 0.0;
            for (int m = 0; m < APL_PAP_PIECES; m++) {
                while (bnd[m] < np && lo[per * bnd[m] + (size_t)m] < k)
                    bnd[m]++;
                while (a[m] < np && lo[per * a[m] + (size_t)m + 1] < k)
                    a[m]++;
                if (bnd[m] > a[m])
                    sum += H2->sigma[m] * (cc[bnd[m]] - cc[a[m]]);
            }
            Gk[k] = 0.5 * sum;
            while (f1 < np && lo[per * f1] <= k)
                f1++;
            while (f0 < np && lo[per * f0] < k)
                f0++;
            Gf[k] = f1 > f0 ? 0.5 * H2->sigma[0] * (cc[f1] - cc[f0]) : 0.0;
            FO[k] = k == 0 ? 0.0 : (k < S ? FO[k - 1] + Gk[k] * (O[k] - O[k - 1]) : FO[k - 1]);
        }
    }

    /* Positives: the row part minus the column part (c_i/2) Q_i, in double where they cancel.
     * The self pair (h = 1/2, piece ms) adds w_i c_i sigma_ms/2 to both: it is left out of both,
     * the row part by summing the runs of c around i (equal indices give exactly 0), so a
     * positive alone in its window gets exactly 0, as the contract's autograd does. */
    const int ms = apl_pwl_piece(H2, 0.5);
    for (size_t i = 0; i < np; i++) {
        double x = pos[i].s, row = 0.0, qi = Q[i];
        size_t k = kpos[i];
        F[i] = k == 0 ? 0.0 : FO[k - 1] + Gk[k] * (x - O[k - 1]);
        if (pos[i].row) {
            double sum = 0.0;
            for (int m = 0; m < APL_PAP_PIECES; m++) {
                size_t b = count_below(lo, per, (size_t)m, np, k);
                size_t a = count_below(lo, per, (size_t)m + 1, np, k);
                if (b <= a)
                    continue;
                sum += H2->sigma[m] * (a <= i && i < b ? (cc[i] - cc[a]) + (cc[b] - cc[i + 1])
                                                       : cc[b] - cc[a]);
            }
            row = pos[i].w * (0.5 * sum + (k < S && x == O[k] ? Gf[k] : 0.0));
            qi -= H2->sigma[ms] * pos[i].w;
        }
        grad_pos[i] = row - 0.5 * c[i] * qi;
    }
    if (grad_aux)
        apl_pap_grad_aux(fns, pos, np, N, D, F, grad_aux);
    free(hmem), free(pmem), free(mem), free(kpos);
    return APL_OK;
}

APL_VARIANT_FN(apl_pap_sorted)
{
    const int threads = apl_threads(p->threads);
    const float *s = p->logits;
    const int8_t *t = p->targets;
    const size_t n = p->n;
    float *grad = out->grad;
    apl_pap_fns fns;
    apl_pap_rows sel;
    apl_pap_pos *pos;
    size_t np;
    apl_status st = apl_pap_begin(p, threads, &fns, &sel, &pos, &np, res, grad, err);
    if (st != APL_OK || np == 0)
        return st;
    apl_pap_seg *q;
    if ((st = apl_pap_seg_build(&fns, pos, np, &q, err)) != APL_OK) {
        free(pos);
        return st;
    }
    if (!q) { /* a breakpoint not exact in double */
        free(pos);
        return apl_pap_naive(p, out, res, err);
    }
    const size_t S = q->S, S1 = S + 1;
    const segments *g = &q->g;

    /* Pass 1 over the negative rows: per-block histograms, fixed blocks. */
    size_t nb = (n + 65535) / 65536;
    if (nb > 64)
        nb = 64;
    size_t cap = ((size_t)1 << 24) / (3 * S1);
    if (nb > cap)
        nb = cap > 0 ? cap : 1;
    /* Block histograms, then their sum; then G, Gfoot and the positives' gradients. */
    double *hmem = calloc((nb + 1) * 3 * S1, sizeof *hmem);
    double *gmem = malloc((2 * S1 + np) * sizeof *gmem);
    unsigned char *bad = calloc(nb, 1);
    if (!hmem || !gmem || !bad) {
        free(hmem), free(gmem), free(bad), apl_pap_seg_free(q), free(pos);
        return apl_fail(err, APL_ERR_NOMEM, "sorted (pap): cannot allocate histograms for %zu "
                        "segments", S);
    }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (size_t b = 0; b < nb; b++) {
        double *hb = hmem + 3 * S1 * b;
        histogram h = {hb, hb + S1, hb + 2 * S1};
        const size_t j0 = n / nb * b + (b < n % nb ? b : n % nb);
        const size_t j1 = j0 + n / nb + (b < n % nb);
        int ok = 1;
        for (size_t j = j0; j < j1; j++) {
            if (t[j] != 0 || !apl_pap_is_row(&sel, s[j], 0, j))
                continue;
            ok &= logit_in_range(s[j]);
            double x = (double)s[j];
            hist_add(&h, g, find(g, x), x, 1.0);
        }
        bad[b] = (unsigned char)!ok;
    }
    int exact = 1;
    for (size_t b = 0; b < nb; b++)
        exact &= !bad[b];
    free(bad);
    if (!exact) {
        free(hmem), free(gmem), apl_pap_seg_free(q), free(pos);
        return apl_pap_naive(p, out, res, err);
    }
    double *hsum = hmem + 3 * S1 * nb;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t k = 0; k < 3 * S1; k++) {
        double sum = 0.0;
        for (size_t b = 0; b < nb; b++)
            sum += hmem[3 * S1 * b + k];
        hsum[k] = sum;
    }
    double *Gk = gmem, *Gf = Gk + S1, *gpos = Gf + S1;
    st = apl_pap_seg_middle(q, hsum, &res->loss, Gk, Gf, gpos, out->grad_aux, err);
    if (st != APL_OK) {
        free(hmem), free(gmem), apl_pap_seg_free(q), free(pos);
        return st;
    }
    const double *O = q->O;

    /* Pass 2: every element's gradient; positives are overwritten below. */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t j = 0; j < n; j++) {
        float v = 0.0f;
        if (t[j] == 0 && apl_pap_is_row(&sel, s[j], 0, j)) {
            double x = (double)s[j];
            size_t k = find(g, x);
            v = (float)(k < S && x == O[k] ? Gk[k] + Gf[k] : Gk[k]);
        }
        grad[j] = v;
    }
    for (size_t i = 0; i < np; i++)
        grad[pos[i].index] = (float)gpos[i];
    free(hmem), free(gmem), apl_pap_seg_free(q), free(pos);
    return APL_OK;
}
