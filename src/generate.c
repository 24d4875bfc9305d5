/* generate.c: the one input generator, shared by tests, CLI and benchmarks.
 *
 * Counter-based: every random number is a hash of (seed, stream, index), so the output is the
 * same on every machine and does not depend on the order of generation. Scores are Irwin-Hall
 * sums of four uniforms scaled to unit variance (bell-shaped, bounded at +-3.46 sd), computed
 * without libm so no platform's rounding can change them.
 *
 * A detector's target assignment: an anchor is ignored (all classes -1) with ignore_rate,
 * positive with pos_rate (one random class 1, the others 0), otherwise negative (all 0).
 */
#include "aploss/harness.h"

#include <string.h>

typedef struct {
    double neg_mean, neg_sd;   /* bulk of negatives */
    double hard_frac;          /* fraction of negatives drawn from the hard-negative tail */
    double hard_mean, hard_sd; /* hard negatives, overlapping the positives */
    double pos_mean, pos_sd;
} dist_shape;

/* early: RetinaNet's prior-0.01 start (bias -log(99) = -4.6), everything overlaps.
 * mid / late: the bulk of negatives sinks below the pruning threshold, a tail of hard negatives
 * stays among the positives. */
static const dist_shape shapes[] = {
    [APL_DIST_EARLY] = {-4.6, 0.25, 0.0, 0.0, 1.0, -4.5, 0.3},
    [APL_DIST_MID] = {-7.0, 1.0, 0.01, -2.5, 1.5, -0.5, 1.5},
    [APL_DIST_LATE] = {-10.0, 1.0, 0.001, -1.0, 1.5, 2.5, 1.5},
};
static const char *const dist_names[] = {"early", "mid", "late"};

const char *apl_dist_name(apl_dist d)
{
    return (unsigned)d < 3 ? dist_names[d] : "?";
}

apl_status apl_dist_parse(const char *name, apl_dist *d, apl_error *err)
{
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, dist_names[i]) == 0) {
            *d = (apl_dist)i;
            return APL_OK;
        }
    return apl_fail(err, APL_ERR_ARG, "unknown distribution '%s': expected early, mid or late",
                    name ? name : "(null)");
}

void apl_gen_defaults(apl_gen_params *p)
{
    p->batch = 1;
    p->anchors = APL_RETINANET_ANCHORS;
    p->classes = APL_COCO_CLASSES;
    p->pos_rate = 1e-3; /* about 33 positive anchors per RetinaNet image */
    p->ignore_rate = 0.01;
    p->dist = APL_DIST_MID;
    p->seed = APL_DEFAULT_SEED;
}

/* STREAM_SCORE uses four streams (one per uniform of bell()); STREAM_AUX comes after them. */
enum { STREAM_ANCHOR, STREAM_CLASS, STREAM_MIX, STREAM_SCORE, STREAM_AUX = STREAM_SCORE + 4 };

static uint64_t mix64(uint64_t z) /* splitmix64's finaliser */
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t seed, uint64_t stream, uint64_t index)
{
    return mix64(mix64(seed ^ (stream * 0x9e3779b97f4a7c15ULL)) + index * 0xd1b54a32d192ed03ULL);
}

static double uniform(uint64_t seed, uint64_t stream, uint64_t index)
{
    return (double)(rnd(seed, stream, index) >> 11) * 0x1p-53;
}

static double bell(uint64_t seed, uint64_t index)
{
    double sum = 0.0;
    for (uint64_t k = 0; k < 4; k++)
        sum += uniform(seed, STREAM_SCORE + k, index);
    return (sum - 2.0) * 1.7320508075688772; /* variance of the sum is 4/12 */
}

apl_status apl_gen_count(const apl_gen_params *p, size_t *n, apl_error *err)
{
    if (!(p->pos_rate >= 0.0 && p->pos_rate <= 1.0))
        return apl_fail(err, APL_ERR_ARG, "pos-rate = %g: expected a value in [0, 1]", p->pos_rate);
    if (!(p->ignore_rate >= 0.0 && p->ignore_rate <= 1.0))
        return apl_fail(err, APL_ERR_ARG, "ignore-rate = %g: expected a value in [0, 1]",
                        p->ignore_rate);
    if (p->pos_rate + p->ignore_rate > 1.0)
        return apl_fail(err, APL_ERR_ARG, "pos-rate + ignore-rate = %g: must not exceed 1",
                        p->pos_rate + p->ignore_rate);
    if ((unsigned)p->dist > APL_DIST_LATE)
        return apl_fail(err, APL_ERR_ARG, "unknown distribution %d", (int)p->dist);
    if (p->batch == 0 || p->anchors == 0 || p->classes == 0)
        return apl_fail(err, APL_ERR_ARG, "batch, anchors and classes must all be >= 1");
    size_t na = p->batch, n_el;
    if (__builtin_mul_overflow(na, p->anchors, &na) || __builtin_mul_overflow(na, p->classes, &n_el))
        return apl_fail(err, APL_ERR_ARG, "batch * anchors * classes overflows size_t");
    *n = n_el;
    return APL_OK;
}

