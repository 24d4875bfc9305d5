/* sorted_phases.c: the phases of the sorted algorithm (include/aploss/phases.h): plan,
 * histogram, finish (window sums, AP weights, coefficients), apply.
 *
 * Determinism: every per-element result (an element's segment, its fixed-point offset, its
 * gradient) is a function of that element alone, and every sum over elements is an integer sum.
 * So the split of the elements over threads, SIMD lanes or processes cannot change a bit. The
 * AVX2 kernels compute exactly what the portable ones do (the segment is the unique k with
 * O[k] <= x < O[k+1]; the offset and the gradient are the same IEEE operations in the same
 * order, no FMA), so the choice of kernel cannot either.
 */
#include "aploss/phases.h"
#include "cpu_common.h"
#include "kernels.h"
#include "segment_index.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define APL_HAVE_AVX2_KERNELS 1
#endif

__extension__ typedef unsigned __int128 u128;
/* The memo may live in the caller's float gradient array: accessed through a type that may
 * alias anything. */
typedef uint32_t __attribute__((may_alias)) memo_t;
typedef uint16_t __attribute__((may_alias)) memo16_t;

#define LIMB_MASK ((UINT64_C(1) << APL_HIST_LIMB_BITS) - 1)
#define QMAX 0x1p52 - 1.0 /* largest offset: 2^52 - 1, so q + 2^52 stays in [2^52, 2^53) */
/* Below this many elements per thread, threads cost more than they save. */
#define MIN_PER_THREAD 65536
/* Private per-thread histograms up to this many segments; atomic adds above. */
#define PRIVATE_MAX_SEGMENTS 65536
/* A few segments take a quarter to a half of all valid negatives, and consecutive adds to one
 * counter wait on each other through memory: element j adds to copy j % COPIES of the thread's
 * histogram, so four chains run side by side (up to COPIES_MAX_SEGMENTS segments). */
#define COPIES 4
#define COPIES_MAX_SEGMENTS 8192
/* From this many elements (16 MiB of gradient) apply writes with non-temporal stores: the array
 * is far larger than the caches, and reading it for ownership would add a third of the traffic. */
#define STREAM_MIN ((size_t)1 << 22)

/* The exact cell table. Finding an element's segment dominates the per-element work, and
 * segment_index.h's grid still has to check O[k] <= x < O[k+1] (two gathers and a branch per
 * element). Elements are floats, and the cell computation below is monotone in x, so the floats
 * that fall in a cell form an interval: the plan finds, for every breakpoint O[m], the cells of
 * the last float below it and the first float at or above it. Where those differ, no cell holds
 * floats from both sides of O[m]; a cell that holds both for some m is marked mixed (-1). Every
 * float in an unmixed cell then has the same segment, stored in the table: one lookup, no check,
 * exact. Mixed cells (at most S - 1 of the cells, table_cells) take apl_seg_find. The portable
 * and the AVX2 kernels compute the cell with the same IEEE operations, so they agree bit for
 * bit (and the segment does not depend on how it was found anyway). */
#define CELLS_PER_SEGMENT 16
#define CELLS_MIN 256
#define CELLS_MAX ((size_t)1 << 22) /* 16 MiB of table; more segments than cells: mostly mixed */
#define CELLS_PER_SEGMENT_DENSE 64
#define CELLS_DENSE_MAX ((size_t)1 << 18) /* 1 MiB of table */
typedef struct {
    const int32_t *tab; /* cells + 1 entries: the segment, or -1 (mixed) */
    float base, inv;    /* cell of x: (x - base) * inv in float, clamped to [0, cells], truncated */
    float top;          /* (float)cells, exact */
} cell_table;

/* The plan and its arrays, in one allocation. */
typedef struct {
    apl_sorted_plan pub;
    apl_seg_index ix;
    cell_table ct;
    /* S: gamma_k = alpha_k - beta_k O_k, written with alpha and beta. Apply evaluates
     * G(x) = gamma_k + beta_k x in double: two lookups per element instead of three. The
     * rounding of beta_k O_k is below 2^-52 |beta_k O_k| <= 2^-53 (|O_k| / delta) max G, far
     * inside the contract even at the range's limit (|O_k| <= 2^24 delta); where no window is
     * open alpha_k = beta_k = 0 and G is exactly 0, and past every window beta_k = 0 and G is
     * alpha_k exactly. */
    double *gamma;
} plan_block;

/* In float, eight lanes to a vector: any monotone formula serves, the table makes it exact. */
static inline uint32_t cell_of(const cell_table *ct, float x)
{
    float r = (x - ct->base) * ct->inv;
    r = r > 0.0f ? r : 0.0f;       /* as _mm256_max_ps(r, 0) */
    r = r < ct->top ? r : ct->top; /* as _mm256_min_ps(r, top) */
    return (uint32_t)r;
}

static inline const plan_block *block_of(const apl_sorted_plan *p)
{
    return (const plan_block *)(const void *)p; /* pub is the first member */
}

/* The segment of a valid x (x >= O_0): the table's, or the search in a mixed cell. */
static inline uint64_t seg_of(const plan_block *b, float x)
{
    int32_t e = b->ct.tab[cell_of(&b->ct, x)];
    return e >= 0 ? (uint64_t)e : apl_seg_find(&b->ix, (double)x);
}

static size_t table_cells(size_t S)
{
    /* Fewer mixed cells (searched) with more cells per segment, while the table stays small
     * enough for the L2 cache (its lookups are random). */
    size_t c = S <= CELLS_DENSE_MAX / CELLS_PER_SEGMENT_DENSE ? CELLS_PER_SEGMENT_DENSE * S
               : S <= CELLS_MAX / CELLS_PER_SEGMENT          ? CELLS_PER_SEGMENT * S
                                                               : CELLS_MAX;
    return c < CELLS_MIN ? CELLS_MIN : c;
}

/* Fills tab (cells + 1 entries) for the S breakpoints O (S >= 2, O[S-1] > O[0]). */
static cell_table cell_table_fill(const double *O, size_t S, size_t cells, int32_t *tab)
{
    cell_table ct = {tab, (float)O[0], (float)((double)cells / (O[S - 1] - O[0])),
                     (float)cells};
    /* tab[c] first holds the last breakpoint whose first float at or above it lies in cell c
     * (-2: none), then the running maximum; mixed cells are marked in a second sweep. */
    for (size_t c = 0; c <= cells; c++)
        tab[c] = -2;
    tab[0] = 0; /* every valid x is at or above O_0 */
    for (size_t m = 1; m < S; m++) {
        float hi = (float)O[m]; /* the first float at or above O[m] (|O| is far below FLT_MAX) */
        if ((double)hi < O[m])
            hi = nextafterf(hi, INFINITY);
        tab[cell_of(&ct, hi)] = (int32_t)m; /* m ascends, and so do the cells */
    }
    for (size_t c = 1; c <= cells; c++)
        if (tab[c] < tab[c - 1])
            tab[c] = tab[c - 1];
    for (size_t m = 1; m < S; m++) {
        float hi = (float)O[m];
        if ((double)hi < O[m])
            hi = nextafterf(hi, INFINITY);
        float lo = nextafterf(hi, -INFINITY);
        uint32_t c = cell_of(&ct, hi);
        if (cell_of(&ct, lo) == c)
            tab[c] = -1;
    }
    /* Where a thread flushes subnormals (FTZ/DAZ, set by some frameworks per thread), x - base
     * or x itself may read as 0 there and not here: the cells such values reach search instead
     * (a few cells at most, unless the scale itself is that small). */
    const float tiny = 2.0f * FLT_MIN;
    for (uint32_t c = 0, e = cell_of(&ct, ct.base + tiny); c <= e; c++)
        tab[c] = -1;
    for (uint32_t c = cell_of(&ct, -tiny), e = cell_of(&ct, tiny); c <= e; c++)
        tab[c] = -1;
    return ct;
}

static double i128_to_double(u128 v) /* two's complement; relative error < 2^-52 */
{
    int neg = (v >> 127) != 0;
    if (neg)
        v = (u128)0 - v;
    double d = (double)(uint64_t)(v >> 64) * 0x1p64 + (double)(uint64_t)v;
    return neg ? -d : d;
}

static size_t lower_bound_d(const double *O, size_t S, double x) /* first m with O[m] >= x */
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

/* ---- per-element steps, shared by the portable and the AVX2 kernels ---- */

static inline uint64_t offset_q(double x, double Ok, double qscale)
{
    double r = rint((x - Ok) * qscale);
    if (!(r > 0.0))
        return 0;
    return (uint64_t)(r < QMAX ? r : QMAX);
}

static inline void hist_add(int64_t *h, uint64_t k, uint64_t q, int atomic)
{
    int64_t *c = h + APL_HIST_WORDS * k;
    if (atomic) {
        __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(c + 1, (int64_t)(q & LIMB_MASK), __ATOMIC_RELAXED);
        __atomic_fetch_add(c + 2, (int64_t)(q >> APL_HIST_LIMB_BITS), __ATOMIC_RELAXED);
    } else {
        c[0] += 1;
        c[1] += (int64_t)(q & LIMB_MASK);
        c[2] += (int64_t)(q >> APL_HIST_LIMB_BITS);
    }
}

static inline float eval_g(const apl_sorted_plan *p, double x, uint64_t k)
{
    return (float)(block_of(p)->gamma[k] + p->beta[k] * x);
}

/* The positive gradient of a positive with logit x: the sorted positives with that logit share
 * one value (equal logits give equal a_i, b_i and 1 - prec_i). -1: not a positive of the plan. */
static inline int64_t positive_of(const apl_sorted_plan *p, float x)
{
    size_t l = 0, r = p->np;
    while (l < r) {
        size_t m = l + (r - l) / 2;
        if (p->pos[m] < x)
            l = m + 1;
        else
            r = m;
    }
    return l < p->np && p->pos[l] == x ? (int64_t)l : -1;
}

/* Writes the gradients of the positives in [j0, j1) into out[j - j0] (after the entries were
 * zeroed); returns the first index whose positive is missing from the plan, or (size_t)-1. */
static size_t positives_range(const apl_sorted_plan *p, const float *s, const int8_t *t,
                              size_t j0, size_t j1, float *out)
{
    size_t bad = (size_t)-1;
    for (size_t j = j0; j < j1; j++)
        if (t[j] == 1) {
            int64_t i = positive_of(p, s[j]);
            if (i < 0 && bad == (size_t)-1)
                bad = j;
            out[j - j0] = i < 0 ? 0.0f : (float)p->pos_grad[i];
        }
    return bad;
}

/* ---- the memo ----
 * Both passes work in chunks of CHUNK elements counted from the start of the call's arrays, so
 * the chunks are the same for any thread count (thread ranges are whole chunks) and histogram
 * and apply may use different counts. With a memo, histogram writes one of two forms per chunk.
 * A chunk with few valid negatives is a list: a header at the chunk's first entry (the number
 * of valid negatives, MEMO_COUNT bits, and MEMO_POS when the chunk holds a positive), then for
 * each valid negative in element order its logit's bits and (segment << CHUNK_BITS) | its
 * position in the chunk. Any other chunk is codes: each element's segment, or an invalid mark
 * where it is not a valid negative. With fewer than MEMO_INVALID16 segments (and CODES16_MIN
 * elements or more), 16 bits each: the first entry is a header, MEMO_CODES16 (and
 * MEMO_CODES_POS when the chunk holds a positive), and the codes start at the first 64-byte
 * boundary after it (codes16_at; MEMO_INVALID16: invalid), so that histogram writes them in
 * whole cache lines and the memo traffic is half that of 32-bit codes. That place depends on
 * the memo's address, which is why apply must get the same array. Otherwise 32 bits each:
 * entry j holds element j's segment or MEMO_INVALID (MEMO_CODE bits), and the first entry also
 * carries MEMO_CODES (and MEMO_CODES_POS). Apply then reads a
 * listed chunk from the memo (its logits and targets only when it holds a positive), and a coded
 * chunk's logits but neither its targets nor its segments; it writes the chunk's gradient after
 * reading its entries, so the memo may be the gradient itself. Where the segments do not fit
 * (more than MEMO_MAX_SEGMENTS), a chunk that is not a list is only a header with MEMO_DENSE,
 * and apply computes it from the logits again. A chunk's gradient is assembled in a buffer and
 * written in one sweep. */
