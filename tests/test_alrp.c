/* test_alrp.c: aLRP Loss (docs/SPEC_ALRP.md).
 *
 *   test_alrp fixtures DIR   the reference against the official code's float64 run (gradient,
 *                            grad_e, both losses to ~1e-12), then every variant that implements
 *                            aLRP against the same numbers through apl_accept
 *   test_alrp small          edge cases and a grid of generated inputs (ties included): every
 *                            aLRP variant against the reference, and the balance invariant
 *   test_alrp foot           the small-b hazard at RetinaNet batch 1 (2.6e6 elements): a positive
 *                            with positives above it and only a few negatives at the foot of its
 *                            ramp, delta 1 and 0.1
 *                            (and 1, 2, 3 threads bitwise)
 *   test_alrp threads        RetinaNet batch 1 with tied logits: agreement, and every threaded
 *                            aLRP variant bitwise the same with 1, 2 and 3 threads
 *   test_alrp large DIST D   RetinaNet batch 8 (2.1e7 elements)
 *
 * Balance (the paper's Theorem 2): |sum_V grad + sum_P grad| <= 1e-6 sum_P |grad|, sums in
 * double, for the reference, the fixtures and every variant.
 *
 * "Every aLRP variant" includes the GPU rows (skipped visibly without a device) and
 * thrust_sorted_cpu+: the CPU build of the GPU rows' aLRP source (see alrp_rows). */
#define _DEFAULT_SOURCE
#include "aploss/harness.h"
#include "check.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t count_positives(const int8_t *t, size_t n)
{
    size_t np = 0;
    for (size_t j = 0; j < n; j++)
        np += t[j] == 1;
    return np;
}

/* The balance invariant on any gradient (float or double through the accessor). */
static void check_balance(const char *what, const apl_problem *p, const float *gf,
                          const double *gd)
{
    double neg = 0.0, pos = 0.0, pos_abs = 0.0;
    for (size_t j = 0; j < p->n; j++) {
        double g = gf ? (double)gf[j] : gd[j];
        if (p->targets[j] == 0)
            neg += g;
        else if (p->targets[j] == 1) {
            pos += g;
            pos_abs += fabs(g);
        }
    }
    CHECK(fabs(neg + pos) <= 1e-6 * pos_abs, "%s: balance: sum_V %.17g, sum_P %.17g", what, neg,
          pos);
}

/* The rows checked for aLRP: every row of the table that implements it (the GPU ones skip
 * visibly without a device, and fail with APL_REQUIRE_GPU=1), and thrust_sorted_cpu with aLRP's
 * bit added. That row is no aLRP variant of its own (the table gives it AP only), but its
 * function runs kernels/common/thrust_sorted.inl for the problem's loss, and that file holds the
 * aLRP path of cuda_sorted and cuda_warp (alrp_middle, the adaptive fixed-point weights, the
 * positives' scatter, the exact fallback): its CPU build checks that logic where no GPU is. */
static size_t alrp_rows(apl_variant *rows, size_t cap)
{
    size_t count, m = 0;
    const apl_variant *v = apl_variants(&count);
    for (size_t i = 0; i < count && m < cap; i++)
        if (apl_variant_has_loss(&v[i], APL_LOSS_ALRP))
            rows[m++] = v[i];
    const apl_variant *t = apl_variant_find("thrust_sorted_cpu");
    if (t && t->fn && m < cap) {
        rows[m] = *t;
        rows[m].losses |= APL_LOSS_BIT(APL_LOSS_ALRP);
        rows[m++].name = "thrust_sorted_cpu+";
    }
    return m;
}

/* Runs every aLRP variant on p and compares with (g64, e64, ref) through apl_accept; checks the
 * balance of each. Prints one line per variant with its errors. */
