/* test_pap.c: Parameterized AP Loss (docs/SPEC_PAP.md).
 *
 *   test_pap fixtures DIR   the reference against the official code's float64 run (gradient,
 *                           IoU gradient and loss to ~1e-12), then every variant that implements
 *                           PAP against the same numbers through apl_accept
 *   test_pap generated      generated cases with the three shipped parameter sets and a 4-row
 *                           set, top-K cuts through ties, logits on and next to breakpoints,
 *                           no positives, every positive below the cut; each variant against the
 *                           reference, the balance invariant, the same bits for any thread count
 *   test_pap large          40,000 rows with 400 positives, every parameter set
 *   test_pap checks         refusals: parameters, IoUs, counts
 *
 * Each mode prints the worst errors per variant it saw. */
#define _DEFAULT_SOURCE
#include "aploss/harness.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const set_names[] = {"retinanet", "rpn", "rcnn"};

/* Worst errors seen per variant (indexed like apl_variants). */
static double worst_grad[32], worst_aux[32], worst_loss[32];

static double json_number(const char *path, const char *key)
{
    FILE *f = fopen(path, "rb");
    char buf[4096] = {0}, pat[64];
    if (!f)
        return NAN;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    snprintf(pat, sizeof pat, "\"%s\":", key); /* the key, not a value such as "topk" */
    const char *p = strstr(buf, pat);
    if (!p)
        return NAN;
    return strtod(p + strlen(pat), NULL);
}

static size_t count_positives(const int8_t *t, size_t n)
{
    size_t np = 0;
    for (size_t j = 0; j < n; j++)
        np += t[j] == 1;
    return np;
}

/* |sum grad| <= 1e-6 sum |grad|, sums in double over the float32 output. */
static void check_balance(const char *label, const char *variant, const float *g, size_t n)
{
    double sum = 0.0, abs = 0.0;
    for (size_t j = 0; j < n; j++) {
        sum += g[j];
        abs += fabs(g[j]);
    }
    CHECK(fabs(sum) <= 1e-6 * abs, "%s, %s: sum of the gradient %.3g, sum of |grad| %.3g", label,
          variant, sum, abs);
}

/* Every PAP variant on p against (grad64, aux64, ref); the invariant; thread-count determinism
 * for the threaded rows. */
static void check_variants(const char *label, const apl_problem *p, const double *grad64,
                           const double *aux64, const apl_result *ref)
{
    size_t count;
    const apl_variant *v = apl_variants(&count);
    const size_t n = p->n, na = p->n_aux;
    float *g = malloc((n + 1) * sizeof *g), *ga = malloc((na + 1) * sizeof *ga);
    float *g2 = malloc((n + 1) * sizeof *g2), *ga2 = malloc((na + 1) * sizeof *ga2);
    for (size_t i = 0; i < count && i < 32; i++) {
        if (!apl_variant_has_loss(&v[i], APL_LOSS_PAP) || !check_runnable(&v[i]))
            continue;
        apl_problem q = *p;
        q.threads = 2;
        apl_output out = {g, ga};
        apl_result r;
        apl_error err = {0};
        apl_status st = apl_run(&v[i], &q, &out, &r, &err);
        CHECK(st == APL_OK, "%s, %s: %s", label, v[i].name, err.msg);
        if (st != APL_OK)
            continue;
        apl_verdict vd;
        apl_accept(p, g, ga, &r, grad64, aux64, ref, &vd);
        char line[512];
        apl_verdict_format(&vd, line, sizeof line);
        CHECK(vd.pass, "%s, %s: %s", label, v[i].name, line);
        worst_grad[i] = fmax(worst_grad[i], vd.max_rel_err);
        worst_aux[i] = fmax(worst_aux[i], vd.aux_max_rel_err);
        worst_loss[i] = fmax(worst_loss[i], vd.loss_err);
        check_balance(label, v[i].name, g, n);
        /* The same bits with 1 and 3 threads. */
        for (int th = 1; th <= 3; th += 2) {
            q.threads = th;
            apl_output o2 = {g2, ga2};
            apl_result r2;
            CHECK(apl_run(&v[i], &q, &o2, &r2, &err) == APL_OK, "%s", err.msg);
            CHECK(memcmp(g, g2, n * sizeof *g) == 0 && memcmp(ga, ga2, na * sizeof *ga) == 0 &&
                      r2.loss == r.loss,
                  "%s, %s: %d threads give other bits than 2", label, v[i].name, th);
        }
    }
    free(g), free(ga), free(g2), free(ga2);
}