enum { CHUNK_BITS = 10, CHUNK = 1 << CHUNK_BITS };
#define MEMO_COUNT 0xffffu
#define MEMO_POS (UINT32_C(1) << 16)
#define MEMO_DENSE (UINT32_C(1) << 17)
#define MEMO_MAX_SEGMENTS ((size_t)1 << (32 - CHUNK_BITS))
#define MEMO_CODES (UINT32_C(1) << 31)
#define MEMO_CODES_POS (UINT32_C(1) << 30)
#define MEMO_CODE ((UINT32_C(1) << 23) - 1) /* above every segment (< MEMO_MAX_SEGMENTS) */
#define MEMO_INVALID MEMO_CODE
#define MEMO_CODES16 (UINT32_C(1) << 29) /* above a list header's bits, below MEMO_CODES_POS */
#define MEMO_INVALID16 0xffffu
#define CODES16_MIN 64 /* the header, up to 63 bytes to a line's start and len codes fit */

/* Whether the list of m valid negatives of a chunk of len elements goes into the memo. */
static inline int memo_fits(const apl_sorted_plan *p, size_t m, size_t len)
{
    return p->segments <= MEMO_MAX_SEGMENTS && 1 + 2 * m <= len;
}

/* Whether a chunk that is not a list is written as codes. */
static inline int memo_codes(const apl_sorted_plan *p)
{
    return p->segments <= MEMO_MAX_SEGMENTS;
}

static inline uint32_t float_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float bits_float(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Where a chunk's 16-bit codes start (see the memo above). */
static inline uintptr_t codes16_at(const memo_t *memo)
{
    return ((uintptr_t)(memo + 1) + 63) & ~(uintptr_t)63;
}

/* Element j's code in a coded chunk's codes (16 bits when narrow), MEMO_INVALID if invalid. */
static inline uint32_t code_at(const void *codes, int narrow, size_t j)
{
    if (narrow) {
        const uint32_t c = ((const memo16_t *)codes)[j];
        return c == MEMO_INVALID16 ? MEMO_INVALID : c;
    }
    return ((const memo_t *)codes)[j] & MEMO_CODE;
}

/* A coded chunk's codes and width from its memo (the header says which form). */
static inline const void *codes_of(const memo_t *memo, int *narrow)
{
    *narrow = (memo[0] & MEMO_CODES) == 0;
    return *narrow ? (const void *)codes16_at(memo) : (const void *)memo;
}

/* 32-bit codes c[0, len) (MEMO_INVALID or a segment below MEMO_INVALID16) to 16 bits. */
static void narrow_codes(const uint32_t *c, size_t len, memo16_t *out)
{
    for (size_t j = 0; j < len; j++)
        out[j] = (uint16_t)(c[j] < MEMO_INVALID16 ? c[j] : MEMO_INVALID16);
}

/* Copies a chunk's assembled gradient ob[0, len) to g; stream: with non-temporal stores. */
static void chunk_store(float *g, const float *ob, size_t len, int stream);

/* Writes a coded chunk's memo from its 32-bit codes cb[0, len) (changed: cb is scratch), in
 * the narrow form where it applies. narrow: the instruction set's narrow_codes. */
static void codes_store(const apl_sorted_plan *p, memo_t *memo, uint32_t *cb, size_t len,
                        int anypos, int stream,
                        void (*narrow)(const uint32_t *c, size_t len, memo16_t *out))
{
    const uint32_t pos = anypos ? MEMO_CODES_POS : 0;
    if (p->segments < MEMO_INVALID16 && len >= CODES16_MIN) {
        uint32_t w[CHUNK / 2]; /* len 16-bit codes, padded to whole entries */
        narrow(cb, len, (memo16_t *)w);
        if (len % 2)
            ((memo16_t *)w)[len] = MEMO_INVALID16;
        memo[0] = MEMO_CODES16 | pos;
        chunk_store((float *)codes16_at(memo), (const float *)(const void *)w, (len + 1) / 2,
                    stream);
    } else {
        cb[0] |= MEMO_CODES | pos;
        chunk_store((float *)(void *)memo, (const float *)(const void *)cb, len, stream);
    }
}

/* Writes a chunk's memo from its list: m entries of xs (logits), ks (segments), js (positions
 * in the chunk). The vector kernels write codes with their own expand step instead. */
static void memo_write(const apl_sorted_plan *p, memo_t *memo, size_t len, size_t m, int anypos,
                       const float *xs, const uint32_t *ks, const uint32_t *js)
{
    if (memo_fits(p, m, len)) {
        memo[0] = (uint32_t)m | (anypos ? MEMO_POS : 0);
        for (size_t i = 0; i < m; i++) {
            memo[1 + 2 * i] = float_bits(xs[i]);
            memo[2 + 2 * i] = ks[i] << CHUNK_BITS | js[i];
        }
    } else if (memo_codes(p)) {
        uint32_t cb[CHUNK];
        for (size_t j = 0; j < len; j++)
            cb[j] = MEMO_INVALID;
        for (size_t i = 0; i < m; i++)
            cb[js[i]] = ks[i];
        codes_store(p, memo, cb, len, anypos, 0, narrow_codes);
    } else {
        memo[0] = (uint32_t)m | (anypos ? MEMO_POS : 0) | MEMO_DENSE;
    }
}

/* Reads a listed chunk's entries (the header says how many) into xs, ks, js. */
static size_t memo_read(const memo_t *memo, float *xs, uint32_t *ks, uint32_t *js)
{
    const size_t m = memo[0] & MEMO_COUNT;
    for (size_t i = 0; i < m; i++) {
        const uint32_t e = memo[2 + 2 * i];
        xs[i] = bits_float(memo[1 + 2 * i]);
        ks[i] = e >> CHUNK_BITS;
        js[i] = e & (CHUNK - 1);
    }
    return m;
}

/* ---- portable kernels over [j0, j1) (j0 a multiple of CHUNK) ---- */

/* h: `copies` histograms of `words` entries each (copies a power of two; 1 when atomic). */
static size_t hist_range_scalar(const apl_sorted_plan *p, const float *s, const int8_t *t,
                                size_t j0, size_t j1, int64_t *h, size_t words, unsigned copies,
                                int atomic, memo_t *memo)
{
    const plan_block *b = block_of(p);
    const float thr = p->thr;
    const double qscale = ldexp(0.5 / p->delta, APL_HIST_OFFSET_BITS);
    float xs[CHUNK];
    uint32_t ks[CHUNK], js[CHUNK];
    size_t nv = 0;
    for (size_t c0 = j0; c0 < j1; c0 += CHUNK) {
        const size_t len = j1 - c0 < CHUNK ? j1 - c0 : CHUNK;
        size_t m = 0;
        int anypos = 0;
        for (size_t j = c0; j < c0 + len; j++) {
            anypos |= t[j] == 1;
            if (t[j] != 0 || !(s[j] >= thr))
                continue;
            uint64_t k = seg_of(b, s[j]);
            hist_add(h + (nv & (copies - 1)) * words, k, offset_q((double)s[j], p->O[k], qscale),
                     atomic);
            xs[m] = s[j], ks[m] = (uint32_t)k, js[m] = (uint32_t)(j - c0);
            m++, nv++;
        }
        if (memo)
            memo_write(p, memo + c0, len, m, anypos, xs, ks, js);
    }
    return nv;
}

/* Returns the first index whose positive is missing from the plan, or (size_t)-1. */
static size_t apply_range_scalar(const apl_sorted_plan *p, const float *s, const int8_t *t,
                                 size_t j0, size_t j1, const memo_t *memo, float *g, int stream)
{
    const plan_block *b = block_of(p);
    const float thr = p->thr;
    float xs[CHUNK], ob[CHUNK];
    uint32_t ks[CHUNK], js[CHUNK];
    size_t bad = (size_t)-1;
    for (size_t c0 = j0; c0 < j1; c0 += CHUNK) {
        const size_t len = j1 - c0 < CHUNK ? j1 - c0 : CHUNK;
        if (memo && (memo[c0] & (MEMO_CODES | MEMO_CODES16))) {
            int narrow;
            const void *codes = codes_of(memo + c0, &narrow);
            for (size_t j = 0; j < len; j++) {
                const uint32_t k = code_at(codes, narrow, j);
                ob[j] = k == MEMO_INVALID ? 0.0f : eval_g(p, (double)s[c0 + j], k);
            }
            if (memo[c0] & MEMO_CODES_POS) {
                size_t b2 = positives_range(p, s, t, c0, c0 + len, ob);
                bad = b2 < bad ? b2 : bad;
            }
        } else if (memo && !(memo[c0] & MEMO_DENSE)) {
            const int anypos = (memo[c0] & MEMO_POS) != 0;
            const size_t m = memo_read(memo + c0, xs, ks, js);
            memset(ob, 0, len * sizeof *ob);
            for (size_t i = 0; i < m; i++)
                ob[js[i]] = eval_g(p, (double)xs[i], ks[i]);
            if (anypos) {
                size_t b2 = positives_range(p, s, t, c0, c0 + len, ob);
                bad = b2 < bad ? b2 : bad;
            }
        } else {
            for (size_t j = c0; j < c0 + len; j++) {
                float v = 0.0f;
                if (t[j] == 0 && s[j] >= thr) {
                    v = eval_g(p, (double)s[j], seg_of(b, s[j]));
                } else if (t[j] == 1) {
                    int64_t i = positive_of(p, s[j]);
                    if (i < 0 && bad == (size_t)-1)
                        bad = j;
                    v = i < 0 ? 0.0f : (float)p->pos_grad[i];
                }
                ob[j - c0] = v;
            }
        }
        chunk_store(g + c0, ob, len, stream);
    }
    return bad;
}

/* The scalar ends of the chunk scans, elements [j, len) (the vector loop's remainder):
 * pack_valid's (with the chunk's bits) and fill_dense's, for every instruction set. Return the
 * new count. */
static inline size_t pack_rest(const float *s, const int8_t *t, size_t j, size_t len, float thr,
                               float *xs, uint32_t *js, uint32_t *bits, size_t m, int *anypos)
{
    if (j < len) /* the vector loop wrote whole bytes of bits below j */
        bits[j / 32] &= (UINT32_C(1) << (j % 32)) - 1;
    for (size_t w = j / 32 + 1; 32 * w < len; w++)
        bits[w] = 0;
    for (; j < len; j++) {
        if (t[j] == 0 && s[j] >= thr) {
            xs[m] = s[j];
            js[m++] = (uint32_t)j;
            bits[j / 32] |= UINT32_C(1) << (j % 32);
        }
        *anypos |= t[j] == 1;
    }
    return m;
}

static inline size_t fill_rest(const float *s, const int8_t *t, size_t j, size_t len, float thr,
                               float *xs, int32_t *vs, size_t m, int *anypos)
{
    for (; j < len; j++) {
        int ok = t[j] == 0 && s[j] >= thr;
        xs[j] = ok ? s[j] : thr;
        vs[j] = -ok;
        m += (size_t)ok;
        *anypos |= t[j] == 1;
    }
    return m;
}

/* The scalar end of expand (below): codes for elements [j, len). */
static inline void expand_rest(const uint32_t *bits, const uint32_t *ks, size_t j, size_t r,
                               size_t len, uint32_t *codes)
{
    for (; j < len; j++)
        codes[j] = bits[j / 32] >> (j % 32) & 1u ? ks[r++] : MEMO_INVALID;
}

/* ---- vector kernels ----
 * Both passes work a chunk at a time (hist_range_vec, apply_range_vec, after the AVX-512 steps):
 * the chunk's valid negatives are packed into a short list (logit and position), from a bit
 * mask of the chunk (cheap where few are valid) or, after a dense chunk, straight from the
 * elements; apply may instead compute a dense chunk's every element, the invalid ones on a
 * valid stand-in masked to exact 0. The list is then processed with no data-dependent branch
 * but the rare mixed cell, so neither a sparse nor a dense distribution pays for mispredicted
 * branches. The steps exist for AVX2 and AVX-512 (simd_ops); the chunk loops are shared. */
#ifdef APL_HAVE_AVX2_KERNELS
#define AVX2 __attribute__((target("avx2,bmi2")))

/* Element j's line of the chunk after next, logits and targets: the passes work a chunk at a
 * time, and the hardware alone does not fetch far enough ahead (measured: a third of the time
 * of a pass over sparse chunks). Prefetches past the array's end are harmless. */
AVX2 static inline void prefetch_ahead(const float *s, const int8_t *t, size_t j)
{
    if (j % 16 == 0)
        _mm_prefetch((const char *)(s + j + 2 * CHUNK), _MM_HINT_T0);
    if (j % 64 == 0)
        _mm_prefetch((const char *)(t + j + 2 * CHUNK), _MM_HINT_T0);
}

/* bits[w] bit i: element 32 w + i of the chunk s[0, len) is a valid negative (t == 0,
 * s >= thr). Returns their number; *anypos: whether the chunk holds a positive. */
AVX2 static size_t chunk_bits(const float *s, const int8_t *t, size_t len, float thr,
                              uint32_t *bits, int *anypos)
{
    const __m256 vthr = _mm256_set1_ps(thr);
    const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi8(1);
    __m256i pos = zero;
    size_t m = 0, j = 0, w = 0;
    for (; j + 32 <= len; j += 32, w++) {
        prefetch_ahead(s, t, j);
        prefetch_ahead(s, t, j + 8);
        prefetch_ahead(s, t, j + 16);
        prefetch_ahead(s, t, j + 24);
        const __m256i tv = _mm256_loadu_si256((const __m256i *)(t + j));
        pos = _mm256_or_si256(pos, _mm256_cmpeq_epi8(tv, one));
        uint32_t v = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(tv, zero));
        uint32_t ge = 0;
        for (int q = 0; q < 4; q++)
            ge |= (uint32_t)_mm256_movemask_ps(
                      _mm256_cmp_ps(_mm256_loadu_ps(s + j + 8 * q), vthr, _CMP_GE_OQ))
                  << (8 * q);
        v &= ge;
        bits[w] = v;
        m += (size_t)__builtin_popcount(v);
    }
    *anypos = !_mm256_testz_si256(pos, pos);
    if (j < len) {
        uint32_t v = 0;
        for (size_t q = 0; j + q < len; q++) {
            v |= (uint32_t)(t[j + q] == 0 && s[j + q] >= thr) << q;
            *anypos |= t[j + q] == 1;
        }
        bits[w] = v;
        m += (size_t)__builtin_popcount(v);
    }
    return m;
}