static void check_variants(const char *what, const apl_problem *p, const double *g64,
                           const double *e64, const apl_result *ref)
{
    apl_variant v[32];
    const size_t count = alrp_rows(v, sizeof v / sizeof v[0]);
    float *grad = malloc((p->n + 1) * sizeof *grad);
    float *ge = malloc((p->n_aux + 1) * sizeof *ge);
    for (size_t i = 0; i < count && grad && ge; i++) {
        if (!check_runnable(&v[i]))
            continue;
        /* Poison the outputs: a variant must write every entry of both. */
        memset(grad, 0xff, (p->n + 1) * sizeof *grad);
        memset(ge, 0xff, (p->n_aux + 1) * sizeof *ge);
        apl_error err = {0};
        apl_result r = {0};
        apl_output out = {grad, ge};
        apl_status st = apl_run(&v[i], p, &out, &r, &err);
        CHECK(st == APL_OK, "%s/%s: %s", what, v[i].name, err.msg);
        if (st != APL_OK)
            continue;
        apl_verdict ag;
        apl_accept(p, grad, ge, &r, g64, e64, ref, &ag);
        char line[512];
        apl_verdict_format(&ag, line, sizeof line);
        printf("  %-18s %s\n", v[i].name, line);
        CHECK(ag.pass, "%s/%s: %s", what, v[i].name, line);
        char bw[256];
        snprintf(bw, sizeof bw, "%s/%s", what, v[i].name);
        check_balance(bw, p, grad, NULL);
    }
    free(grad), free(ge);
}

/* The reference and every variant on one problem; the reference's own balance too. */
static void check_problem(const char *what, const apl_problem *p)
{
    double *g64 = malloc((p->n + 1) * sizeof *g64), *e64 = malloc((p->n_aux + 1) * sizeof *e64);
    apl_result ref;
    apl_error err = {0};
    apl_status st = apl_reference(p, g64, e64, &ref, &err);
    CHECK(st == APL_OK, "%s: reference: %s", what, err.msg);
    if (st == APL_OK) {
        printf("%s: %zu elements, %zu positives, %zu valid negatives, delta %g: loss_cls %.12f "
               "loss_loc %.12f\n", what, p->n, ref.positives, ref.valid_negatives, p->delta,
               ref.loss, ref.loss_loc);
        check_balance(what, p, NULL, g64);
        check_variants(what, p, g64, e64, &ref);
    }
    free(g64), free(e64);
}

/* ---- fixtures ---- */

static double json_number(const char *path, const char *key)
{
    FILE *f = fopen(path, "rb");
    static char buf[1 << 16];
    char pat[64];
    if (!f)
        return NAN;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(buf, pat);
    if (!p || !(p = strchr(p, ':')))
        return NAN;
    return strtod(p + 1, NULL);
}

static double max_abs(const double *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

static double max_diff(const double *x, const double *y, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i] - y[i]));
    return m;
}