/* The reference on p, then every variant against it. */
static void check_case(const char *label, const apl_problem *p)
{
    double *g64 = malloc((p->n + 1) * sizeof *g64), *a64 = malloc((p->n_aux + 1) * sizeof *a64);
    apl_result ref;
    apl_error err = {0};
    apl_status st = apl_reference(p, g64, a64, &ref, &err);
    CHECK(st == APL_OK, "%s: reference: %s", label, err.msg);
    if (st == APL_OK)
        check_variants(label, p, g64, a64, &ref);
    free(g64), free(a64);
}

static void print_worst(const char *what)
{
    size_t count;
    const apl_variant *v = apl_variants(&count);
    for (size_t i = 0; i < count && i < 32; i++)
        if (apl_variant_has_loss(&v[i], APL_LOSS_PAP) && apl_variant_runnable(&v[i], NULL))
            printf("  %-8s %-10s worst: grad %.2e of max|grad|, grad_iou %.2e, loss %.2e\n", what,
                   v[i].name, worst_grad[i], worst_aux[i], worst_loss[i]);
}

/* ---- fixtures ---- */

static void fixture(const char *dir, const char *name)
{
    char path[6][1024];
    const char *files[6] = {"logits", "targets", "iou", "ctrl", "grad_f64", "grad_iou_f64"};
    for (int f = 0; f < 6; f++)
        snprintf(path[f], sizeof path[f], "%.700s/%.100s/%s.npy", dir, name, files[f]);
    char meta[1024];
    snprintf(meta, sizeof meta, "%.700s/%.100s/meta.json", dir, name);
    double topk = json_number(meta, "topk"), loss64 = json_number(meta, "loss_f64");
    CHECK(isfinite(topk) && isfinite(loss64), "%s: cannot read meta.json", name);
    float *s = NULL, *iou = NULL, *ctrl = NULL;
    int8_t *t = NULL;
    double *g64 = NULL, *a64 = NULL;
    apl_shape ls, ts, cs, gs, as;
    size_t niou = 0;
    apl_error err = {0};
    CHECK(apl_npy_read_logits(path[0], &s, &ls, &err) == APL_OK, "%s", err.msg);
    CHECK(apl_npy_read_targets(path[1], &t, &ts, &err) == APL_OK, "%s", err.msg);
    CHECK(apl_npy_read_aux(path[2], "iou", &iou, &niou, &err) == APL_OK, "%s", err.msg);
    CHECK(apl_npy_read_logits(path[3], &ctrl, &cs, &err) == APL_OK, "%s", err.msg);
    CHECK(apl_npy_read_f64(path[4], &g64, &gs, &err) == APL_OK, "%s", err.msg);
    CHECK(apl_npy_read_f64(path[5], &a64, &as, &err) == APL_OK, "%s", err.msg);
    if (!s || !t || !iou || !ctrl || !g64 || !a64)
        goto out;
    size_t n = apl_shape_count(&ls);
    CHECK(cs.ndim == 2 && cs.dims[1] == 12, "%s: ctrl.npy is not rows x 12", name);
    apl_problem p = {.loss = APL_LOSS_PAP, .logits = s, .targets = t, .n = n, .aux = iou,
                     .n_aux = niou, .params = ctrl, .param_rows = (int)cs.dims[0],
                     .topk = (size_t)topk};
    double *r64 = malloc((n + 1) * sizeof *r64), *ra64 = malloc((niou + 1) * sizeof *ra64);
    apl_result ref;
    apl_status st = apl_reference(&p, r64, ra64, &ref, &err);
    CHECK(st == APL_OK, "%s: reference: %s", name, err.msg);
    if (st == APL_OK) {
        double mg = 0, eg = 0, ma = 0, ea = 0;
        for (size_t j = 0; j < n; j++)
            mg = fmax(mg, fabs(g64[j])), eg = fmax(eg, fabs(r64[j] - g64[j]));
        for (size_t k = 0; k < niou; k++)
            ma = fmax(ma, fabs(a64[k])), ea = fmax(ea, fabs(ra64[k] - a64[k]));
        printf("%-8s %4zu elements, %2zu positives, K %g: reference vs official float64: grad "
               "%.2e, grad_iou %.2e (relative), loss %.2e\n",
               name, n, ref.positives, topk, eg / mg, ea / ma, fabs(ref.loss - loss64));
        CHECK(eg <= 1e-12 * mg && ea <= 1e-12 * ma && fabs(ref.loss - loss64) <= 1e-12,
              "%s: the reference misses the official float64 run", name);
        CHECK(ref.positives == niou, "%s: %zu positives, %zu IoUs", name, ref.positives, niou);
        /* The variants against the official numbers themselves. */
        apl_result off = ref;
        off.loss = loss64;
        check_variants(name, &p, g64, a64, &off);
    }
    free(r64), free(ra64);
out:
    free(s), free(t), free(iou), free(ctrl), free(g64), free(a64);
}

