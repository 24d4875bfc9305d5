/* test_threads.c: every CPU variant and the reference are safe to call from several threads at
 * once (aploss.h promises it). Each round starts 4 threads on 4 different inputs; each thread
 * calls the reference and every runnable CPU variant (in an order rotated per thread, so different
 * variants overlap) and checks the variants with apl_accept, and the reference bit for bit,
 * against results computed beforehand on one thread. Any shared state among calls (the old
 * reference kept its sort context in a global: 1-3 wrong losses in 400 calls) shows as a
 * mismatch. Usage: test_threads [ROUNDS] (default 200, all of which must pass).
 *
 * Losses: each one the reference implements (aLRP with e per positive; PAP with an IoU per
 * positive and the shipped RetinaNet parameters of the fixture tests/cases/pap/random). A CPU
 * variant implementing a loss the reference does not is a failure. */
#include "aploss/harness.h"
#include "check.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define INPUTS 4

typedef struct {
    apl_problem p;         /* logits, targets, aux owned here */
    double *grad64, *aux64; /* the reference's answer, computed on one thread */
    apl_result ref;
} input;

typedef struct {
    const input *in;
    const apl_variant *const *variants;
    size_t nvariants, first; /* variants[(first + k) % nvariants] */
    int round, id;
    int failures;
    char first_failure[APL_MSG_LEN + 256];
} job;

static input inputs[APL_LOSS_COUNT][INPUTS];
static int loss_covered[APL_LOSS_COUNT];

/* Records a failure of `who` in this thread; the main thread reports the first one. */
static void fail(job *j, const char *who, const char *why)
{
    if (j->failures++ == 0)
        snprintf(j->first_failure, sizeof j->first_failure, "round %d, thread %d: %s: %s", j->round,
                 j->id, who, why);
}

static void *worker(void *arg)
{
    job *j = arg;
    const input *in = j->in;
    const apl_problem *p = &in->p;
    float *grad = malloc((p->n + 1) * sizeof *grad);
    float *aux = malloc((p->n_aux + 1) * sizeof *aux);
    double *g64 = malloc((p->n + 1) * sizeof *g64);
    double *a64 = malloc((p->n_aux + 1) * sizeof *a64);
    if (!grad || !aux || !g64 || !a64) {
        fail(j, "worker", "out of memory");
        goto out;
    }
    /* The variants, with the reference's call placed among them at a rotating position. */
    for (size_t k = 0; k <= j->nvariants; k++) {
        apl_error err = {0};
        apl_result res;
        if (k == j->first % (j->nvariants + 1)) {
            apl_status st = apl_reference(p, g64, in->aux64 ? a64 : NULL, &res, &err);
            if (st != APL_OK)
                fail(j, "reference", err.msg);
            else if (memcmp(g64, in->grad64, p->n * sizeof *g64) != 0 ||
                     (in->aux64 && memcmp(a64, in->aux64, p->n_aux * sizeof *a64) != 0) ||
                     res.loss != in->ref.loss || res.loss_loc != in->ref.loss_loc ||
                     res.positives != in->ref.positives ||
                     res.valid_negatives != in->ref.valid_negatives)
                fail(j, "reference", "differs from its single-threaded answer");
            continue;
        }
        const apl_variant *v = j->variants[(j->first + k) % j->nvariants];
        memset(grad, 0xff, p->n * sizeof *grad); /* NaN: a variant must write every element */
        memset(aux, 0xff, p->n_aux * sizeof *aux);
        apl_output out = {grad, in->aux64 ? aux : NULL};
        apl_status st = apl_run(v, p, &out, &res, &err);
        if (st != APL_OK) {
            fail(j, v->name, err.msg);
            continue;
        }
        apl_verdict verdict;
        apl_accept(p, grad, out.grad_aux, &res, in->grad64, in->aux64, &in->ref, &verdict);
        if (!verdict.pass) {
            char msg[APL_MSG_LEN];
            apl_verdict_format(&verdict, msg, sizeof msg);
            fail(j, v->name, msg);
        }
    }
out:
    free(grad);
    free(aux);
    free(g64);
    free(a64);
    return NULL;
}

/* Input i of loss l: small (a few thousand elements, tens of positives), each input different
 * in seed, score distribution and delta. */