static void fixture(const char *dir, const char *name)
{
    char path[6][1024];
    const char *files[6] = {"logits.npy", "targets.npy", "eloc.npy", "grad_f64.npy",
                            "grad_eloc_f64.npy", "meta.json"};
    for (int f = 0; f < 6; f++)
        snprintf(path[f], sizeof path[f], "%.700s/%.250s/%s", dir, name, files[f]);
    double delta = json_number(path[5], "delta"), cls64 = json_number(path[5], "loss_cls_f64");
    double loc64 = json_number(path[5], "loss_loc_f64"), npos = json_number(path[5], "positives");
    double nvalid = json_number(path[5], "valid_negatives");
    CHECK(isfinite(delta) && isfinite(cls64) && isfinite(loc64) && isfinite(npos) &&
              isfinite(nvalid), "%s: cannot read meta.json", name);
    float *s = NULL, *e = NULL, *grad = NULL;
    int8_t *t = NULL;
    double *g64 = NULL, *ge64 = NULL, *ref = NULL, *refe = NULL;
    apl_shape ls, ts, gs, es;
    size_t ne = 0;
    apl_error err = {0};
    CHECK(apl_npy_read_logits(path[0], &s, &ls, &err) == APL_OK, "%s", err.msg);
    CHECK(apl_npy_read_targets(path[1], &t, &ts, &err) == APL_OK, "%s", err.msg);
    CHECK(apl_npy_read_aux(path[2], "eloc", &e, &ne, &err) == APL_OK, "%s", err.msg);
    CHECK(apl_npy_read_f64(path[3], &g64, &gs, &err) == APL_OK, "%s", err.msg);
    CHECK(apl_npy_read_f64(path[4], &ge64, &es, &err) == APL_OK, "%s", err.msg);
    if (!s || !t || !e || !g64 || !ge64)
        goto out;
    size_t n = apl_shape_count(&ls);
    CHECK(apl_shape_count(&ts) == n && apl_shape_count(&gs) == n, "%s: sizes differ", name);
    CHECK(apl_shape_count(&es) == ne && ne == count_positives(t, n), "%s: %zu errors for %zu "
          "positives", name, ne, count_positives(t, n));
    ref = malloc((n + 1) * sizeof *ref);
    refe = malloc((ne + 1) * sizeof *refe);
    grad = malloc((n + 1) * sizeof *grad);
    apl_problem p = {.loss = APL_LOSS_ALRP, .logits = s, .targets = t, .n = n, .delta = delta,
                     .aux = e, .n_aux = ne};

    /* The reference against the official float64 run: ~1e-12, far inside the contract. */
    apl_result r0;
    CHECK(apl_reference(&p, ref, refe, &r0, &err) == APL_OK, "%s: %s", name, err.msg);
    double gmax = max_abs(g64, n), emax = max_abs(ge64, ne);
    double gerr = max_diff(ref, g64, n), eerr = max_diff(refe, ge64, ne);
    printf("%-16s %5zu elements, %3zu positives, delta %g: reference grad %.2e, grad_e %.2e, "
           "loss_cls %.2e, loss_loc %.2e\n", name, n, r0.positives, delta, gerr / gmax,
           eerr / emax, fabs(r0.loss - cls64), fabs(r0.loss_loc - loc64));
    CHECK(gerr <= 1e-12 * gmax, "%s: reference gradient off by %g (max %g)", name, gerr, gmax);
    CHECK(eerr <= 1e-12 * emax, "%s: reference grad_e off by %g (max %g)", name, eerr, emax);
    CHECK(fabs(r0.loss - cls64) <= 1e-12, "%s: loss_cls %.17g, official %.17g", name, r0.loss,
          cls64);
    CHECK(fabs(r0.loss_loc - loc64) <= 1e-12, "%s: loss_loc %.17g, official %.17g", name,
          r0.loss_loc, loc64);
    CHECK((double)r0.positives == npos && (double)r0.valid_negatives == nvalid,
          "%s: %zu positives, %zu valid negatives; meta.json says %g, %g", name, r0.positives,
          r0.valid_negatives, npos, nvalid);
    check_balance(name, &p, NULL, g64);

    /* Every aLRP variant against the official numbers (the reference's counts). */
    apl_result official = r0;
    official.loss = cls64;
    official.loss_loc = loc64;
    check_variants(name, &p, g64, ge64, &official);
out:
    free(s), free(t), free(e), free(g64), free(ge64), free(ref), free(refe), free(grad);
}

static int fixtures(const char *dir)
{
    int cases = check_for_each_case(dir, fixture);
    if (cases < 0)
        return 1;
    CHECK(cases >= 4, "found %d aLRP fixture cases in %s, expected 4", cases, dir);
    return check_report("test_alrp fixtures");
}

/* ---- generated inputs ---- */

typedef struct {
    float *s, *e;
    int8_t *t;
    size_t n, np;
} gen_input;

static int generate(const apl_gen_params *g, gen_input *in)
{
    apl_error err = {0};
    *in = (gen_input){0};
    CHECK(apl_gen_count(g, &in->n, &err) == APL_OK, "%s", err.msg);
    in->s = malloc((in->n + 1) * sizeof *in->s);
    in->t = malloc(in->n + 1);
    if (!in->s || !in->t)
        return 0;
    CHECK(apl_generate(g, in->s, in->t, &err) == APL_OK, "%s", err.msg);
    in->np = count_positives(in->t, in->n);
    in->e = malloc((in->np + 1) * sizeof *in->e);
    apl_status st = apl_generate_aux(g, APL_LOSS_ALRP, in->t, in->n, in->e, in->np, &err);
    CHECK(st == APL_OK, "%s", err.msg);
    for (size_t k = 0; k < in->np; k++)
        CHECK(in->e[k] >= 0.0f && in->e[k] < 2.0f, "generated e[%zu] = %g", k, (double)in->e[k]);
    return st == APL_OK;
}

static void free_input(gen_input *in)
{
    free(in->s), free(in->t), free(in->e);
}

static apl_problem problem(const gen_input *in, double delta)
{
    return (apl_problem){.loss = APL_LOSS_ALRP, .logits = in->s, .targets = in->t, .n = in->n,
                         .delta = delta, .aux = in->e, .n_aux = in->np};
}