/* ---- generated ---- */

typedef struct {
    float *s, *iou;
    int8_t *t;
    size_t n, np;
} gen_case;

static void gen(gen_case *c, size_t anchors, size_t classes, double pos_rate, apl_dist dist,
                uint64_t seed)
{
    apl_gen_params g;
    apl_gen_defaults(&g);
    g.anchors = anchors, g.classes = classes, g.pos_rate = pos_rate, g.dist = dist, g.seed = seed;
    apl_error err = {0};
    CHECK(apl_gen_count(&g, &c->n, &err) == APL_OK, "%s", err.msg);
    c->s = malloc(c->n * sizeof *c->s);
    c->t = malloc(c->n);
    CHECK(apl_generate(&g, c->s, c->t, &err) == APL_OK, "%s", err.msg);
    c->np = count_positives(c->t, c->n);
    c->iou = malloc((c->np + 1) * sizeof *c->iou);
    CHECK(apl_generate_aux(&g, APL_LOSS_PAP, c->t, c->n, c->iou, c->np, &err) == APL_OK, "%s",
          err.msg);
}

static void gen_free(gen_case *c)
{
    free(c->s), free(c->t), free(c->iou);
}

static apl_problem problem(const gen_case *c, const float *params, int rows, size_t topk)
{
    return (apl_problem){.loss = APL_LOSS_PAP, .logits = c->s, .targets = c->t, .n = c->n,
                         .aux = c->iou, .n_aux = c->np, .params = params, .param_rows = rows,
                         .topk = topk};
}

/* Every parameter set (and the 4-row form of the first) at the given K values. */
static void all_sets(const char *what, const gen_case *c, const size_t *ks, int nk)
{
    for (int set = 0; set < 4; set++) {
        const float *params;
        int rows;
        apl_error err = {0};
        CHECK(apl_pap_params(set_names[set % 3], &params, &rows, &err) == APL_OK, "%s", err.msg);
        if (set == 3)
            rows = 4; /* H1 becomes the step */
        for (int k = 0; k < nk; k++) {
            char label[256];
            snprintf(label, sizeof label, "%s, %s%s, K %zu", what, set_names[set % 3],
                     set == 3 ? " (4 rows)" : "", ks[k]);
            apl_problem p = problem(c, params, rows, ks[k]);
            check_case(label, &p);
        }
    }
}