apl_status apl_generate(const apl_gen_params *p, float *logits, int8_t *targets, apl_error *err)
{
    size_t n;
    apl_status st = apl_gen_count(p, &n, err);
    if (st != APL_OK)
        return st;
    const dist_shape *d = &shapes[p->dist];
    size_t anchors = n / p->classes;
    for (size_t a = 0; a < anchors; a++) {
        double u = uniform(p->seed, STREAM_ANCHOR, a);
        int kind = u < p->ignore_rate ? -1 : (u < p->ignore_rate + p->pos_rate ? 1 : 0);
        /* Multiply-shift maps 64 random bits onto [0, classes) without a modulo's bias. */
        size_t pos_class = (size_t)(((unsigned __int128)rnd(p->seed, STREAM_CLASS, a) *
                                     p->classes) >> 64);
        for (size_t c = 0; c < p->classes; c++) {
            size_t i = a * p->classes + c;
            double z = bell(p->seed, i), s;
            if (kind == 1 && c == pos_class) {
                targets[i] = 1;
                s = d->pos_mean + d->pos_sd * z;
            } else {
                targets[i] = (int8_t)(kind == -1 ? -1 : 0);
                if (uniform(p->seed, STREAM_MIX, i) < d->hard_frac)
                    s = d->hard_mean + d->hard_sd * z;
                else
                    s = d->neg_mean + d->neg_sd * z;
            }
            logits[i] = (float)s;
        }
    }
    return APL_OK;
}

apl_status apl_generate_aux(const apl_gen_params *p, apl_loss loss, const int8_t *targets,
                            size_t n, float *aux, size_t n_aux, apl_error *err)
{
    size_t np = 0;
    for (size_t j = 0; targets && j < n; j++)
        np += targets[j] == 1;
    switch (loss) {
    case APL_LOSS_AP:
        if (n_aux != 0)
            return apl_fail(err, APL_ERR_ARG, "loss ap takes no per-positive values (got %zu)",
                            n_aux);
        return APL_OK;
    case APL_LOSS_ALRP:
        if (n_aux != np)
            return apl_fail(err, APL_ERR_ARG, "eloc has room for %zu values: expected one per "
                            "positive (%zu)", n_aux, np);
        if (np > 0 && !aux)
            return apl_fail(err, APL_ERR_ARG, "null eloc for %zu positives", np);
        /* 1 - GIoU of a regressed box, in [0, 2): 2 u^2 puts most of the mass below 1 as for a
         * trained head. u has 24 bits, so 2 u^2 <= 2 - 2^-22 + 2^-47, which rounds to a float
         * below 2. The k-th positive's value depends only on (seed, k). */
        for (size_t k = 0; k < np; k++) {
            double u = (double)(rnd(p->seed, STREAM_AUX, k) >> 40) * 0x1p-24;
            aux[k] = (float)(2.0 * u * u);
        }
        return APL_OK;
    case APL_LOSS_PAP:
        if (n_aux != np)
            return apl_fail(err, APL_ERR_ARG, "iou has room for %zu values: expected one per "
                            "positive (%zu)", n_aux, np);
        if (np > 0 && !aux)
            return apl_fail(err, APL_ERR_ARG, "null iou for %zu positives", np);
        /* (GIoU + 1)/2 of a regressed box, in [0, 1): uniform, so every piece of the I-functions
         * is visited. 24 bits: exact in float. Same stream as aLRP's e, another map. */
        for (size_t k = 0; k < np; k++)
            aux[k] = (float)((double)(rnd(p->seed, STREAM_AUX, k) >> 40) * 0x1p-24);
        return APL_OK;
    default:
        return apl_fail(err, APL_ERR_UNAVAILABLE, "generator: loss %s has no generated inputs yet",
                        apl_loss_name(loss));
    }
}