/* The left-packing permutation of the lanes set in an 8-bit mask: pext over the lane indices. */
AVX2 static inline __m256i pack_perm(unsigned mask)
{
    uint64_t bytes = _pdep_u64(mask, 0x0101010101010101u) * 0xff;
    return _mm256_cvtepu8_epi32(
        _mm_cvtsi64_si128((long long)_pext_u64(0x0706050403020100u, bytes)));
}

/* The list of a chunk's elements set in bits: logits into xs, positions into js. Returns their
 * number. */
AVX2 static size_t list_from_bits(const float *s, size_t len, const uint32_t *bits, float *xs,
                                  uint32_t *js)
{
    const __m256i eight = _mm256_set1_epi32(8);
    size_t m = 0;
    for (size_t w = 0; 32 * w < len; w++) {
        const uint32_t v = bits[w];
        if (!v)
            continue;
        __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int)(32 * w)),
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (size_t q = 0; q < 4; q++, idx = _mm256_add_epi32(idx, eight)) {
            const size_t j = 32 * w + 8 * q;
            const unsigned mask = (v >> (8 * q)) & 0xffu;
            if (j + 8 > len) { /* the array's last elements: no load past its end */
                for (size_t i = j; i < len; i++)
                    if (mask >> (i - j) & 1u)
                        xs[m] = s[i], js[m++] = (uint32_t)i;
                break;
            }
            const __m256i perm = pack_perm(mask);
            _mm256_storeu_ps(xs + m, _mm256_permutevar8x32_ps(_mm256_loadu_ps(s + j), perm));
            _mm256_storeu_si256((__m256i *)(js + m), _mm256_permutevar8x32_epi32(idx, perm));
            m += (size_t)__builtin_popcount(mask);
        }
    }
    return m;
}

/* Packs the valid negatives (t == 0, s >= thr) of s[0, len) into xs and their positions into
 * js (len <= CHUNK); returns their number. *anypos: whether the chunk holds a positive. The
 * left-packing permutation of 8 lanes comes from pext over the lane mask. */
AVX2 static size_t pack_valid(const float *s, const int8_t *t, size_t len, float thr,
                              float *xs, uint32_t *js, uint32_t *bits, int *anypos)
{
    const __m256 vthr = _mm256_set1_ps(thr);
    const __m256i one = _mm256_set1_epi32(1), zero = _mm256_setzero_si256();
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), pos = zero;
    const __m256i eight = _mm256_set1_epi32(8);
    size_t m = 0, j = 0;
    for (; j + 8 <= len; j += 8) {
        prefetch_ahead(s, t, j);
        __m256i tv = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(t + j)));
        __m256 x = _mm256_loadu_ps(s + j);
        pos = _mm256_or_si256(pos, _mm256_cmpeq_epi32(tv, one));
        __m256 ok = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(tv, zero)),
                                  _mm256_cmp_ps(x, vthr, _CMP_GE_OQ));
        unsigned mask = (unsigned)_mm256_movemask_ps(ok);
        ((uint8_t *)bits)[j / 8] = (uint8_t)mask; /* x86: bit i of bits[w] is byte 4w + i/8 */
        const __m256i perm = pack_perm(mask);
        _mm256_storeu_ps(xs + m, _mm256_permutevar8x32_ps(x, perm));
        _mm256_storeu_si256((__m256i *)(js + m), _mm256_permutevar8x32_epi32(idx, perm));
        m += (size_t)__builtin_popcount(mask);
        idx = _mm256_add_epi32(idx, eight);
    }
    *anypos = !_mm256_testz_si256(pos, pos);
    return pack_rest(s, t, j, len, thr, xs, js, bits, m, anypos);
}

/* The inverse of pack_perm: lane i takes the rank of lane i among the set lanes of mask. */
AVX2 static inline __m256i expand_perm(unsigned mask)
{
    uint64_t bytes = _pdep_u64(mask, 0x0101010101010101u) * 0xff;
    return _mm256_cvtepu8_epi32(
        _mm_cvtsi64_si128((long long)_pdep_u64(0x0706050403020100u, bytes)));
}

/* A coded chunk's memo (see the memo above) from its list: codes[j] = the segment of element j
 * (ks in list order, padded) where bits has j, MEMO_INVALID elsewhere; len <= CHUNK. */
AVX2 static void expand_codes(const uint32_t *bits, const uint32_t *ks, size_t len,
                              uint32_t *codes)
{
    const __m256i inv = _mm256_set1_epi32((int32_t)MEMO_INVALID);
    size_t r = 0, j = 0;
    for (; j + 8 <= len; j += 8) {
        const unsigned mask = bits[j / 32] >> (j % 32) & 0xffu;
        const __m256i lanes = _mm256_cvtepi8_epi32(_mm_cvtsi64_si128(
            (long long)(_pdep_u64(mask, 0x0101010101010101u) * 0xff)));
        const __m256i k = _mm256_permutevar8x32_epi32(
            _mm256_loadu_si256((const __m256i *)(ks + r)), expand_perm(mask));
        _mm256_storeu_si256((__m256i *)(codes + j), _mm256_blendv_epi8(inv, k, lanes));
        r += (size_t)__builtin_popcount(mask);
    }
    expand_rest(bits, ks, j, r, len, codes);
}

/* The dense alternative to pack_valid, for chunks where most elements are valid negatives:
 * xs[j] = s[j] where valid and thr (a valid value) elsewhere, vs[j] = -1 where valid, else 0.
 * Returns the number of valid negatives. No permutation, and no scatter afterwards. */
AVX2 static size_t fill_dense(const float *s, const int8_t *t, size_t len, float thr, float *xs,
                              int32_t *vs, int *anypos)
{
    const __m256 vthr = _mm256_set1_ps(thr);
    const __m256i one = _mm256_set1_epi32(1), zero = _mm256_setzero_si256();
    __m256i pos = zero;
    size_t m = 0, j = 0;
    for (; j + 8 <= len; j += 8) {
        prefetch_ahead(s, t, j);
        __m256i tv = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(t + j)));
        __m256 x = _mm256_loadu_ps(s + j);
        pos = _mm256_or_si256(pos, _mm256_cmpeq_epi32(tv, one));
        __m256 ok = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(tv, zero)),
                                  _mm256_cmp_ps(x, vthr, _CMP_GE_OQ));
        _mm256_storeu_ps(xs + j, _mm256_blendv_ps(vthr, x, ok));
        _mm256_storeu_si256((__m256i *)(vs + j), _mm256_castps_si256(ok));
        m += (size_t)__builtin_popcount((unsigned)_mm256_movemask_ps(ok));
    }
    *anypos = !_mm256_testz_si256(pos, pos);
    return fill_rest(s, t, j, len, thr, xs, vs, m, anypos);
}

/* ks[i] = the segment of xs[i], i < m (xs padded to a multiple of 8 with valid values): the
 * table's, eight at a time without a branch; groups with a mixed cell are noted and searched
 * afterwards. */

/* The cell table's entries for eight valid logits: the segment, or -1 in a mixed cell. */
AVX2 static inline __m256i cells8(const cell_table *ct, __m256 x)
{
    __m256 r = _mm256_mul_ps(_mm256_sub_ps(x, _mm256_set1_ps(ct->base)), _mm256_set1_ps(ct->inv));
    r = _mm256_min_ps(_mm256_max_ps(r, _mm256_setzero_ps()), _mm256_set1_ps(ct->top));
    return _mm256_i32gather_epi32(ct->tab, _mm256_cvttps_epi32(r), 4);
}

/* ks[i] = the segment of xs[i], i < m (xs padded to a multiple of 8 with valid values): the
 * table's, eight at a time without a branch; groups with a mixed cell are noted and searched
 * afterwards (a branch per group would mispredict often: near the positives, a few percent of
 * the cells are mixed). */
AVX2 static void segs_list(const plan_block *b, const float *xs, size_t m, uint32_t *ks)
{
    uint32_t mixed[CHUNK / 8 + 1];
    size_t nm = 0;
    for (size_t i = 0; i < m; i += 8) {
        const __m256i k = cells8(&b->ct, _mm256_loadu_ps(xs + i));
        _mm256_storeu_si256((__m256i *)(ks + i), k);
        mixed[nm] = (uint32_t)i;
        nm += _mm256_movemask_ps(_mm256_castsi256_ps(k)) != 0;
    }
    for (size_t g = 0; g < nm; g++)
        for (size_t i = mixed[g]; i < mixed[g] + 8; i++)
            if ((int32_t)ks[i] < 0)
                ks[i] = (uint32_t)apl_seg_find(&b->ix, (double)xs[i]);
}

