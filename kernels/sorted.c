/* sorted.c: the O(M log |P|) algorithm of the SPEC's "Cost" section, on the CPU.
 *
 * Only the positives are sorted. Their 2|P| ramp ends s_i -+ delta, merged and sorted, cut the
 * logit axis into segments [O_k, O_k+1). Pass 1 streams over the elements once: each valid
 * negative finds its segment (a lookup table over a uniform grid, search only in dense cells) and
 * adds its count and its offset x - O_k (small, non-negative) to that segment's histogram.
 * Prefix sums over segments give every b_i (and a_i from the positives' own histogram). After
 * the O(|P|) recurrence, G(x) is linear inside each segment, G = alpha_k + beta_k (x - O_k), and
 * pass 2 evaluates it per negative. Every O(|P|) step is in double; sums where no ramp window is
 * open are exactly 0, so the gradient's zero pattern is exact.
 */
#include "cpu_common.h"
#include "kernels.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const double *O;  /* breakpoints, ascending, S of them */
    size_t S;
    double base;      /* O[0] = min positive - delta */
    double inv_cell;  /* cells per unit logit */
    size_t cells;
    uint32_t *lo, *hi; /* segments holding the first and the last point of each cell */
} seg_index;

/* Index k of the segment holding x, i.e. O[k] <= x < O[k+1] (k = S-1 past the last one).
 * Requires x >= O[0]. */
static inline size_t find_segment(const seg_index *ix, double x)
{
    const double *O = ix->O;
    double c = (x - ix->base) * ix->inv_cell;
    if (!(c < (double)ix->cells))
        c = (double)(ix->cells - 1);
    size_t cell = (size_t)c;
    /* Last m in [lo, hi] with O[m] <= x, without data-dependent branches: most cells hold one
     * segment and skip the loop, dense cells halve the range with conditional moves. */
    size_t k = ix->lo[cell], len = ix->hi[cell] - k + 1;
    while (len > 1) {
        size_t half = len / 2;
        k = O[k + half] <= x ? k + half : k;
        len -= half;
    }
    /* The cell's bounds were rounded: step to the exact segment (usually zero steps). */
    while (k + 1 < ix->S && O[k + 1] <= x)
        k++;
    while (k > 0 && O[k] > x)
        k--;
    return k;
}

/* Elements are filtered a chunk at a time: a vectorised pass marks the valid negatives
 * (t = 0, s >= thr), then the marks are read eight at a time, so the 90% of elements a late or
 * mid distribution prunes cost neither a branch nor a store each. */
enum { CHUNK = 4096 };

static size_t valid_in_chunk(const float *s, const int8_t *t, size_t len, float thr,
                             uint16_t *list)
{
    uint8_t mark[CHUNK];
    for (size_t q = 0; q < len; q++)
        mark[q] = (uint8_t)((t[q] == 0) & (s[q] >= thr));
    size_t m = 0, q = 0;
    for (; q + 8 <= len; q += 8) {
        uint64_t w;
        memcpy(&w, mark + q, 8);
        for (; w; w &= w - 1) /* one set bit per marked byte */
            list[m++] = (uint16_t)(q + ((unsigned)__builtin_ctzll(w) >> 3));
    }
    for (; q < len; q++) {
        list[m] = (uint16_t)q;
        m += mark[q];
    }
    return m;
}

static size_t upper_bound(const double *O, size_t S, double x) /* first m with O[m] > x */
{
    size_t l = 0, r = S;
    while (l < r) {
        size_t m = l + (r - l) / 2;
        if (O[m] <= x)
            l = m + 1;
        else
            r = m;
    }
    return l;
}

static size_t lower_bound(const double *O, size_t S, double x) /* first m with O[m] >= x */
{
    size_t l = 0, r = S;
    while (l < r) {
        size_t m = l + (r - l) / 2;
        if (O[m] < x)
            l = m + 1;
        else
            r = m;
    }
    return l;
}

