/* pap.c: the Parameterized AP Loss's library-level pieces (docs/SPEC_PAP.md): the shipped
 * parameter sets and the check of a parameter array. apl_check_problem (core.c) calls the
 * check; the CLI names the sets. */
#include "aploss/aploss.h"

#include <math.h>
#include <string.h>

/* Each row: x0 y0 x1 y1 .. x5 y5 with the fixed end points (0,0) and (1,1); rows H2, I2, I3,
 * I1, H1. Inner points from configs/paploss/paploss_retinanet_r50_fpn.py and
 * paploss_fasterrcnn_r50_fpn.py at 0f36f022, rounded to float32 as the official heads hold
 * them (the contract's numbers are these floats, not the decimals). */
#define ROW(x1, y1, x2, y2, x3, y3, x4, y4) \
    0.0f, 0.0f, x1##f, y1##f, x2##f, y2##f, x3##f, y3##f, x4##f, y4##f, 1.0f, 1.0f

static const float retinanet[5 * 12] = {
    ROW(.4182, .0277, .4948, .2187, .6882, .2624, .802, .6688),   /* H2 */
    ROW(.1279, .3696, .3056, .4708, .5198, .529, .6983, .6709),   /* I2 */
    ROW(.0931, .0289, .3607, .5585, .4823, .7131, .6291, .8162),  /* I3 */
    ROW(.4914, .1499, .5492, .1664, .6259, .3051, .7945, .6195),  /* I1 */
    ROW(.413, .0798, .4356, .3571, .5361, .7063, .8097, .9083),   /* H1 */
};
static const float rpn[5 * 12] = {
    ROW(.9058, .0484, .9068, .5120, .9232, .7286, .9766, .9677),
    ROW(.3200, .1084, .3493, .2482, .4924, .3869, .7231, .6510),
    ROW(.0935, .0419, .2177, .1168, .5857, .3748, .7962, .6683),
    ROW(.0045, .3599, .1295, .4603, .7662, .5140, .8483, .5259),
    ROW(.1764, .1081, .5245, .4907, .6956, .5668, .7642, .8645),
};
static const float rcnn[5 * 12] = {
    ROW(.3344, .0268, .5460, .2461, .8196, .6466, .9467, .8617),
    ROW(.0978, .2019, .4073, .3367, .6337, .4689, .7708, .6633),
    ROW(.2406, .0515, .3358, .5259, .6047, .6647, .8575, .7792),
    ROW(.2574, .2363, .5442, .5999, .7165, .6548, .8728, .8331),
    ROW(.1551, .2675, .4902, .3957, .7245, .5095, .8068, .8720),
};

static const struct {
    const char *name;
    const float *params;
} sets[] = {{"retinanet", retinanet}, {"rpn", rpn}, {"rcnn", rcnn}};

apl_status apl_pap_params(const char *name, const float **params, int *rows, apl_error *err)
{
    for (size_t i = 0; name && i < sizeof sets / sizeof sets[0]; i++)
        if (strcmp(name, sets[i].name) == 0) {
            *params = sets[i].params;
            *rows = 5;
            return APL_OK;
        }
    return apl_fail(err, APL_ERR_ARG, "pap parameters '%s': expected retinanet, rpn or rcnn",
                    name ? name : "(null)");
}

static const char *const fn_names[5] = {"H2", "I2", "I3", "I1", "H1"};

apl_status apl_check_pap_params(const float *params, int rows, apl_error *err)
{
    if (rows != 4 && rows != 5)
        return apl_fail(err, APL_ERR_INPUT,
                        "pap parameters: %d rows: expected 4 or 5 rows of 12 (H2 I2 I3 I1 [H1])",
                        rows);
    if (!params)
        return apl_fail(err, APL_ERR_ARG, "pap parameters: null array");
    for (int r = 0; r < rows; r++) {
        const float *q = params + 12 * r;
        for (int k = 0; k < 12; k++)
            if (!isfinite(q[k]))
                return apl_fail(err, APL_ERR_INPUT, "pap parameters[%d][%d] (%s %c%d) = %g: "
                                "expected a finite value", r, k, fn_names[r], k % 2 ? 'y' : 'x',
                                k / 2, (double)q[k]);
        /* The end points are fixed, (0,0) and (1,1): the segment formulation prunes below the
         * foot and above the top exactly, and w = 1 - I2(0) = 1 for a negative. */
        if (q[0] != 0.0f || q[1] != 0.0f)
            return apl_fail(err, APL_ERR_INPUT, "pap parameters[%d] (%s): first point (%g, %g): "
                            "expected (0, 0)", r, fn_names[r], (double)q[0], (double)q[1]);
        if (q[10] != 1.0f || q[11] != 1.0f)
            return apl_fail(err, APL_ERR_INPUT, "pap parameters[%d] (%s): last point (%g, %g): "
                            "expected (1, 1)", r, fn_names[r], (double)q[10], (double)q[11]);
        for (int k = 1; k < 6; k++) {
            if (!(q[2 * k] > q[2 * k - 2]))
                return apl_fail(err, APL_ERR_INPUT, "pap parameters[%d] (%s): x%d = %g after x%d = "
                                "%g: the x's must be strictly increasing from 0 to 1", r,
                                fn_names[r], k, (double)q[2 * k], k - 1, (double)q[2 * k - 2]);
            if (!(q[2 * k + 1] >= q[2 * k - 1]))
                return apl_fail(err, APL_ERR_INPUT, "pap parameters[%d] (%s): y%d = %g after y%d = "
                                "%g: the y's must not decrease", r, fn_names[r], k,
                                (double)q[2 * k + 1], k - 1, (double)q[2 * k - 1]);
        }
    }
    return APL_OK;
}