/* offset_q of four logits in segments k: rint((x - O_k) * qscale) clamped to [0, 2^52 - 1]. */
AVX2 static inline __m256i offsets4(const apl_sorted_plan *p, __m256d x, __m128i k,
                                    __m256d qscale)
{
    const __m256d Ok = _mm256_i32gather_pd(p->O, k, 8);
    __m256d r = _mm256_round_pd(_mm256_mul_pd(_mm256_sub_pd(x, Ok), qscale),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_min_pd(_mm256_max_pd(r, _mm256_setzero_pd()), _mm256_set1_pd(QMAX));
    /* the bits of r + 2^52 below bit 52 are r */
    return _mm256_and_si256(_mm256_castpd_si256(_mm256_add_pd(r, _mm256_set1_pd(0x1p52))),
                            _mm256_set1_epi64x((int64_t)((UINT64_C(1) << 52) - 1)));
}

/* G of four logits in segments k, as eval_g (the same operations, no FMA). */
AVX2 static inline __m128 g4(const apl_sorted_plan *p, __m256d x, __m128i k)
{
    const __m256d ga = _mm256_i32gather_pd(block_of(p)->gamma, k, 8);
    const __m256d be = _mm256_i32gather_pd(p->beta, k, 8);
    return _mm256_cvtpd_ps(_mm256_add_pd(ga, _mm256_mul_pd(be, x)));
}

/* The hot segment: a third to a half of the valid negatives may fall in one segment, and
 * their adds would all queue on one counter. Its elements are summed in vector lanes instead
 * (count, low and high limbs), the others ("cold") added one by one; the lanes' sums wait here
 * between chunks. kh is re-chosen now and then as the private histogram's largest count; which
 * segment is hot changes where elements are added, never the integer sums. */
typedef struct {
    uint32_t kh; /* UINT32_MAX: none yet */
    int64_t c[8], lo[8], hi[8];
} hot_state;

/* The split segments, for the AVX-512 dense pass (pack_split512): the SPLIT segments with the
 * most elements so far. The floats of segment k are exactly [flo, fhi), the first floats at or
 * above O_k and O_k+1, so two float compares in the scan find its elements; they go to a list
 * of their own and are summed with O_k broadcast (split_sum512), with no table lookup, no
 * gather and no scalar add. A segment near the subnormal floats (which a thread that flushes
 * them may read as 0) is not split: its elements take the table as before. Unused entries have
 * an empty range. */
#define SPLIT 3
typedef struct {
    uint32_t k[SPLIT];
    float flo[SPLIT], fhi[SPLIT];
    double O[SPLIT];
    int any;
    int64_t c[SPLIT][8], lo[SPLIT][8], hi[SPLIT][8];
} split_state;

/* The offsets of a list (xs, ks; m entries, padded) into qs. With hs: the hot segment's
 * elements summed into hs, the others' positions listed in cold (*ncold of them). */
AVX2 static void offsets_avx2(const apl_sorted_plan *p, const float *xs, const uint32_t *ks,
                              size_t m, uint64_t *qs, hot_state *hs, uint32_t *cold,
                              size_t *ncold)
{
    const __m256d qscale = _mm256_set1_pd(ldexp(0.5 / p->delta, APL_HIST_OFFSET_BITS));
    const __m256i limb = _mm256_set1_epi64x((int64_t)LIMB_MASK);
    const __m256i khv = _mm256_set1_epi64x(hs ? (int64_t)hs->kh : -1);
    __m256i hc = _mm256_setzero_si256(), hlo = hc, hhi = hc;
    if (hs) {
        hc = _mm256_loadu_si256((const __m256i *)hs->c);
        hlo = _mm256_loadu_si256((const __m256i *)hs->lo);
        hhi = _mm256_loadu_si256((const __m256i *)hs->hi);
    }
    for (size_t i = 0; i < m; i += 4) {
        const __m128i k = _mm_loadu_si128((const __m128i *)(ks + i));
        const __m256i q = offsets4(p, _mm256_cvtps_pd(_mm_loadu_ps(xs + i)), k, qscale);
        _mm256_storeu_si256((__m256i *)(qs + i), q);
        if (hs) {
            /* lanes of the hot segment, and of the list (not the padding) */
            __m256i in = _mm256_cmpgt_epi64(_mm256_set1_epi64x((int64_t)(m - i)),
                                            _mm256_setr_epi64x(0, 1, 2, 3));
            __m256i eq = _mm256_and_si256(in, _mm256_cmpeq_epi64(_mm256_cvtepu32_epi64(k), khv));
            hc = _mm256_sub_epi64(hc, eq);
            hlo = _mm256_add_epi64(hlo, _mm256_and_si256(_mm256_and_si256(q, limb), eq));
            hhi = _mm256_add_epi64(hhi,
                                   _mm256_and_si256(_mm256_srli_epi64(q, APL_HIST_LIMB_BITS), eq));
        }
    }
    if (!hs)
        return;
    _mm256_storeu_si256((__m256i *)hs->c, hc);
    _mm256_storeu_si256((__m256i *)hs->lo, hlo);
    _mm256_storeu_si256((__m256i *)hs->hi, hhi);
    /* positions of the cold elements, packed as pack_valid packs */
    const __m256i kh8 = _mm256_set1_epi32((int32_t)hs->kh), eight = _mm256_set1_epi32(8);
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    size_t nc = 0;
    for (size_t i = 0; i < m; i += 8) {
        unsigned sel = ~(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(
                           _mm256_cmpeq_epi32(_mm256_loadu_si256((const __m256i *)(ks + i)), kh8))) &
                       (m - i >= 8 ? 0xffu : (1u << (m - i)) - 1);
        _mm256_storeu_si256((__m256i *)(cold + nc), _mm256_permutevar8x32_epi32(idx, pack_perm(sel)));
        nc += (size_t)__builtin_popcount(sel);
        idx = _mm256_add_epi32(idx, eight);
    }
    *ncold = nc;
}

/* g_codes for one width of codes (narrow: 16 bits), so that each loop has its own. */
AVX2 static inline void g_codes_w(const apl_sorted_plan *p, const float *s, const void *codes,
                                  int narrow, size_t len, float *ob)
{
    const __m256i cm = _mm256_set1_epi32((int32_t)MEMO_CODE),
                  inv = _mm256_set1_epi32((int32_t)(narrow ? MEMO_INVALID16 : MEMO_INVALID));
    const __m256 thr = _mm256_set1_ps(p->thr);
    size_t j = 0;
    for (; j + 8 <= len; j += 8) {
        __m256i k = narrow ? _mm256_cvtepu16_epi32(
                                 _mm_loadu_si128((const __m128i *)((const memo16_t *)codes + j)))
                           : _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(
                                                  (const memo_t *)codes + j)), cm);
        const __m256i bad = _mm256_cmpeq_epi32(k, inv);
        k = _mm256_andnot_si256(bad, k);
        const __m256 x = _mm256_blendv_ps(_mm256_loadu_ps(s + j), thr, _mm256_castsi256_ps(bad));
        const __m128 lo = g4(p, _mm256_cvtps_pd(_mm256_castps256_ps128(x)),
                             _mm256_castsi256_si128(k));
        const __m128 hi = g4(p, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)),
                             _mm256_extracti128_si256(k, 1));
        _mm256_storeu_ps(ob + j, _mm256_andnot_ps(_mm256_castsi256_ps(bad),
                                                  _mm256_set_m128(hi, lo)));
    }
    for (; j < len; j++) {
        const uint32_t k = code_at(codes, narrow, j);
        ob[j] = k == MEMO_INVALID ? 0.0f : eval_g(p, (double)s[j], k);
    }
}

/* A coded chunk's gradient (see the memo above): ob[j] = G(s[j]) in the segment of code j,
 * exactly 0 where the code is invalid (computed on a valid stand-in and masked). */
AVX2 static void g_codes(const apl_sorted_plan *p, const float *s, const void *codes, int narrow,
                         size_t len, float *ob)
{
    if (narrow)
        g_codes_w(p, s, codes, 1, len, ob);
    else
        g_codes_w(p, s, codes, 0, len, ob);
}

/* narrow_codes, eight at a time. */
AVX2 static void narrow_codes_avx2(const uint32_t *c, size_t len, memo16_t *out)
{
    const __m256i top = _mm256_set1_epi32((int32_t)MEMO_INVALID16);
    size_t j = 0;
    for (; j + 8 <= len; j += 8) {
        const __m256i v = _mm256_min_epu32(_mm256_loadu_si256((const __m256i *)(c + j)), top);
        _mm_storeu_si128((__m128i *)(out + j), _mm_packus_epi32(_mm256_castsi256_si128(v),
                                                                _mm256_extracti128_si256(v, 1)));
    }
    narrow_codes(c + j, len - j, out + j);
}


/* gs[i] = G(xs[i]) in segment ks[i], i < m (padded). */
AVX2 static void gs_avx2(const apl_sorted_plan *p, const float *xs, const uint32_t *ks, size_t m,
                         float *gs)
{
    for (size_t i = 0; i < m; i += 4)
        _mm_storeu_ps(gs + i, g4(p, _mm256_cvtps_pd(_mm_loadu_ps(xs + i)),
                                 _mm_loadu_si128((const __m128i *)(ks + i))));
}

/* ---- AVX-512 kernels ----
 * The AVX2 kernels' steps sixteen floats or eight doubles at a time, with compress instead of
 * the pext permutations and mask registers for the hot segment: on early-training inputs, where
 * nearly every element is a valid negative, the passes are bound by instructions per element,
 * and these take about half as many. The same IEEE operations in the same order, so bitwise the
 * same results as the AVX2 and the portable kernels (test_phases checks all three). */
#define AVX512 __attribute__((target("avx2,bmi2,avx512f,avx512vl,avx512dq,avx512bw")))

/* pack_valid, sixteen at a time. */
AVX512 static size_t pack_valid512(const float *s, const int8_t *t, size_t len, float thr,
                                   float *xs, uint32_t *js, uint32_t *bits, int *anypos)
{
    const __m512 vthr = _mm512_set1_ps(thr);
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1),
                  sixteen = _mm512_set1_epi32(16);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __mmask16 pos = 0;
    size_t m = 0, j = 0;
    for (; j + 16 <= len; j += 16) {
        prefetch_ahead(s, t, j);
        const __m512i tv = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(t + j)));
        const __m512 x = _mm512_loadu_ps(s + j);
        pos |= _mm512_cmpeq_epi32_mask(tv, one);
        const __mmask16 ok = _mm512_cmpeq_epi32_mask(tv, zero) &
                             _mm512_cmp_ps_mask(x, vthr, _CMP_GE_OQ);
        _mm512_storeu_ps(xs + m, _mm512_maskz_compress_ps(ok, x));
        _mm512_storeu_si512(js + m, _mm512_maskz_compress_epi32(ok, idx));
        const uint16_t ok16 = (uint16_t)ok;
        memcpy((uint8_t *)bits + j / 8, &ok16, sizeof ok16);
        m += (size_t)__builtin_popcount((unsigned)ok);
        idx = _mm512_add_epi32(idx, sixteen);
    }
    *anypos = pos != 0;
    return pack_rest(s, t, j, len, thr, xs, js, bits, m, anypos);
}

/* offset_q of eight logits x in segments with breakpoints Ok: rint((x - O_k) * qscale) clamped
 * to [0, 2^52 - 1], as offsets4 (the bits of r + 2^52 below bit 52 are r). */