static void edge_cases(void)
{
    /* No positives: everything 0. */
    float s0[4] = {0.5f, -1.0f, 2.0f, 0.0f};
    int8_t t0[4] = {0, 0, -1, 0};
    apl_problem p = {.loss = APL_LOSS_ALRP, .logits = s0, .targets = t0, .n = 4, .delta = 1.0};
    check_problem("no positives", &p);
    double g[5]; /* the largest case below has 5 elements */
    apl_result r;
    CHECK(apl_reference(&p, g, NULL, &r, NULL) == APL_OK && r.loss == 0.0 && r.loss_loc == 0.0 &&
              g[0] == 0.0 && g[1] == 0.0 && g[3] == 0.0, "no positives: not all zero");

    /* No valid negatives (one pruned below thr): grad 0, loss_cls 0; loss_loc and grad_e by
     * their definitions: r = a = 1/2 + 1/2 + H, ... */
    float s1[4] = {1.0f, 1.5f, -3.0f, 4.0f};
    int8_t t1[4] = {1, 1, 0, -1};
    float e1[2] = {0.5f, 1.25f};
    p = (apl_problem){.loss = APL_LOSS_ALRP, .logits = s1, .targets = t1, .n = 4, .delta = 1.0,
                      .aux = e1, .n_aux = 2};
    check_problem("no valid negatives", &p);
    double ge[2];
    CHECK(apl_reference(&p, g, ge, &r, NULL) == APL_OK, "no valid negatives: reference failed");
    /* a_0 = 1/2 + 1/2 + H(0.5) = 1.75, a_1 = 1/2 + 1/2 + H(-0.5) = 1.25; pi = (1, 0). */
    double loc = (1.25 / 1.25 + (1.25 + 0.5) / 1.75) / 2.0;
    CHECK(r.loss == 0.0 && fabs(r.loss_loc - loc) < 1e-15 && g[0] == 0.0 && g[1] == 0.0,
          "no valid negatives: loss_cls %g, loss_loc %.17g (want %.17g)", r.loss, r.loss_loc, loc);
    /* The top positive's error is in every cumulative sum, the lower one's only in its own. */
    CHECK(fabs(ge[0] - 0.5 / 1.75) < 1e-15 && fabs(ge[1] - 0.5 * (1 / 1.25 + 1 / 1.75)) < 1e-15,
          "no valid negatives: grad_e %.17g %.17g", ge[0], ge[1]);

    /* b <= eps: the top positive sees one negative 1e-6 into its ramp; it passes nothing on,
     * yet counts in loss_cls (b/r) and |P|. */
    float s2[5] = {2.0f, 0.0f, 0.0f, 1.0000019073486328f, -0.5f};
    int8_t t2[5] = {1, 1, 0, 0, 0};
    float e2[2] = {0.3f, 0.7f};
    p = (apl_problem){.loss = APL_LOSS_ALRP, .logits = s2, .targets = t2, .n = 5, .delta = 1.0,
                      .aux = e2, .n_aux = 2};
    check_problem("b below eps", &p);
    CHECK(apl_reference(&p, g, ge, &r, NULL) == APL_OK && g[0] == 0.0 && g[1] < 0.0,
          "b below eps: grad of the top positive %g (want 0), of the other %g (want < 0)", g[0],
          g[1]);
}

static int small(void)
{
    edge_cases();
    static const struct {
        apl_dist dist;
        size_t anchors, classes;
        double pos_rate, delta;
        int grid; /* logits rounded to multiples of 1/grid: ties everywhere */
    } grid[] = {
        {APL_DIST_EARLY, 500, 20, 0.01, 1.0, 0},   {APL_DIST_MID, 2000, 10, 0.02, 1.0, 0},
        {APL_DIST_LATE, 2000, 10, 0.02, 0.5, 0},   {APL_DIST_MID, 1000, 8, 0.05, 0.1, 0},
        {APL_DIST_EARLY, 300, 10, 0.1, 0.25, 4},  {APL_DIST_MID, 3000, 4, 0.03, 1.0, 2},
        {APL_DIST_MID, 400, 5, 0.2, 2.0, 8},
    };
    for (size_t c = 0; c < sizeof grid / sizeof grid[0]; c++)
        for (uint64_t seed = 1; seed <= 3; seed++) {
            apl_gen_params g;
            apl_gen_defaults(&g);
            g.anchors = grid[c].anchors;
            g.classes = grid[c].classes;
            g.pos_rate = grid[c].pos_rate;
            g.dist = grid[c].dist;
            g.seed = seed;
            gen_input in;
            if (generate(&g, &in)) {
                if (grid[c].grid)
                    for (size_t j = 0; j < in.n; j++)
                        in.s[j] = roundf(in.s[j] * (float)grid[c].grid) / (float)grid[c].grid;
                char what[128];
                snprintf(what, sizeof what, "%s %zux%zu pos %g seed %llu%s", apl_dist_name(g.dist),
                         g.anchors, g.classes, g.pos_rate, (unsigned long long)seed,
                         grid[c].grid ? " (ties)" : "");
                apl_problem p = problem(&in, grid[c].delta);
                check_problem(what, &p);
            }
            free_input(&in);
        }
    return check_report("test_alrp small");
}