/* About 8 cells per segment: most cells then hold at most one breakpoint. */
static int seg_index_init(seg_index *ix, const double *O, size_t S)
{
    ix->O = O;
    ix->S = S;
    ix->base = O[0];
    ix->cells = 8 * S < 256 ? 256 : 8 * S;
    ix->inv_cell = (double)ix->cells / (O[S - 1] - O[0]); /* O[S-1] - O[0] >= 2 delta > 0 */
    ix->lo = malloc(ix->cells * sizeof *ix->lo);
    ix->hi = malloc(ix->cells * sizeof *ix->hi);
    if (!ix->lo || !ix->hi)
        return -1;
    double width = (O[S - 1] - O[0]) / (double)ix->cells;
    for (size_t c = 0; c < ix->cells; c++) {
        ix->lo[c] = (uint32_t)(upper_bound(O, S, O[0] + (double)c * width) - 1);
        size_t h = upper_bound(O, S, O[0] + (double)(c + 1) * width);
        ix->hi[c] = (uint32_t)(h ? h - 1 : 0);
    }
    return 0;
}

typedef struct {
    double *count;  /* negatives (or positives) per segment; integers, exact in double */
    double *offset; /* sum of x - O_k over the segment */
} histogram;

/* b(t) for t = s_i, from segment prefix sums: every point at or above U_i = s_i + delta adds 1,
 * every point in [L_i, U_i) adds (x - L_i) / (2 delta), summed as offsets within segments plus
 * count * (O_k - L_i). Empty windows give exactly 0. */
static void window_sums(const histogram *h, const double *O, size_t S, const size_t *l,
                        const size_t *u, const double *L, size_t np, double delta, double *out,
                        double *pc, double *pd, double *pco)
{
    pc[0] = pd[0] = pco[0] = 0.0;
    for (size_t k = 0; k < S; k++) {
        pc[k + 1] = pc[k] + h->count[k];
        pd[k + 1] = pd[k] + h->offset[k];
        pco[k + 1] = pco[k] + h->count[k] * (O[k] - O[0]);
    }
    for (size_t i = 0; i < np; i++) {
        double full = pc[S] - pc[u[i]];
        double part = (pd[u[i]] - pd[l[i]]) + (pco[u[i]] - pco[l[i]]) -
                      (pc[u[i]] - pc[l[i]]) * (L[i] - O[0]);
        out[i] = full + part / (2.0 * delta);
    }
}