AVX512 static inline __m512i q8(__m512d x, __m512d Ok, __m512d qscale)
{
    __m512d r = _mm512_roundscale_pd(_mm512_mul_pd(_mm512_sub_pd(x, Ok), qscale),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm512_min_pd(_mm512_max_pd(r, _mm512_setzero_pd()), _mm512_set1_pd(QMAX));
    return _mm512_and_si512(_mm512_castpd_si512(_mm512_add_pd(r, _mm512_set1_pd(0x1p52))),
                            _mm512_set1_epi64((int64_t)((UINT64_C(1) << 52) - 1)));
}

/* The targets of elements [j, j + 64) in byte compares: a bit per negative (t == 0); a positive
 * among them sets *pos. Prefetches as the scans do. */
AVX512 static inline uint64_t negatives64(const float *s, const int8_t *t, size_t j,
                                          __mmask64 *pos)
{
    for (size_t q = 0; q < 64; q += 16)
        prefetch_ahead(s, t, j + q);
    const __m512i tv = _mm512_loadu_si512(t + j);
    *pos |= _mm512_cmpeq_epi8_mask(tv, _mm512_set1_epi8(1));
    return _mm512_cmpeq_epi8_mask(tv, _mm512_setzero_si512());
}

/* The scalar end of pack_split512, elements [j, len): the split segments' logits into hx[h]
 * (their bits in hbits[h], nh[h] of them), the other valid negatives as pack_rest. Returns the
 * new count of the others. */
AVX512 static inline size_t pack_split_rest(const float *s, const int8_t *t, size_t j, size_t len,
                                     float thr, const float *flo, const float *fhi, float *xs,
                                     uint32_t *js, uint32_t *bits, float (*hx)[CHUNK + 16],
                                     uint32_t (*hbits)[CHUNK / 32], size_t *nh, size_t m,
                                     int *anypos)
{
    if (j < len) {
        bits[j / 32] &= (UINT32_C(1) << (j % 32)) - 1;
        for (int h = 0; h < SPLIT; h++)
            hbits[h][j / 32] &= (UINT32_C(1) << (j % 32)) - 1;
    }
    for (size_t w = j / 32 + 1; 32 * w < len; w++) {
        bits[w] = 0;
        for (int h = 0; h < SPLIT; h++)
            hbits[h][w] = 0;
    }
    for (; j < len; j++) {
        *anypos |= t[j] == 1;
        if (t[j] != 0 || !(s[j] >= thr))
            continue;
        int h = 0;
        while (h < SPLIT && !(s[j] >= flo[h] && s[j] < fhi[h]))
            h++;
        if (h < SPLIT) {
            hx[h][nh[h]++] = s[j];
            hbits[h][j / 32] |= UINT32_C(1) << (j % 32);
        } else {
            xs[m] = s[j];
            js[m++] = (uint32_t)j;
            bits[j / 32] |= UINT32_C(1) << (j % 32);
        }
    }
    return m;
}

/* pack_valid512 for a dense chunk with split segments: the valid negatives of split segment h
 * go to hx[h] (their bits in hbits[h], nh[h] of them), the others to xs and js (bits) as
 * pack_valid packs them. Returns the number of the others. */
AVX512 static size_t pack_split512(const float *s, const int8_t *t, size_t len, float thr,
                                   const split_state *ss, float *xs, uint32_t *js,
                                   uint32_t *bits, float (*hx)[CHUNK + 16],
                                   uint32_t (*hbits)[CHUNK / 32], size_t *nh, int *anypos)
{
    const __m512 vthr = _mm512_set1_ps(thr);
    __m512 vlo[SPLIT], vhi[SPLIT];
    for (int h = 0; h < SPLIT; h++) {
        vlo[h] = _mm512_set1_ps(ss->flo[h]);
        vhi[h] = _mm512_set1_ps(ss->fhi[h]);
        nh[h] = 0;
    }
    __mmask64 pos = 0;
    size_t m = 0, j = 0;
    /* The targets 64 at a time, the logits 16 at a time. The list holds no positions: a split
     * chunk's memo is codes, made from the bits. */
    for (; j + 64 <= len; j += 64) {
        const uint64_t neg = negatives64(s, t, j, &pos);
        for (size_t q = 0; q < 64; q += 16) {
            const __m512 x = _mm512_loadu_ps(s + j + q);
            __mmask16 cm = _mm512_mask_cmp_ps_mask((__mmask16)(neg >> q), x, vthr, _CMP_GE_OQ);
            for (int h = 0; h < SPLIT; h++) {
                const __mmask16 hm = _mm512_mask_cmp_ps_mask(cm, x, vlo[h], _CMP_GE_OQ) &
                                     _mm512_cmp_ps_mask(x, vhi[h], _CMP_LT_OQ);
                _mm512_storeu_ps(hx[h] + nh[h], _mm512_maskz_compress_ps(hm, x));
                const uint16_t h16 = (uint16_t)hm;
                memcpy((uint8_t *)hbits[h] + (j + q) / 8, &h16, sizeof h16);
                nh[h] += (size_t)__builtin_popcount((unsigned)hm);
                cm &= (__mmask16)~hm;
            }
            _mm512_storeu_ps(xs + m, _mm512_maskz_compress_ps(cm, x));
            const uint16_t c16 = (uint16_t)cm;
            memcpy((uint8_t *)bits + (j + q) / 8, &c16, sizeof c16);
            m += (size_t)__builtin_popcount((unsigned)cm);
        }
    }
    *anypos = pos != 0;
    return pack_split_rest(s, t, j, len, thr, ss->flo, ss->fhi, xs, js, bits, hx, hbits, nh, m,
                           anypos);
}

/* Adds the n logits hx (all in split segment h; padded to a multiple of 8) to its lanes:
 * offsets8's operations with O_k broadcast. */
AVX512 static void split_sum512(const apl_sorted_plan *p, const float *hx, size_t n,
                                split_state *ss, int h)
{
    const __m512d qscale = _mm512_set1_pd(ldexp(0.5 / p->delta, APL_HIST_OFFSET_BITS)),
                  Ok = _mm512_set1_pd(ss->O[h]);
    const __m512i limb = _mm512_set1_epi64((int64_t)LIMB_MASK), one = _mm512_set1_epi64(1);
    __m512i hc = _mm512_loadu_si512(ss->c[h]), hlo = _mm512_loadu_si512(ss->lo[h]),
            hhi = _mm512_loadu_si512(ss->hi[h]);
    for (size_t i = 0; i < n; i += 8) {
        const __mmask8 in = n - i >= 8 ? 0xff : (__mmask8)((1u << (n - i)) - 1);
        const __m512i q = q8(_mm512_cvtps_pd(_mm256_loadu_ps(hx + i)), Ok, qscale);
        hc = _mm512_mask_add_epi64(hc, in, hc, one);
        hlo = _mm512_mask_add_epi64(hlo, in, hlo, _mm512_and_si512(q, limb));
        hhi = _mm512_mask_add_epi64(hhi, in, hhi, _mm512_srli_epi64(q, APL_HIST_LIMB_BITS));
    }
    _mm512_storeu_si512(ss->c[h], hc);
    _mm512_storeu_si512(ss->lo[h], hlo);
    _mm512_storeu_si512(ss->hi[h], hhi);
}

/* expand_codes512 for a split chunk: the elements of split segment h take its segment. */
AVX512 static void expand_split512(const uint32_t *bits, uint32_t (*hbits)[CHUNK / 32],
                                   const split_state *ss, const uint32_t *ks, size_t len,
                                   uint32_t *codes)
{
    const __m512i inv = _mm512_set1_epi32((int32_t)MEMO_INVALID);
    size_t r = 0, j = 0;
    for (; j + 16 <= len; j += 16) {
        const __mmask16 mask = (__mmask16)(bits[j / 32] >> (j % 32));
        __m512i src = inv;
        for (int h = 0; h < SPLIT; h++)
            src = _mm512_mask_blend_epi32((__mmask16)(hbits[h][j / 32] >> (j % 32)), src,
                                          _mm512_set1_epi32((int)ss->k[h]));
        _mm512_storeu_si512(codes + j, _mm512_mask_expandloadu_epi32(src, mask, ks + r));
        r += (size_t)__builtin_popcount((unsigned)mask);
    }
    for (; j < len; j++) {
        uint32_t c = bits[j / 32] >> (j % 32) & 1u ? ks[r++] : MEMO_INVALID;
        for (int h = 0; h < SPLIT; h++)
            if (hbits[h][j / 32] >> (j % 32) & 1u)
                c = ss->k[h];
        codes[j] = c;
    }
}

/* expand_codes, sixteen at a time with expand. */
AVX512 static void expand_codes512(const uint32_t *bits, const uint32_t *ks, size_t len,
                                   uint32_t *codes)
{
    const __m512i inv = _mm512_set1_epi32((int32_t)MEMO_INVALID);
    size_t r = 0, j = 0;
    for (; j + 16 <= len; j += 16) {
        const __mmask16 mask = (__mmask16)(bits[j / 32] >> (j % 32));
        _mm512_storeu_si512(codes + j, _mm512_mask_expandloadu_epi32(inv, mask, ks + r));
        r += (size_t)__builtin_popcount((unsigned)mask);
    }
    expand_rest(bits, ks, j, r, len, codes);
}

/* chunk_bits, 64 elements a step (the same bits). */
AVX512 static size_t chunk_bits512(const float *s, const int8_t *t, size_t len, float thr,
                                   uint32_t *bits, int *anypos)
{
    const __m512 vthr = _mm512_set1_ps(thr);
    __mmask64 pos = 0;
    size_t m = 0, j = 0;
    for (; j + 64 <= len; j += 64) {
        uint64_t v = negatives64(s, t, j, &pos);
        uint64_t ge = 0;
        for (int q = 0; q < 4; q++)
            ge |= (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(s + j + 16 * q), vthr, _CMP_GE_OQ)
                  << (16 * q);
        v &= ge;
        bits[j / 32] = (uint32_t)v;
        bits[j / 32 + 1] = (uint32_t)(v >> 32);
        m += (size_t)__builtin_popcountll(v);
    }
    int rest = 0;
    if (j < len)
        m += chunk_bits(s + j, t + j, len - j, thr, bits + j / 32, &rest);
    *anypos = pos != 0 || rest;
    return m;
}

/* list_from_bits, sixteen at a time with compress. */
AVX512 static size_t list_from_bits512(const float *s, size_t len, const uint32_t *bits,
                                       float *xs, uint32_t *js)
{
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    size_t m = 0;
    for (size_t j = 0; j < len; j += 16) {
        const __mmask16 mask = (__mmask16)(bits[j / 32] >> (j % 32));
        if (j + 16 > len) { /* the array's last elements: no load past its end */
            for (size_t i = j; i < len; i++)
                if (mask >> (i - j) & 1u)
                    xs[m] = s[i], js[m++] = (uint32_t)i;
            break;
        }
        _mm512_storeu_ps(xs + m, _mm512_maskz_compress_ps(mask, _mm512_loadu_ps(s + j)));
        _mm512_storeu_si512(js + m, _mm512_maskz_compress_epi32(
                                        mask, _mm512_add_epi32(_mm512_set1_epi32((int)j), lane)));
        m += (size_t)__builtin_popcount((unsigned)mask);
    }
    return m;
}

/* fill_dense, sixteen at a time. */
AVX512 static size_t fill_dense512(const float *s, const int8_t *t, size_t len, float thr,
                                   float *xs, int32_t *vs, int *anypos)
{
    const __m512 vthr = _mm512_set1_ps(thr);
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
    __mmask16 pos = 0;
    size_t m = 0, j = 0;
    for (; j + 16 <= len; j += 16) {
        prefetch_ahead(s, t, j);
        const __m512i tv = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(t + j)));
        const __m512 x = _mm512_loadu_ps(s + j);
        pos |= _mm512_cmpeq_epi32_mask(tv, one);
        const __mmask16 ok = _mm512_cmpeq_epi32_mask(tv, zero) &
                             _mm512_cmp_ps_mask(x, vthr, _CMP_GE_OQ);
        _mm512_storeu_ps(xs + j, _mm512_mask_blend_ps(ok, vthr, x));
        _mm512_storeu_si512(vs + j, _mm512_movm_epi32(ok));
        m += (size_t)__builtin_popcount((unsigned)ok);
    }
    *anypos = pos != 0;
    return fill_rest(s, t, j, len, thr, xs, vs, m, anypos);
}

/* segs_list, sixteen at a time (xs padded to a multiple of 16 with valid values). */
AVX512 static void segs_list512(const plan_block *b, const float *xs, size_t m, uint32_t *ks)
{
    const cell_table *ct = &b->ct;
    const __m512 base = _mm512_set1_ps(ct->base), inv = _mm512_set1_ps(ct->inv),
                 top = _mm512_set1_ps(ct->top);
    uint32_t mixed[CHUNK / 16 + 1];
    size_t nm = 0;
    for (size_t i = 0; i < m; i += 16) {
        __m512 r = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xs + i), base), inv);
        r = _mm512_min_ps(_mm512_max_ps(r, _mm512_setzero_ps()), top);
        const __m512i k = _mm512_i32gather_epi32(_mm512_cvttps_epi32(r), ct->tab, 4);
        _mm512_storeu_si512(ks + i, k);
        mixed[nm] = (uint32_t)i;
        nm += _mm512_movepi32_mask(k) != 0;
    }
    for (size_t g = 0; g < nm; g++)
        for (size_t i = mixed[g]; i < mixed[g] + 16; i++)
            if ((int32_t)ks[i] < 0)
                ks[i] = (uint32_t)apl_seg_find(&b->ix, (double)xs[i]);
}

/* offsets4 and g4, eight at a time. */
AVX512 static inline __m512i offsets8(const apl_sorted_plan *p, __m512d x, __m256i k,
                                      __m512d qscale)
{
    return q8(x, _mm512_i32gather_pd(k, p->O, 8), qscale);
}

AVX512 static inline __m256 g8(const apl_sorted_plan *p, __m512d x, __m256i k)
{
    const __m512d ga = _mm512_i32gather_pd(k, block_of(p)->gamma, 8);
    const __m512d be = _mm512_i32gather_pd(k, p->beta, 8);
    return _mm512_cvtpd_ps(_mm512_add_pd(ga, _mm512_mul_pd(be, x)));
}

/* offsets_avx2, eight at a time. */
AVX512 static void offsets_avx512(const apl_sorted_plan *p, const float *xs, const uint32_t *ks,
                                  size_t m, uint64_t *qs, hot_state *hs, uint32_t *cold,
                                  size_t *ncold)
{
    const __m512d qscale = _mm512_set1_pd(ldexp(0.5 / p->delta, APL_HIST_OFFSET_BITS));
    const __m512i limb = _mm512_set1_epi64((int64_t)LIMB_MASK), one = _mm512_set1_epi64(1);
    const __m512i khv = _mm512_set1_epi64(hs ? (int64_t)hs->kh : -1);
    __m512i hc = _mm512_setzero_si512(), hlo = hc, hhi = hc;
    if (hs) {
        hc = _mm512_loadu_si512(hs->c);
        hlo = _mm512_loadu_si512(hs->lo);
        hhi = _mm512_loadu_si512(hs->hi);
    }
    size_t nc = 0;
    for (size_t i = 0; i < m; i += 8) {
        const __m256i k = _mm256_loadu_si256((const __m256i *)(ks + i));
        const __m512i q = offsets8(p, _mm512_cvtps_pd(_mm256_loadu_ps(xs + i)), k, qscale);
        _mm512_storeu_si512(qs + i, q);
        if (hs) {
            const __mmask8 in = m - i >= 8 ? 0xff : (__mmask8)((1u << (m - i)) - 1);
            const __mmask8 eq = _mm512_mask_cmpeq_epi64_mask(in, _mm512_cvtepu32_epi64(k), khv);
            hc = _mm512_mask_add_epi64(hc, eq, hc, one);
            hlo = _mm512_mask_add_epi64(hlo, eq, hlo, _mm512_and_si512(q, limb));
            hhi = _mm512_mask_add_epi64(hhi, eq, hhi, _mm512_srli_epi64(q, APL_HIST_LIMB_BITS));
            const __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int)i),
                                                 _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            const __mmask8 sel = in & (__mmask8)~eq;
            _mm256_storeu_si256((__m256i *)(cold + nc), _mm256_maskz_compress_epi32(sel, idx));
            nc += (size_t)__builtin_popcount((unsigned)sel);
        }
    }
    if (!hs)
        return;
    _mm512_storeu_si512(hs->c, hc);
    _mm512_storeu_si512(hs->lo, hlo);
    _mm512_storeu_si512(hs->hi, hhi);
    *ncold = nc;
}