/* Every threaded aLRP variant gives bitwise the same loss_cls, loss_loc, gradient and grad_e
 * with 1, 2 and 3 threads (issue 10's promise, for aLRP's own finish and tie handling). */
static void check_threads(const char *what, const apl_problem *p0)
{
    size_t count;
    const apl_variant *v = apl_variants(&count);
    float *g[2] = {malloc((p0->n + 1) * sizeof(float)), malloc((p0->n + 1) * sizeof(float))};
    float *ge[2] = {malloc((p0->n_aux + 1) * sizeof(float)),
                    malloc((p0->n_aux + 1) * sizeof(float))};
    for (size_t i = 0; i < count && g[0] && g[1] && ge[0] && ge[1]; i++) {
        if (!v[i].threaded || !apl_variant_has_loss(&v[i], APL_LOSS_ALRP) ||
            !check_runnable(&v[i]))
            continue;
        apl_result r[2];
        for (int T = 1; T <= 3; T++) {
            const int k = T > 1;
            apl_problem p = *p0;
            p.threads = T;
            memset(g[k], 0x7f, p.n * sizeof(float)); /* every entry must be written */
            memset(ge[k], 0x7f, p.n_aux * sizeof(float));
            apl_error err = {0};
            apl_output out = {g[k], ge[k]};
            apl_status st = apl_run(&v[i], &p, &out, &r[k], &err);
            CHECK(st == APL_OK, "%s/%s, %d threads: %s", what, v[i].name, T, err.msg);
            if (st != APL_OK || T == 1)
                continue;
            CHECK(!memcmp(&r[0].loss, &r[1].loss, sizeof r[0].loss) &&
                      !memcmp(&r[0].loss_loc, &r[1].loss_loc, sizeof r[0].loss_loc),
                  "%s/%s: losses %.17g %.17g with %d threads, %.17g %.17g with 1", what,
                  v[i].name, r[1].loss, r[1].loss_loc, T, r[0].loss, r[0].loss_loc);
            size_t j = 0, e = 0;
            while (j < p.n && !memcmp(&g[0][j], &g[1][j], sizeof(float)))
                j++;
            while (e < p.n_aux && !memcmp(&ge[0][e], &ge[1][e], sizeof(float)))
                e++;
            CHECK(j == p.n, "%s/%s: grad[%zu] = %.9g with %d threads, %.9g with 1", what,
                  v[i].name, j, j < p.n ? (double)g[1][j] : 0.0, T,
                  j < p.n ? (double)g[0][j] : 0.0);
            CHECK(e == p.n_aux, "%s/%s: grad_e[%zu] differs with %d threads", what, v[i].name, e,
                  T);
        }
        printf("  %-18s 1, 2, 3 threads: checked bitwise\n", v[i].name);
    }
    free(g[0]), free(g[1]), free(ge[0]), free(ge[1]);
}

/* The small-b hazard (docs/SPEC_ALRP.md): RetinaNet batch 1, mid; then a foot positive i0 above
 * every other element, two positives above it (one inside its window, one above it) with
 * errors, so c_i0 > 0, and three negatives within 5e-4 of ramp width above s_i0 - delta, so
 * eps < b_i0 < 1e-3 and w_i0 = L/b is large. A fourth positive a little above i0 sees only the
 * top foot negative, far below eps. Logits like 0.1 that float32 cannot hold put the ramp's foot
 * between floats. */