static void generated(void)
{
    /* Ordinary cases in each distribution, untruncated and cut. */
    for (int d = 0; d < 3; d++) {
        gen_case c;
        gen(&c, 60, 20, 0.05, (apl_dist)d, 7 + (uint64_t)d);
        size_t ks[] = {0, 1, 37, c.n / 2, c.n};
        all_sets(apl_dist_name((apl_dist)d), &c, ks, 5);
        gen_free(&c);
    }
    /* Ties: logits on a 1/4 grid, so every cut falls inside a run of equal logits and equal
     * logits sit on one another's breakpoints. */
    {
        gen_case c;
        gen(&c, 40, 10, 0.1, APL_DIST_MID, 99);
        for (size_t j = 0; j < c.n; j++)
            c.s[j] = roundf(c.s[j] * 4.0f) / 4.0f;
        size_t ks[] = {0, 5, 50, 101, 200, 333};
        all_sets("ties", &c, ks, 6);
        gen_free(&c);
    }
    /* Near breakpoints: negatives on every H2 and H1 breakpoint of a positive (as float32, so
     * on it or within an ulp) and on both float neighbours. */
    for (int set = 0; set < 3; set++) {
        const float *params;
        int rows;
        apl_error err = {0};
        CHECK(apl_pap_params(set_names[set], &params, &rows, &err) == APL_OK, "%s", err.msg);
        gen_case c;
        gen(&c, 30, 4, 0.1, APL_DIST_LATE, 5 + (uint64_t)set);
        /* Use the negatives in flat order as the slots. */
        size_t slot = 0;
        for (size_t i = 0; i < c.n && slot < c.n; i++) {
            if (c.t[i] != 1)
                continue;
            for (int f = 0; f < 5; f += 4) /* H2 and H1 */
                for (int m = 0; m < 6; m++) {
                    double B = (double)c.s[i] + 2.0 * (double)params[12 * f + 2 * m] - 1.0;
                    float b = (float)B, near[3] = {nextafterf(b, -INFINITY), b,
                                                   nextafterf(b, INFINITY)};
                    for (int q = 0; q < 3; q++) {
                        while (slot < c.n && c.t[slot] != 0)
                            slot++;
                        if (slot < c.n)
                            c.s[slot++] = near[q];
                    }
                }
        }
        char label[64];
        snprintf(label, sizeof label, "near breakpoints (%s)", set_names[set]);
        apl_problem p = problem(&c, params, rows, 0);
        check_case(label, &p);
        p.topk = c.n / 3;
        check_case(label, &p);
        gen_free(&c);
    }
    /* No positives: loss 0, every gradient exactly 0. */
    {
        gen_case c;
        gen(&c, 50, 8, 0.0, APL_DIST_MID, 3);
        size_t ks[] = {0, 10};
        all_sets("no positives", &c, ks, 2);
        gen_free(&c);
    }
    /* Every positive below the cut: columns only, no row gradient at any positive. */
    {
        gen_case c;
        gen(&c, 50, 8, 0.05, APL_DIST_MID, 4);
        for (size_t j = 0, moved = 0; j < c.n && moved < 30; j++)
            if (c.t[j] == 0) { /* some negatives far above every positive */
                c.s[j] += 12.0f;
                moved++;
            }
        float top = -INFINITY;
        for (size_t j = 0; j < c.n; j++)
            if (c.t[j] == 1)
                top = fmaxf(top, c.s[j]);
        size_t above = 0;
        for (size_t j = 0; j < c.n; j++)
            if (c.t[j] == 0 && c.s[j] > top)
                above++;
        CHECK(above > 0, "no negative above every positive");
        size_t ks[] = {above > 0 ? above : 1};
        all_sets("positives below the cut", &c, ks, 1);
        gen_free(&c);
    }
    print_worst("generated");
}

static void large(void)
{
    /* 500 anchors x 80 classes = 40,000 rows, about 400 positives. */
    gen_case c;
    gen(&c, 500, 80, 0.8, APL_DIST_MID, 2024);
    printf("large: %zu elements, %zu positives\n", c.n, c.np);
    CHECK(c.n == 40000 && c.np >= 380 && c.np <= 420, "large: %zu elements, %zu positives", c.n,
          c.np);
    size_t ks[] = {0, 100000, 12345};
    all_sets("40000 rows", &c, ks, 3);
    gen_free(&c);
    print_worst("large");
}

/* ---- refusals ---- */