/* g_codes, sixteen at a time. */
AVX512 static inline void g_codes512_w(const apl_sorted_plan *p, const float *s,
                                       const void *codes, int narrow, size_t len, float *ob)
{
    const __m512i cm = _mm512_set1_epi32((int32_t)MEMO_CODE),
                  inv = _mm512_set1_epi32((int32_t)(narrow ? MEMO_INVALID16 : MEMO_INVALID));
    const __m512 thr = _mm512_set1_ps(p->thr);
    size_t j = 0;
    for (; j + 16 <= len; j += 16) {
        __m512i k = narrow ? _mm512_cvtepu16_epi32(_mm256_loadu_si256(
                                 (const __m256i *)((const memo16_t *)codes + j)))
                           : _mm512_and_si512(_mm512_loadu_si512((const memo_t *)codes + j), cm);
        const __mmask16 ok = _mm512_cmpneq_epi32_mask(k, inv);
        k = _mm512_maskz_mov_epi32(ok, k);
        const __m512 x = _mm512_mask_blend_ps(ok, thr, _mm512_loadu_ps(s + j));
        const __m256 lo = g8(p, _mm512_cvtps_pd(_mm512_castps512_ps256(x)),
                             _mm512_castsi512_si256(k));
        const __m256 hi = g8(p, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(
                                    _mm512_castps_pd(x), 1))),
                             _mm512_extracti64x4_epi64(k, 1));
        const __m512 g = _mm512_castpd_ps(_mm512_insertf64x4(
            _mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
        _mm512_storeu_ps(ob + j, _mm512_maskz_mov_ps(ok, g));
    }
    g_codes(p, s + j, narrow ? (const void *)((const memo16_t *)codes + j)
                             : (const void *)((const memo_t *)codes + j),
            narrow, len - j, ob + j);
}

AVX512 static void g_codes512(const apl_sorted_plan *p, const float *s, const void *codes,
                              int narrow, size_t len, float *ob)
{
    if (narrow)
        g_codes512_w(p, s, codes, 1, len, ob);
    else
        g_codes512_w(p, s, codes, 0, len, ob);
}

/* narrow_codes, sixteen at a time (unsigned saturation maps MEMO_INVALID to MEMO_INVALID16). */
AVX512 static void narrow_codes512(const uint32_t *c, size_t len, memo16_t *out)
{
    size_t j = 0;
    for (; j + 16 <= len; j += 16)
        _mm256_storeu_si256((__m256i *)(out + j),
                            _mm512_cvtusepi32_epi16(_mm512_loadu_si512(c + j)));
    narrow_codes(c + j, len - j, out + j);
}


/* gs_avx2, eight at a time. */
AVX512 static void gs_avx512(const apl_sorted_plan *p, const float *xs, const uint32_t *ks,
                             size_t m, float *gs)
{
    for (size_t i = 0; i < m; i += 8)
        _mm256_storeu_ps(gs + i, g8(p, _mm512_cvtps_pd(_mm256_loadu_ps(xs + i)),
                                    _mm256_loadu_si256((const __m256i *)(ks + i))));
}

AVX2 static void chunk_store_avx2(float *gc, const float *ob, size_t len, int stream)
{
    size_t z = 0;
    if (stream) {
        for (; z < len && ((uintptr_t)(gc + z) & 31); z++)
            gc[z] = ob[z];
        for (; z + 8 <= len; z += 8)
            _mm256_stream_ps(gc + z, _mm256_loadu_ps(ob + z));
    }
    for (; z + 8 <= len; z += 8)
        _mm256_storeu_ps(gc + z, _mm256_loadu_ps(ob + z));
    for (; z < len; z++)
        gc[z] = ob[z];
}

/* The steps of one instruction set, a chunk or a list at a time; lists are padded with valid
 * values (thr) to a multiple of 16 before segs, offsets and gs. */
typedef struct {
    size_t (*scan)(const float *s, const int8_t *t, size_t len, float thr, uint32_t *bits,
                   int *anypos);                                            /* chunk_bits */
    size_t (*list)(const float *s, size_t len, const uint32_t *bits, float *xs, uint32_t *js);
    size_t (*pack)(const float *s, const int8_t *t, size_t len, float thr, float *xs,
                   uint32_t *js, uint32_t *bits, int *anypos);              /* pack_valid */
    size_t (*fill)(const float *s, const int8_t *t, size_t len, float thr, float *xs,
                   int32_t *vs, int *anypos);                               /* fill_dense */
    void (*segs)(const plan_block *b, const float *xs, size_t m, uint32_t *ks);
    void (*offsets)(const apl_sorted_plan *p, const float *xs, const uint32_t *ks, size_t m,
                    uint64_t *qs, hot_state *hs, uint32_t *cold, size_t *ncold);
    void (*gs)(const apl_sorted_plan *p, const float *xs, const uint32_t *ks, size_t m,
               float *gs);
    void (*expand)(const uint32_t *bits, const uint32_t *ks, size_t len, uint32_t *codes);
    void (*gcodes)(const apl_sorted_plan *p, const float *s, const void *codes, int narrow,
                   size_t len, float *ob);
    void (*narrow)(const uint32_t *c, size_t len, memo16_t *out);
    /* The split segments (AVX-512 only; NULL: none split). */
    size_t (*pack_split)(const float *s, const int8_t *t, size_t len, float thr,
                         const split_state *ss, float *xs, uint32_t *js, uint32_t *bits,
                         float (*hx)[CHUNK + 16], uint32_t (*hbits)[CHUNK / 32], size_t *nh,
                         int *anypos);
    void (*split_sum)(const apl_sorted_plan *p, const float *hx, size_t n, split_state *ss,
                      int h);
    void (*expand_split)(const uint32_t *bits, uint32_t (*hbits)[CHUNK / 32],
                         const split_state *ss, const uint32_t *ks, size_t len,
                         uint32_t *codes);
} simd_ops;

static const simd_ops ops_avx2 = {chunk_bits, list_from_bits, pack_valid, fill_dense,
                                  segs_list,  offsets_avx2,   gs_avx2,    expand_codes,
                                  g_codes,    narrow_codes_avx2, NULL,    NULL,
                                  NULL};
static const simd_ops ops_avx512 = {chunk_bits512,  list_from_bits512, pack_valid512,
                                    fill_dense512,  segs_list512,      offsets_avx512,
                                    gs_avx512,      expand_codes512,   g_codes512,
                                    narrow_codes512,
                                    pack_split512,  split_sum512,      expand_split512};

enum { PAD = 16 };

/* The first float at or above v (v finite, or +inf). */
static float float_at_or_above(double v)
{
    float f = (float)v;
    return (double)f < v ? nextafterf(f, INFINITY) : f;
}

/* Chooses the hot segment (the largest count in h, a private histogram) and the split ones. */
static void hot_choose(const apl_sorted_plan *p, const int64_t *h, hot_state *hs,
                       split_state *ss)
{
    int64_t best[SPLIT];
    uint32_t k[SPLIT];
    for (int i = 0; i < SPLIT; i++)
        best[i] = 0, k[i] = UINT32_MAX;
    for (size_t j = 0; j < p->segments; j++) {
        const int64_t c = h[APL_HIST_WORDS * j];
        if (c <= best[SPLIT - 1])
            continue;
        int i = SPLIT - 1;
        for (; i > 0 && c > best[i - 1]; i--)
            best[i] = best[i - 1], k[i] = k[i - 1];
        best[i] = c, k[i] = (uint32_t)j;
    }
    hs->kh = k[0];
    ss->any = 0;
    for (int i = 0; i < SPLIT; i++) {
        ss->k[i] = k[i];
        ss->flo[i] = INFINITY, ss->fhi[i] = -INFINITY, ss->O[i] = 0.0; /* empty */
        if (k[i] == UINT32_MAX)
            continue;
        const float lo = float_at_or_above(p->O[k[i]]), hi = float_at_or_above(p->O[k[i] + 1]);
        if (lo >= 2.0f * FLT_MIN || hi <= -2.0f * FLT_MIN) { /* O[S] = +inf */
            ss->flo[i] = lo, ss->fhi[i] = hi, ss->O[i] = p->O[k[i]];
            ss->any = 1;
        }
    }
}

/* Adds the split segments' lane sums into histogram h and clears them. */
static void split_flush(int64_t *h, split_state *ss)
{
    for (int i = 0; i < SPLIT; i++) {
        if (ss->k[i] == UINT32_MAX)
            continue;
        int64_t *c = h + APL_HIST_WORDS * ss->k[i];
        for (int l = 0; l < 8; l++) {
            c[0] += ss->c[i][l], c[1] += ss->lo[i][l], c[2] += ss->hi[i][l];
            ss->c[i][l] = ss->lo[i][l] = ss->hi[i][l] = 0;
        }
    }
}

/* Adds the hot segment's lane sums into histogram h (a private one) and clears them. */
static void hot_flush(int64_t *h, hot_state *hs)
{
    if (hs->kh == UINT32_MAX)
        return;
    int64_t *c = h + APL_HIST_WORDS * hs->kh;
    for (int l = 0; l < 8; l++) {
        c[0] += hs->c[l], c[1] += hs->lo[l], c[2] += hs->hi[l];
        hs->c[l] = hs->lo[l] = hs->hi[l] = 0;
    }
}

static size_t hist_range_vec(const apl_sorted_plan *p, const simd_ops *ops, const float *s,
                             const int8_t *t, size_t j0, size_t j1, int64_t *h, size_t words,
                             unsigned copies, int atomic, memo_t *memo, int stream)
{
    const plan_block *b = block_of(p);
    float xs[CHUNK + PAD], hx[SPLIT][CHUNK + PAD];
    uint32_t js[CHUNK + PAD], ks[CHUNK + PAD], cold[CHUNK + PAD], bits[CHUNK / 32],
        hbits[SPLIT][CHUNK / 32], cb[CHUNK];
    uint64_t qs[CHUNK + PAD];
    size_t nv = 0;
    const int hot = !atomic && p->segments <= COPIES_MAX_SEGMENTS;
    hot_state hs = {.kh = UINT32_MAX};
    split_state ss = {.any = 0};
    for (int i = 0; i < SPLIT; i++)
        ss.k[i] = UINT32_MAX;
    size_t chunks = 0;
    int sparse = 1; /* whether the previous chunk was sparse: this one's list from its bits */
    for (size_t c0 = j0; c0 < j1; c0 += CHUNK, chunks++) {
        const size_t len = j1 - c0 < CHUNK ? j1 - c0 : CHUNK;
        if (memo) /* the header's line of the chunk after next, for writing: a store that
                     misses the caches holds up the stores behind it (the adds) */
            __builtin_prefetch(memo + c0 + 2 * CHUNK, 1, 3);
        if (hot && chunks && ((chunks & (chunks - 1)) == 0 || chunks % 32 == 0)) {
            hot_flush(h, &hs);
            split_flush(h, &ss);
            hot_choose(p, h, &hs, &ss);
        }
        /* A dense chunk with split segments: their elements are summed from hx, without a
         * table lookup or a gather; the chunk's memo is then codes, whatever its count. */
        const int split = !sparse && ss.any && ops->pack_split && (!memo || memo_codes(p));
        int anypos;
        size_t m, nh[SPLIT] = {0}, nsplit = 0;
        if (sparse) {
            m = ops->scan(s + c0, t + c0, len, p->thr, bits, &anypos);
            if (m)
                ops->list(s + c0, len, bits, xs, js);
        } else if (split) {
            m = ops->pack_split(s + c0, t + c0, len, p->thr, &ss, xs, js, bits, hx, hbits, nh,
                                &anypos);
            for (int i = 0; i < SPLIT; i++)
                nsplit += nh[i];
        } else {
            m = ops->pack(s + c0, t + c0, len, p->thr, xs, js, bits, &anypos);
        }
        sparse = 2 * (m + nsplit) <= len;
        nv += m + nsplit;
        if (m + nsplit == 0) {
            if (memo)
                memo[c0] = anypos ? MEMO_POS : 0;
            continue;
        }
        for (int i = 0; i < SPLIT; i++)
            if (nh[i]) {
                for (size_t z = nh[i]; z < nh[i] + PAD; z++)
                    hx[i][z] = ss.flo[i];
                ops->split_sum(p, hx[i], nh[i], &ss, i);
            }
        for (size_t i = m; i < m + PAD; i++)
            xs[i] = p->thr;
        /* Segments and offsets of the whole list first, then the adds: a gather may not run
         * ahead of older stores whose addresses are unknown, so interleaving the adds (whose
         * addresses come from the gathers) would chain every group to the one before. */
        ops->segs(b, xs, m, ks);
        size_t nc = 0;
        /* In a split chunk the hot segment's elements are already summed: no hot lanes. */
        ops->offsets(p, xs, ks, m, qs, hot && !split ? &hs : NULL, cold, &nc);
        if (hot && !split) {
            for (size_t c = 0; c < nc; c++)
                hist_add(h + (c & (copies - 1)) * words, ks[cold[c]], qs[cold[c]], 0);
        } else {
            /* element i adds to copy i % copies: independent chains on a crowded segment */
            for (size_t i = 0; i < m; i++)
                hist_add(h + (i & (copies - 1)) * words, ks[i], qs[i], atomic);
        }
        if (memo && (split || (!memo_fits(p, m, len) && memo_codes(p)))) {
            /* in a buffer, then streamed: the memo is an array as large as the gradient */
            if (split)
                ops->expand_split(bits, hbits, &ss, ks, len, cb);
            else
                ops->expand(bits, ks, len, cb);
            codes_store(p, memo + c0, cb, len, anypos, stream, ops->narrow);
        } else if (memo) {
            memo_write(p, memo + c0, len, m, anypos, xs, ks, js);
        }
    }
    if (stream)
        _mm_sfence();
    if (hot) {
        hot_flush(h, &hs);
        split_flush(h, &ss);
    }
    return nv;
}