static void foot(double delta)
{
    apl_gen_params g;
    apl_gen_defaults(&g);
    gen_input in;
    if (!generate(&g, &in) || in.np < 4) {
        CHECK(0, "foot: generated input has %zu positives", in.np);
        free_input(&in);
        return;
    }
    float top = in.s[0];
    for (size_t j = 1; j < in.n; j++)
        top = fmaxf(top, in.s[j]);
    const float s0 = (float)(ceil((double)top + delta) + 1.1);
    const double L0 = (double)s0 - delta, w2 = 2.0 * delta;
    /* The first four positives and the first three negatives in flat order. */
    size_t P[4], N[3], np = 0, nn = 0;
    for (size_t j = 0; j < in.n && (np < 4 || nn < 3); j++) {
        if (in.t[j] == 1 && np < 4)
            P[np++] = j;
        else if (in.t[j] == 0 && nn < 3)
            N[nn++] = j;
    }
    static const double foot_h[3] = {1.0e-4, 1.5e-4, 2.5e-4}; /* H against i0 */
    for (int q = 0; q < 3; q++)
        in.s[N[q]] = nextafterf((float)(L0 + foot_h[q] * w2), INFINITY);
    in.s[P[0]] = s0;
    in.s[P[1]] = (float)((double)s0 + 0.6 * delta);
    in.s[P[2]] = (float)((double)s0 + 1.7 * delta);
    in.s[P[3]] = (float)((double)s0 + 2.495e-4 * w2); /* its foot just below the top foot negative */
    /* The construction, checked: b and c of i0, b of the fourth positive. */
    double b0 = 0.0, b3 = 0.0;
    const double L3 = (double)in.s[P[3]] - delta;
    for (int q = 0; q < 3; q++) {
        b0 += fmax(0.0, ((double)in.s[N[q]] - L0) / w2);
        b3 += fmax(0.0, ((double)in.s[N[q]] - L3) / w2);
    }
    CHECK(b0 > 1e-5 && b0 < 1e-3 && b3 > 0.0 && b3 <= 1e-5, "foot: b_i0 = %g, b_i3 = %g", b0, b3);
    char what[64];
    snprintf(what, sizeof what, "foot, delta %g (b_i0 %.3g, b_i3 %.3g)", delta, b0, b3);
    apl_problem p = problem(&in, delta);
    check_problem(what, &p);
    check_threads(what, &p);
    free_input(&in);
}

/* RetinaNet batch 1 with logits rounded to 1/8 (positives tied with different e, whose L_i
 * differ): every variant against the reference, then 1, 2, 3 threads bitwise; the foot cases
 * are checked across threads in foot(). */
static int threads(void)
{
    apl_gen_params g;
    apl_gen_defaults(&g);
    g.dist = APL_DIST_LATE;
    gen_input in;
    if (generate(&g, &in)) {
        for (size_t j = 0; j < in.n; j++)
            in.s[j] = roundf(in.s[j] * 8.0f) / 8.0f;
        apl_problem p = problem(&in, 1.0);
        check_problem("RetinaNet batch 1 late, ties", &p);
        check_threads("RetinaNet batch 1 late, ties", &p);
    }
    free_input(&in);
    return check_report("test_alrp threads");
}

static int large(const char *dist, double delta)
{
    apl_gen_params g;
    apl_gen_defaults(&g);
    g.batch = 8;
    apl_error err = {0};
    CHECK(apl_dist_parse(dist, &g.dist, &err) == APL_OK, "%s", err.msg);
    gen_input in;
    if (generate(&g, &in)) {
        char what[64];
        snprintf(what, sizeof what, "RetinaNet batch 8 %s", dist);
        apl_problem p = problem(&in, delta);
        check_problem(what, &p);
    }
    free_input(&in);
    return check_report("test_alrp large");
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "small";
    if (!strcmp(mode, "fixtures"))
        return fixtures(argc > 2 ? argv[2] : APL_CASES_DIR "/../alrp");
    if (!strcmp(mode, "small"))
        return small();
    if (!strcmp(mode, "threads"))
        return threads();
    if (!strcmp(mode, "foot")) {
        foot(1.0);
        foot(0.1);
        return check_report("test_alrp foot");
    }
    if (!strcmp(mode, "large") && argc > 3)
        return large(argv[2], strtod(argv[3], NULL));
    fprintf(stderr, "usage: test_alrp fixtures [DIR] | small | foot | large DIST DELTA\n");
    return 2;
}