APL_VARIANT_FN(apl_sorted)
{
    if (p->loss == APL_LOSS_PAP)
        return apl_pap_sorted(p, out, res, err);
    const apl_problem *prob = p;
    const float *logits = p->logits;
    const int8_t *targets = p->targets;
    const size_t n = p->n;
    const double delta = p->delta;
    float *grad = out->grad;
    apl_pos *pos;
    size_t np;
    apl_status st = apl_gather_positives(logits, targets, n, &pos, &np, grad, res, err);
    if (st != APL_OK || np == 0)
        return st;
    if (!apl_segments_in_range(pos[0].s, pos[np - 1].s, np, delta)) {
        free(pos);
        return apl_pruned(prob, out, res, err);
    }
    const size_t S = 2 * np;
    /* One allocation for every O(|P|) array. */
    const size_t nd = S /* O */ + 4 * S /* hist */ + 3 * (S + 1) /* prefix */ + 6 * np /* L a b w
                      omp spare */ + 2 * S /* alpha beta */;
    double *mem = malloc(nd * sizeof(double));
    size_t *lu = malloc(2 * np * sizeof(size_t));
    seg_index ix = {0};
    if (!mem || !lu) {
        free(mem), free(lu), free(pos);
        return apl_fail(err, APL_ERR_NOMEM, "sorted: cannot allocate work for %zu positives", np);
    }
    memset(mem, 0, nd * sizeof(double));
    double *O = mem, *h = mem + S;
    histogram hn = {h, h + S}, hp = {h + 2 * S, h + 3 * S};
    double *pc = h + 4 * S, *pd = pc + S + 1, *pco = pd + S + 1;
    double *L = pco + S + 1, *a = L + np, *b = a + np, *w = b + np, *omp = w + np;
    double *alpha = omp + 2 * np, *beta = alpha + S;
    size_t *l = lu, *u = lu + np;

    /* Breakpoints: merge the two ascending lists s_i - delta and s_i + delta. */
    for (size_t i = 0, j = 0, k = 0; k < S; k++) {
        double lo = i < np ? (double)pos[i].s - delta : 0, hi = (double)pos[j].s + delta;
        O[k] = (i < np && lo <= hi) ? (i++, lo) : (j++, hi);
    }
    for (size_t i = 0; i < np; i++) {
        L[i] = (double)pos[i].s - delta;
        l[i] = lower_bound(O, S, L[i]);
        u[i] = lower_bound(O, S, (double)pos[i].s + delta);
    }
    if (seg_index_init(&ix, O, S) != 0) {
        free(ix.lo), free(ix.hi), free(mem), free(lu), free(pos);
        return apl_fail(err, APL_ERR_NOMEM, "sorted: cannot allocate the segment lookup table");
    }

    /* Pass 1: histograms of the valid negatives, and of the positives for a_i. */
    const float thr = apl_prune_threshold(pos[0].s, delta);
    size_t nv = 0;
    uint16_t list[CHUNK];
    for (size_t j0 = 0; j0 < n; j0 += CHUNK) {
        size_t len = n - j0 < CHUNK ? n - j0 : CHUNK;
        size_t m = valid_in_chunk(logits + j0, targets + j0, len, thr, list);
        for (size_t q = 0; q < m; q++) {
            double x = (double)logits[j0 + list[q]];
            size_t k = find_segment(&ix, x);
            hn.count[k] += 1.0;
            hn.offset[k] += x - O[k];
        }
        nv += m;
    }
    for (size_t i = 0; i < np; i++) {
        size_t k = find_segment(&ix, (double)pos[i].s);
        hp.count[k] += 1.0;
        hp.offset[k] += (double)pos[i].s - O[k];
    }
    res->valid_negatives = nv;
    window_sums(&hn, O, S, l, u, L, np, delta, b, pc, pd, pco);
    window_sums(&hp, O, S, l, u, L, np, delta, a, pc, pd, pco);
    for (size_t i = 0; i < np; i++)
        a[i] += 0.5;
    res->loss = apl_precision_recurrence(np, a, b, w, omp);

    /* G per segment: F = weights of windows already closed, W and A = sums over open windows of
     * w_i and w_i (O_k - L_i). Events are sorted by segment because l and u ascend with i. */
    {
        double F = 0.0, W = 0.0, A = 0.0;
        size_t open = 0, ni = 0, nu = 0;
        const double inv2d = 1.0 / (2.0 * delta), inv_np = 1.0 / (double)np;
        for (size_t k = 0; k < S; k++) {
            if (k > 0)
                A += W * (O[k] - O[k - 1]);
            /* Entrants first: if s_i -+ delta round to one double (|s_i| >> delta), the window
             * opens and closes at the same k and `open` must not go below zero. */
            for (; ni < np && l[ni] == k; ni++, open++)
                W += w[ni];
            for (; nu < np && u[nu] == k; nu++, open--) {
                A -= w[nu] * (O[k] - L[nu]);
                W -= w[nu];
                F += w[nu];
            }
            if (open == 0)
                W = A = 0.0; /* no window open: exactly zero, not a rounding residue */
            alpha[k] = (F + A * inv2d) * inv_np;
            beta[k] = W * inv2d * inv_np;
        }
    }

    /* Pass 2: every element's gradient; a chunk is zeroed while still in cache, then its valid
     * negatives get G. */
    for (size_t j0 = 0; j0 < n; j0 += CHUNK) {
        size_t len = n - j0 < CHUNK ? n - j0 : CHUNK;
        size_t m = valid_in_chunk(logits + j0, targets + j0, len, thr, list);
        memset(grad + j0, 0, len * sizeof *grad);
        for (size_t q = 0; q < m; q++) {
            double x = (double)logits[j0 + list[q]];
            size_t k = find_segment(&ix, x);
            grad[j0 + list[q]] = (float)(alpha[k] + beta[k] * (x - O[k]));
        }
    }
    for (size_t i = 0; i < np; i++)
        grad[pos[i].index] = (float)(-omp[i] / (double)np);

    free(ix.lo), free(ix.hi), free(mem), free(lu), free(pos);
    return APL_OK;
}
