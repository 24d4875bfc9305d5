/* main.c: a program outside the project, built against an installed aploss (tests/install/run.sh
 * builds it with find_package and with pkg-config). It runs `sorted` on a small input through the
 * public API only and compares it with the reference: exit 0 only if they agree. */
#include <aploss/aploss.h>

#include <stdio.h>

#define N 64

/* No libm: the program needs only what pkg-config / the package give it. */
static double dabs(double x) { return x < 0 ? -x : x; }
static double dmax(double a, double b) { return a > b ? a : b; }

int main(void)
{
    float logits[N], grad[N];
    int8_t targets[N];
    double grad64[N];
    /* Scores spread over [-2, 2]; every 8th element positive, every 16th (offset 3) ignored. */
    for (int j = 0; j < N; j++) {
        logits[j] = (float)((j * 37 % N) - N / 2) / (N / 4);
        targets[j] = j % 8 == 0 ? 1 : (j % 16 == 3 ? -1 : 0);
    }
    const apl_variant *v = apl_variant_find("sorted");
    if (!v) {
        fprintf(stderr, "installed aploss: no variant named sorted\n");
        return 1;
    }
    apl_problem p = {0};
    p.loss = APL_LOSS_AP;
    p.logits = logits;
    p.targets = targets;
    p.n = N;
    p.delta = 1.0;
    apl_output out = {grad, NULL};
    apl_result res, ref;
    apl_error err = {0};
    if (apl_run(v, &p, &out, &res, &err) != APL_OK ||
        apl_reference(&p, grad64, NULL, &ref, &err) != APL_OK) {
        fprintf(stderr, "installed aploss: %s\n", err.msg);
        return 1;
    }
    /* The contract's tolerances (docs/SPEC.md), on a case where the loss is not trivial. */
    double max_ref = 0.0, max_err = 0.0;
    for (int j = 0; j < N; j++) {
        max_ref = dmax(max_ref, dabs(grad64[j]));
        max_err = dmax(max_err, dabs((double)grad[j] - grad64[j]));
    }
    int ok = ref.positives == 8 && res.positives == ref.positives &&
             res.valid_negatives == ref.valid_negatives && ref.loss > 0.0 && max_ref > 0.0 &&
             dabs(res.loss - ref.loss) <= 1e-6 && max_err <= 1e-6 * max_ref;
    printf("installed aploss: sorted loss %.9f, reference %.9f, |P| %zu, |V| %zu, max grad err "
           "%.3g (max |g| %.3g): %s\n",
           res.loss, ref.loss, res.positives, res.valid_negatives, max_err, max_ref,
           ok ? "agree" : "DISAGREE");
    return ok ? 0 : 1;
}