/* A listed chunk's gradient into ob: G of the m entries (xs, ks padded) at their positions js,
 * 0 elsewhere. gs: scratch of the list's length. */
static void list_to_chunk(const apl_sorted_plan *p, const simd_ops *ops, const float *xs,
                          const uint32_t *ks, const uint32_t *js, size_t m, size_t len, float *gs,
                          float *ob)
{
    ops->gs(p, xs, ks, m, gs);
    memset(ob, 0, len * sizeof *ob);
    for (size_t i = 0; i < m; i++)
        ob[js[i]] = gs[i];
}

/* stream: write the gradient with non-temporal stores (a large array: no read for ownership,
 * the gradient is not read back soon). */
static size_t apply_range_vec(const apl_sorted_plan *p, const simd_ops *ops, const float *s,
                              const int8_t *t, size_t j0, size_t j1, const memo_t *memo,
                              float *g, int stream)
{
    const plan_block *b = block_of(p);
    float xs[CHUNK + PAD], gs[CHUNK + PAD], ob[CHUNK];
    uint32_t js[CHUNK + PAD], ks[CHUNK + PAD], bits[CHUNK / 32];
    int32_t vs[CHUNK + PAD];
    size_t bad = (size_t)-1;
    int density = 0; /* the previous computed chunk's: 0 sparse, 1 between, 2 dense */
    size_t mlast = 0;  /* the previous chunk's list length, if it was listed */
    for (size_t c0 = j0; c0 < j1; c0 += CHUNK) {
        const size_t len = j1 - c0 < CHUNK ? j1 - c0 : CHUNK;
        const float *sc = s + c0;
        /* The memo lines of the chunk after next that a list like this one would take (at
         * least the header's): a listed chunk is read from the memo alone, a short run of lines
         * every 4 KiB, which the hardware does not fetch ahead. */
        for (size_t w = 0; memo && c0 + 2 * CHUNK < j1 && w <= 2 * mlast; w += 16)
            _mm_prefetch((const char *)(memo + c0 + 2 * CHUNK + w), _MM_HINT_T0);
        mlast = 0;
        int anypos;
        if (memo && (memo[c0] & (MEMO_CODES | MEMO_CODES16))) { /* coded by histogram */
            anypos = (memo[c0] & MEMO_CODES_POS) != 0;
            int narrow;
            const void *codes = codes_of(memo + c0, &narrow);
            ops->gcodes(p, sc, codes, narrow, len, ob);
        } else if (memo && !(memo[c0] & MEMO_DENSE)) { /* listed by histogram */
            anypos = (memo[c0] & MEMO_POS) != 0;
            const size_t m = memo_read(memo + c0, xs, ks, js);
            for (size_t i = m; i < m + PAD; i++)
                xs[i] = p->thr, ks[i] = 0;
            list_to_chunk(p, ops, xs, ks, js, m, len, gs, ob);
            mlast = m;
        } else {
            size_t m;
            if (density == 2) {
                /* dense: every element is computed, the invalid ones on a valid stand-in and
                 * masked to exact 0 by vs */
                m = ops->fill(sc, t + c0, len, p->thr, xs, vs, &anypos);
                for (size_t i = len; i < len + PAD; i++)
                    xs[i] = p->thr;
                ops->segs(b, xs, len, ks);
                ops->gs(p, xs, ks, len, gs);
                for (size_t z = 0; z < len; z++)
                    ob[z] = vs[z] ? gs[z] : 0.0f;
            } else {
                if (density == 0) {
                    m = ops->scan(sc, t + c0, len, p->thr, bits, &anypos);
                    if (m)
                        ops->list(sc, len, bits, xs, js);
                } else {
                    m = ops->pack(sc, t + c0, len, p->thr, xs, js, bits, &anypos);
                }
                for (size_t i = m; i < m + PAD; i++)
                    xs[i] = p->thr;
                ops->segs(b, xs, m, ks);
                list_to_chunk(p, ops, xs, ks, js, m, len, gs, ob);
            }
            density = 4 * m >= 3 * len ? 2 : 2 * m <= len ? 0 : 1;
        }
        if (__builtin_expect(anypos, 0)) {
            size_t b2 = positives_range(p, s, t, c0, c0 + len, ob);
            bad = b2 < bad ? b2 : bad;
        }
        chunk_store(g + c0, ob, len, stream);
    }
    if (stream)
        _mm_sfence(); /* the streamed stores are ordered before the caller's next access */
    return bad;
}
#endif

static void chunk_store(float *g, const float *ob, size_t len, int stream)
{
#ifdef APL_HAVE_AVX2_KERNELS
    if (stream) { /* only the AVX2 kernels stream (apply_range) */
        chunk_store_avx2(g, ob, len, stream);
        return;
    }
#endif
    (void)stream;
    memcpy(g, ob, len * sizeof *ob);
}

/* The kernels to use: 2 AVX-512, 1 AVX2, 0 portable; no more than plan->simd allows and the CPU
 * has. */
static int simd_level(const apl_sorted_plan *p)
{
#ifdef APL_HAVE_AVX2_KERNELS
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("bmi2"))
        return 0;
    if (p->simd >= 2 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw"))
        return 2;
    return p->simd >= 1;
#else
    (void)p;
    return 0;
#endif
}

static size_t hist_range(const apl_sorted_plan *p, int simd, const float *s, const int8_t *t,
                         size_t j0, size_t j1, int64_t *h, size_t words, unsigned copies,
                         int atomic, memo_t *memo, int stream)
{
#ifdef APL_HAVE_AVX2_KERNELS
    if (simd == 2)
        return hist_range_vec(p, &ops_avx512, s, t, j0, j1, h, words, copies, atomic, memo,
                              stream);
    if (simd == 1)
        return hist_range_vec(p, &ops_avx2, s, t, j0, j1, h, words, copies, atomic, memo,
                              stream);
#endif
    (void)simd, (void)stream;
    return hist_range_scalar(p, s, t, j0, j1, h, words, copies, atomic, memo);
}

static size_t apply_range(const apl_sorted_plan *p, int simd, const float *s, const int8_t *t,
                          size_t j0, size_t j1, const memo_t *memo, float *g, int stream)
{
#ifdef APL_HAVE_AVX2_KERNELS
    if (simd == 2)
        return apply_range_vec(p, &ops_avx512, s, t, j0, j1, memo, g, stream);
    if (simd == 1)
        return apply_range_vec(p, &ops_avx2, s, t, j0, j1, memo, g, stream);
#endif
    (void)simd;
    return apply_range_scalar(p, s, t, j0, j1, memo, g, 0);
}

/* Threads for n elements: the caller's request, no more than the work justifies. */
static int threads_for(int requested, size_t n)
{
    int T = apl_threads(requested);
    size_t most = n / MIN_PER_THREAD;
    if (most < 1)
        most = 1;
    if ((size_t)T > most)
        T = (int)most;
    return T < 1 ? 1 : T;
}

/* Thread `i` of T takes [first, last) of n: contiguous ranges of whole chunks (the memo's). */
static void thread_range(size_t n, int T, int i, size_t *first, size_t *last)
{
    size_t blocks = (n + CHUNK - 1) / CHUNK;
    size_t b0 = blocks * (size_t)i / (size_t)T, b1 = blocks * (size_t)(i + 1) / (size_t)T;
    *first = b0 * CHUNK < n ? b0 * CHUNK : n;
    *last = b1 * CHUNK < n ? b1 * CHUNK : n;
}

/* ---- plan ---- */

apl_status apl_sorted_plan_create(const float *pos_sorted, size_t np, double delta,
                                  apl_sorted_plan **plan, apl_error *err)
{
    *plan = NULL;
    if (!pos_sorted || np == 0)
        return apl_fail(err, APL_ERR_ARG, "sorted plan: no positives");
    if (!(delta > 0.0) || !isfinite(delta))
        return apl_fail(err, APL_ERR_ARG, "sorted plan: delta = %g: expected a finite value > 0",
                        delta);
    for (size_t i = 0; i < np; i++) {
        if (!isfinite(pos_sorted[i]))
            return apl_fail(err, APL_ERR_INPUT, "sorted plan: positive[%zu] = %g is not finite",
                            i, (double)pos_sorted[i]);
        if (i && pos_sorted[i] < pos_sorted[i - 1])
            return apl_fail(err, APL_ERR_INPUT,
                            "sorted plan: positive[%zu] = %.9g < positive[%zu] = %.9g: expected "
                            "ascending order",
                            i, (double)pos_sorted[i], i - 1, (double)pos_sorted[i - 1]);
    }
    if (!apl_segments_in_range(pos_sorted[0], pos_sorted[np - 1], np, delta))
        return apl_fail(err, APL_ERR_ARG,
                        "sorted plan: %zu positives in [%g, %g] with delta %g are outside the "
                        "segment algorithm's range (see APL_SEGMENT_MAX_SPAN)",
                        np, (double)pos_sorted[0], (double)pos_sorted[np - 1], delta);
    const size_t S = 2 * np, cells = (size_t)apl_seg_cells(S), tcells = table_cells(S);
    /* One block: the struct, then doubles, then 64-bit, then 32-bit and float arrays. */
    const size_t nd = (S + 1) /* O */ + np /* pos_sums */ + 3 * S /* alpha beta gamma */ + np;
    const size_t bytes = sizeof(plan_block) + nd * sizeof(double) + S * sizeof(uint64_t) +
                         (2 * np + 2 * cells + tcells + 1) * sizeof(uint32_t) +
                         np * sizeof(float);
    plan_block *b = calloc(1, bytes);
    if (!b)
        return apl_fail(err, APL_ERR_NOMEM, "sorted plan: cannot allocate %zu bytes for %zu "
                        "positives", bytes, np);
    double *O = (double *)(b + 1), *pos_sums = O + S + 1, *alpha = pos_sums + np,
           *beta = alpha + S, *pos_grad = beta + S, *gamma = pos_grad + np;
    uint64_t *E = (uint64_t *)(gamma + S);
    uint32_t *lo = (uint32_t *)(E + S), *hi = lo + np, *clo = hi + np, *chi = clo + cells;
    int32_t *ctab = (int32_t *)(chi + cells);
    float *pos = (float *)(ctab + tcells + 1);
    apl_sorted_plan *p = &b->pub;
    memcpy(pos, pos_sorted, np * sizeof *pos);

    /* Breakpoints: merge the two ascending lists s_i - delta and s_i + delta. */
    for (size_t i = 0, j = 0, k = 0; k < S; k++) {
        double L = i < np ? (double)pos[i] - delta : 0, U = (double)pos[j] + delta;
        O[k] = (i < np && L <= U) ? (i++, L) : (j++, U);
    }
    O[S] = INFINITY; /* the vectorised search reads O[k+1] for k = S-1 */
    for (size_t i = 0; i < np; i++) {
        lo[i] = (uint32_t)lower_bound_d(O, S, (double)pos[i] - delta);
        hi[i] = (uint32_t)lower_bound_d(O, S, (double)pos[i] + delta);
    }
    /* Positions in 2^-52 ramp widths. In range the span is below 4097 ramp widths, so below
     * 2^64. */
    const double escale = ldexp(0.5 / delta, APL_HIST_OFFSET_BITS);
    for (size_t k = 0; k < S; k++)
        E[k] = (uint64_t)rint((O[k] - O[0]) * escale);
    b->ix = apl_seg_index_fill(O, S, clo, chi);
    b->ct = cell_table_fill(O, S, tcells, ctab);

    p->np = np;
    p->segments = S;
    p->delta = delta;
    p->thr = apl_prune_threshold(pos[0], delta);
    p->pos = pos;
    p->O = O;
    p->lo = lo;
    p->hi = hi;
    p->E = E;
    p->pos_sums = pos_sums;
    p->simd = 2;
    p->alpha = alpha;
    p->beta = beta;
    p->pos_grad = pos_grad;
    p->index = &b->ix;
    b->gamma = gamma;

    /* The positives' own window sums, with the same histogram and sums as the negatives'. */
    int64_t *hp = calloc(APL_HIST_WORDS * S, sizeof *hp);
    if (!hp) {
        free(b);
        return apl_fail(err, APL_ERR_NOMEM, "sorted plan: cannot allocate the positives' "
                        "histogram (%zu segments)", S);
    }
    apl_sorted_hist_values(p, pos, np, hp);
    apl_status st = apl_sorted_window_sums(p, hp, pos_sums, err);
    free(hp);
    if (st != APL_OK) {
        free(b);
        return st;
    }
    *plan = p;
    return APL_OK;
}