static void checks(void)
{
    float s[6] = {0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -3.0f};
    int8_t t[6] = {1, 0, 1, -1, 0, 0};
    float iou[2] = {0.3f, 0.9f};
    const float *shipped;
    int rows;
    apl_error err = {0};
    CHECK(apl_pap_params("retinanet", &shipped, &rows, &err) == APL_OK && rows == 5, "%s",
          err.msg);
    CHECK_ERR(apl_pap_params("yolo", &shipped, &rows, &err), &err, APL_ERR_ARG,
              "expected retinanet, rpn or rcnn");
    /* The shipped sets: RetinaNet's H2 inner points as float32. */
    CHECK(shipped[2] == 0.4182f && shipped[3] == 0.0277f, "retinanet H2 x1, y1");
    for (int i = 0; i < 3; i++) {
        CHECK(apl_pap_params(set_names[i], &shipped, &rows, &err) == APL_OK, "%s", err.msg);
        CHECK(apl_check_pap_params(shipped, rows, &err) == APL_OK, "%s: %s", set_names[i],
              err.msg);
    }
    float params[60];
    apl_pap_params("rcnn", &shipped, &rows, &err);
    memcpy(params, shipped, sizeof params);
    apl_problem p = {.loss = APL_LOSS_PAP, .logits = s, .targets = t, .n = 6, .aux = iou,
                     .n_aux = 2, .params = params, .param_rows = 5};
    CHECK(apl_check_problem(&p, &err) == APL_OK, "%s", err.msg);
    /* delta is not read: any value, 0 included, is fine. */
    p.delta = -5.0;
    CHECK(apl_check_problem(&p, &err) == APL_OK, "delta should not matter: %s", err.msg);
    p.param_rows = 3;
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_INPUT, "3 rows: expected 4 or 5");
    p.param_rows = 6;
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_INPUT, "6 rows: expected 4 or 5");
    p.param_rows = 4;
    CHECK(apl_check_problem(&p, &err) == APL_OK, "4 rows: %s", err.msg);
    p.param_rows = 5;
    params[12 + 4] = 0.05f; /* I2's x2 below x1 = .0978 */
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_INPUT,
              "pap parameters[1] (I2): x2 = 0.05 after x1 = 0.0978");
    params[12 + 4] = 0.0978f; /* equal: not strictly increasing */
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_INPUT, "strictly increasing");
    memcpy(params, shipped, sizeof params);
    params[3] = 0.9f; /* H2's y1 above y2 */
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_INPUT,
              "pap parameters[0] (H2): y2 = 0.2461 after y1 = 0.9: the y's must not decrease");
    memcpy(params, shipped, sizeof params);
    params[48 + 10] = 0.99f; /* H1 ends before 1 */
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_INPUT, "(H1): last point (0.99, 1)");
    memcpy(params, shipped, sizeof params);
    params[36 + 1] = 0.1f; /* I1 starts above 0 */
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_INPUT, "(I1): first point (0, 0.1)");
    memcpy(params, shipped, sizeof params);
    params[24 + 5] = NAN;
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_INPUT,
              "pap parameters[2][5] (I3 y2) = nan: expected a finite value");
    memcpy(params, shipped, sizeof params);
    p.params = NULL;
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_ARG, "null");
    p.params = params;
    /* IoUs */
    iou[1] = 1.5f;
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_INPUT,
              "iou[1] = 1.5: expected a finite value in [0, 1]");
    iou[1] = -0.25f;
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_INPUT, "iou[1] = -0.25");
    iou[1] = NAN;
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_INPUT, "iou[1] = nan");
    iou[1] = 1.0f;
    CHECK(apl_check_problem(&p, &err) == APL_OK, "IoU 1 is in range: %s", err.msg);
    p.n_aux = 1;
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_INPUT,
              "iou has 1 values: expected one per positive (2)");
    p.n_aux = 2;
    /* The element checks are the shared ones. */
    t[3] = 2;
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_INPUT, "targets[3] = 2");
    t[3] = -1;
    s[4] = INFINITY;
    CHECK_ERR(apl_check_problem(&p, &err), &err, APL_ERR_INPUT, "logits[4] = inf");
    s[4] = 1.0f;
    /* A variant without PAP refuses by name. */
    const apl_variant *pr = apl_variant_find("pruned");
    if (pr && !apl_variant_has_loss(pr, APL_LOSS_PAP)) {
        float g[6];
        apl_output out = {g, NULL};
        CHECK_ERR(apl_run(pr, &p, &out, NULL, &err), &err, APL_ERR_UNAVAILABLE,
                  "does not implement loss pap");
    }
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "fixtures") == 0) {
        const char *names[] = {"near_bp", "ties", "topk", "random"};
        for (int i = 0; i < 4; i++)
            fixture(argv[2], names[i]);
        print_worst("fixtures");
    } else if (argc >= 2 && strcmp(argv[1], "generated") == 0) {
        generated();
    } else if (argc >= 2 && strcmp(argv[1], "large") == 0) {
        large();
    } else if (argc >= 2 && strcmp(argv[1], "checks") == 0) {
        checks();
    } else {
        fprintf(stderr, "usage: test_pap fixtures DIR | generated | large | checks\n");
        return 2;
    }
    return check_report("test_pap");
}