static int make_input(apl_loss l, int i, input *in)
{
    apl_gen_params g;
    apl_gen_defaults(&g);
    /* aLRP and PAP cost more per element (PAP's reference: |S| x |P| piecewise functions). */
    g.anchors = (l == APL_LOSS_AP ? 600 : 150) + 50 * (size_t)i;
    g.classes = 8;
    g.pos_rate = 0.1;
    g.ignore_rate = 0.05;
    static const apl_dist dists[INPUTS] = {APL_DIST_MID, APL_DIST_EARLY, APL_DIST_LATE,
                                           APL_DIST_MID};
    g.dist = dists[i];
    g.seed = 1000u + 17u * (unsigned)i + 101u * (unsigned)l;
    static const double deltas[INPUTS] = {1.0, 0.5, 4.0, 0.25};
    apl_error err = {0};
    size_t n;
    CHECK(apl_gen_count(&g, &n, &err) == APL_OK, "%s", err.msg);
    float *s = malloc(n * sizeof *s);
    int8_t *t = malloc(n);
    in->grad64 = malloc(n * sizeof *in->grad64);
    if (!s || !t || !in->grad64)
        return 0;
    CHECK(apl_generate(&g, s, t, &err) == APL_OK, "%s", err.msg);
    in->p = (apl_problem){.loss = l, .logits = s, .targets = t, .n = n, .delta = deltas[i]};
    if (l != APL_LOSS_AP) { /* aLRP: e, PAP: IoU; in [0, 1) per positive, in their flat order */
        size_t np = 0;
        for (size_t j = 0; j < n; j++)
            np += t[j] == 1;
        float *e = malloc((np + 1) * sizeof *e);
        in->aux64 = malloc((np + 1) * sizeof *in->aux64);
        if (!e || !in->aux64)
            return 0;
        for (size_t k = 0; k < np; k++)
            e[k] = (float)((k * 7919 + (size_t)i * 31) % 1000) / 1000.0f;
        in->p.aux = e;
        in->p.n_aux = np;
    }
    if (l == APL_LOSS_PAP) { /* the shipped RetinaNet parameters, from a fixture; every entry */
        static float *ctrl;
        static apl_shape cs;
        if (!ctrl)
            CHECK(apl_npy_read_logits(APL_CASES_DIR "/../pap/random/ctrl.npy", &ctrl, &cs,
                                      &err) == APL_OK,
                  "%s", err.msg);
        if (!ctrl || cs.ndim != 2 || cs.dims[1] != 12)
            return 0;
        in->p.params = ctrl;
        in->p.param_rows = (int)cs.dims[0];
    }
    apl_status st = apl_reference(&in->p, in->grad64, in->aux64, &in->ref, &err);
    if (st == APL_ERR_UNAVAILABLE && i == 0)
        return -1; /* the reference does not implement this loss (yet) */
    CHECK(st == APL_OK, "%s input %d: reference: %s", apl_loss_name(l), i, err.msg);
    CHECK(in->ref.positives > 0 && in->ref.valid_negatives > 0 && in->ref.loss > 0.0,
          "%s input %d: a trivial case",
          apl_loss_name(l), i);
    return st == APL_OK;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    CHECK(rounds > 0, "rounds = %d", rounds);
    size_t count;
    const apl_variant *all = apl_variants(&count);
    const apl_variant *cpu[APL_LOSS_COUNT][64];
    size_t ncpu[APL_LOSS_COUNT] = {0};
    for (int l = 0; l < APL_LOSS_COUNT; l++) {
        for (size_t i = 0; i < count && ncpu[l] < 64; i++)
            if (all[i].device == APL_CPU && apl_variant_has_loss(&all[i], (apl_loss)l) &&
                check_runnable(&all[i]))
                cpu[l][ncpu[l]++] = &all[i];
        int ok = 1;
        for (int i = 0; i < INPUTS && ok; i++) {
            int r = make_input((apl_loss)l, i, &inputs[l][i]);
            if (r < 0) {
                printf("loss %s: skipped: the reference does not implement it\n",
                       apl_loss_name((apl_loss)l));
                CHECK(ncpu[l] == 0, "%zu CPU variants implement %s, but the reference does not",
                      ncpu[l], apl_loss_name((apl_loss)l));
            }
            ok = r > 0;
        }
        loss_covered[l] = ok;
        if (ok) {
            printf("loss %s: the reference and %zu CPU variants:", apl_loss_name((apl_loss)l),
                   ncpu[l]);
            for (size_t k = 0; k < ncpu[l]; k++)
                printf(" %s", cpu[l][k]->name);
            printf("\n");
        }
    }
    CHECK(loss_covered[APL_LOSS_AP] && ncpu[APL_LOSS_AP] >= 3,
          "AP: expected at least naive, pruned and sorted to run here");
    if (check_failures)
        return check_report("test_threads");

    int failed_rounds = 0;
    for (int r = 0; r < rounds; r++) {
        int round_failed = 0;
        for (int l = 0; l < APL_LOSS_COUNT; l++) {
            if (!loss_covered[l])
                continue;
            pthread_t th[THREADS];
            job jobs[THREADS];
            int started[THREADS] = {0};
            for (int t = 0; t < THREADS; t++) {
                jobs[t] = (job){.in = &inputs[l][(t + r) % INPUTS],
                                .variants = cpu[l],
                                .nvariants = ncpu[l],
                                .first = (size_t)(t + r),
                                .round = r,
                                .id = t};
                started[t] = pthread_create(&th[t], NULL, worker, &jobs[t]) == 0;
                CHECK(started[t], "round %d: pthread_create failed", r);
            }
            for (int t = 0; t < THREADS; t++) {
                if (!started[t])
                    continue;
                pthread_join(th[t], NULL);
                CHECK(jobs[t].failures == 0, "%s, %d failure(s), first: %s",
                      apl_loss_name((apl_loss)l), jobs[t].failures, jobs[t].first_failure);
                round_failed |= jobs[t].failures != 0;
            }
        }
        failed_rounds += round_failed;
    }
    printf("%d rounds of %d threads, %d failed\n", rounds, THREADS, failed_rounds);
    for (int l = 0; l < APL_LOSS_COUNT; l++)
        for (int i = 0; i < INPUTS; i++) {
            free((void *)inputs[l][i].p.logits); /* PAP's params are shared: left to the exit */
            free((void *)inputs[l][i].p.targets);
            free((void *)inputs[l][i].p.aux);
            free(inputs[l][i].grad64);
            free(inputs[l][i].aux64);
        }
    return check_report("test_threads");
}