void apl_sorted_plan_free(apl_sorted_plan *plan)
{
    free(plan); /* the plan_block starts with it */
}

size_t apl_sorted_hist_len(const apl_sorted_plan *plan)
{
    return APL_HIST_WORDS * plan->segments;
}

/* ---- histogram ---- */

void apl_sorted_hist_values(const apl_sorted_plan *p, const float *x, size_t m, int64_t *hist)
{
    const double qscale = ldexp(0.5 / p->delta, APL_HIST_OFFSET_BITS);
    for (size_t i = 0; i < m; i++) {
        double v = (double)x[i];
        uint64_t k = apl_seg_find(p->index, v);
        hist_add(hist, k, offset_q(v, p->O[k], qscale), 0);
    }
}

apl_status apl_sorted_histogram(const apl_sorted_plan *p, const float *logits,
                                const int8_t *targets, size_t n, int64_t *hist, uint32_t *memo,
                                int threads, size_t *valid, apl_error *err)
{
    if (!p || !hist || (n && (!logits || !targets)))
        return apl_fail(err, APL_ERR_ARG, "sorted histogram: null argument");
    const int T = threads_for(threads, n), simd = simd_level(p), stream = n >= STREAM_MIN;
    const size_t words = apl_sorted_hist_len(p);
    const int atomic = T > 1 && p->segments > PRIVATE_MAX_SEGMENTS;
    const unsigned copies = !atomic && p->segments <= COPIES_MAX_SEGMENTS ? COPIES : 1;
    /* Per thread `copies` private histograms, unless adding atomically into hist; one thread
     * with one copy adds straight into hist. */
    const size_t per = (size_t)copies * words;
    int64_t *priv = NULL;
    if (!atomic && (T > 1 || copies > 1)) {
        priv = calloc((size_t)T * per, sizeof *priv);
        if (!priv)
            return apl_fail(err, APL_ERR_NOMEM, "sorted histogram: cannot allocate %d x %u "
                            "private histograms of %zu segments", T, copies, p->segments);
    }
    size_t nv = 0;
    memo_t *mm = (memo_t *)memo;
    if (T == 1) {
        nv = hist_range(p, simd, logits, targets, 0, n, priv ? priv : hist, words, copies, 0, mm,
                        stream);
    } else {
#pragma omp parallel num_threads(T) reduction(+ : nv)
        {
#ifdef _OPENMP
            const int i = omp_get_thread_num(), team = omp_get_num_threads();
#else
            const int i = 0, team = 1;
#endif
            size_t j0, j1;
            thread_range(n, team, i, &j0, &j1);
            nv += hist_range(p, simd, logits, targets, j0, j1,
                             atomic ? hist : priv + (size_t)i * per, words, copies, atomic, mm,
                             stream);
        }
    }
    if (priv) /* integer sums: the order of the partial histograms does not matter */
        for (size_t c = 0; c < (size_t)T * copies; c++)
            for (size_t w = 0; w < words; w++)
                hist[w] += priv[c * words + w];
    free(priv);
    if (valid)
        *valid = nv;
    return APL_OK;
}

/* ---- finish ---- */

apl_status apl_sorted_window_sums(const apl_sorted_plan *p, const int64_t *hist, double *out,
                                  apl_error *err)
{
    const size_t S = p->segments, np = p->np;
    uint64_t *C = malloc((S + 1) * sizeof *C);
    u128 *Y = malloc((S + 1) * sizeof *Y);
    if (!C || !Y) {
        free(C), free(Y);
        return apl_fail(err, APL_ERR_NOMEM, "sorted window sums: cannot allocate prefix sums "
                        "of %zu segments", S);
    }
    /* C[k], Y[k]: prefix sums over segments 0..k-1 of the count and of
     * Y = offset + count * E_k (positions from O_0, in 2^-52 ramp widths), mod 2^128. */
    C[0] = 0;
    Y[0] = 0;
    for (size_t k = 0; k < S; k++) {
        const int64_t *h = hist + APL_HIST_WORDS * k;
        uint64_t cnt = (uint64_t)h[0];
        u128 off = ((u128)(uint64_t)h[2] << APL_HIST_LIMB_BITS) + (uint64_t)h[1];
        C[k + 1] = C[k] + cnt;
        Y[k + 1] = Y[k] + off + (u128)cnt * p->E[k];
    }
    if (C[S] >= APL_HIST_MAX_ELEMENTS) {
        uint64_t total = C[S];
        free(C), free(Y);
        return apl_fail(err, APL_ERR_INPUT, "sorted window sums: %llu elements in the histogram: "
                        "at most 2^37 - 1 are exact", (unsigned long long)total);
    }
    /* Window i covers [lo_i, hi_i): every element at or above O[hi_i] = s_i + delta adds 1, one
     * in segment k of the window adds (q + E_k - E_lo) 2^-52. The bracket's true value is in
     * [0, n 2^53), so modular arithmetic gives it exactly; an empty window gives 0. */
    for (size_t i = 0; i < np; i++) {
        uint32_t l = p->lo[i], u = p->hi[i];
        uint64_t full = C[S] - C[u], cw = C[u] - C[l];
        u128 part = Y[u] - Y[l] - (u128)cw * p->E[l];
        out[i] = (double)full + i128_to_double(part) * 0x1p-52;
    }
    free(C), free(Y);
    return APL_OK;
}

double apl_sorted_ap_weights(size_t np, const double *a, const double *b, double *w,
                             double *pos_grad)
{
    /* apl_precision_recurrence writes 1 - prec_i into pos_grad, then it is scaled in place. */
    double loss = apl_precision_recurrence(np, a, b, w, pos_grad);
    for (size_t i = 0; i < np; i++)
        pos_grad[i] = -pos_grad[i] / (double)np;
    return loss;
}

apl_status apl_sorted_coefficients(apl_sorted_plan *p, const double *w, apl_error *err)
{
    const size_t S = p->segments, np = p->np;
    /* Weights in fixed point Wq_i = round(w_i 2^bits), bits chosen so sum Wq < 2^62: prefix
     * sums of open and closed windows are then exact integers, added and removed in any order
     * without a residue, and exactly 0 where no window is open. */
    double wsum = 0.0;
    for (size_t i = 0; i < np; i++) {
        if (!(w[i] >= 0.0) || !isfinite(w[i]))
            return apl_fail(err, APL_ERR_INPUT, "sorted coefficients: w[%zu] = %g: expected a "
                            "finite value >= 0", i, w[i]);
        wsum += w[i];
    }
    int e = 0;
    frexp(wsum * (1.0 + 0x1p-40) + 0x1p-1000, &e); /* wsum < 2^e */
    int bits = 61 - e;
    if (bits > 960) /* 2^-(bits+52) stays a normal double */
        bits = 960;
    const double inv_scale = ldexp(1.0, -bits), inv_scale_pos = ldexp(1.0, -bits - 52);
    const double inv2d = 0.5 / p->delta, inv_np = 1.0 / (double)np;
    uint64_t W = 0, F = 0; /* open, closed */
    u128 WE = 0;           /* sum over open windows of Wq_i E_lo_i */
    size_t ni = 0, nu = 0;
    for (size_t k = 0; k < S; k++) {
        /* Entrants first: a window may open and close at the same k. */
        for (; ni < np && p->lo[ni] == k; ni++) {
            uint64_t q = (uint64_t)rint(ldexp(w[ni], bits));
            W += q;
            WE += (u128)q * p->E[p->lo[ni]];
        }
        for (; nu < np && p->hi[nu] == k; nu++) {
            uint64_t q = (uint64_t)rint(ldexp(w[nu], bits));
            W -= q;
            WE -= (u128)q * p->E[p->lo[nu]];
            F += q;
        }
        /* A = sum_open w_i (O_k - L_i) / (2 delta) = sum_open Wq_i (E_k - E_lo_i) 2^-bits-52 */
        u128 A = (u128)W * p->E[k] - WE;
        double Fd = (double)F * inv_scale, Wd = (double)W * inv_scale;
        p->alpha[k] = (Fd + i128_to_double(A) * inv_scale_pos) * inv_np;
        p->beta[k] = Wd * inv2d * inv_np;
        block_of(p)->gamma[k] = p->alpha[k] - p->beta[k] * p->O[k];
    }
    return APL_OK;
}

apl_status apl_sorted_finish_ap(apl_sorted_plan *p, const int64_t *hist, double *loss,
                                apl_error *err)
{
    const size_t np = p->np;
    double *a = malloc(3 * np * sizeof *a);
    if (!a)
        return apl_fail(err, APL_ERR_NOMEM, "sorted finish: cannot allocate work for %zu "
                        "positives", np);
    double *b = a + np, *w = b + np;
    apl_status st = apl_sorted_window_sums(p, hist, b, err);
    if (st == APL_OK) {
        for (size_t i = 0; i < np; i++)
            a[i] = 0.5 + p->pos_sums[i];
        *loss = apl_sorted_ap_weights(np, a, b, w, p->pos_grad);
        st = apl_sorted_coefficients(p, w, err);
    }
    free(a);
    return st;
}

/* ---- apply ---- */

apl_status apl_sorted_apply(const apl_sorted_plan *p, const float *logits,
                            const int8_t *targets, size_t n, const uint32_t *memo, float *grad,
                            int threads, apl_error *err)
{
    if (!p || (n && (!logits || !targets || !grad)))
        return apl_fail(err, APL_ERR_ARG, "sorted apply: null argument");
    const int T = threads_for(threads, n), simd = simd_level(p), stream = n >= STREAM_MIN;
    const memo_t *mm = (const memo_t *)memo;
    size_t bad = (size_t)-1;
    if (T == 1) {
        bad = apply_range(p, simd, logits, targets, 0, n, mm, grad, stream);
    } else {
#pragma omp parallel num_threads(T) reduction(min : bad)
        {
#ifdef _OPENMP
            const int i = omp_get_thread_num(), team = omp_get_num_threads();
#else
            const int i = 0, team = 1;
#endif
            size_t j0, j1;
            thread_range(n, team, i, &j0, &j1);
            size_t b = apply_range(p, simd, logits, targets, j0, j1, mm, grad, stream);
            bad = b < bad ? b : bad;
        }
    }
    if (bad != (size_t)-1)
        return apl_fail(err, APL_ERR_INPUT, "sorted apply: logits[%zu] = %.9g is a positive "
                        "that is not in the plan", bad, (double)logits[bad]);
    return APL_OK;
}
