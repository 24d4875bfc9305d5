/* aploss/harness.h: the harness around the product (libaploss_harness): the input generator,
 * .npy files, the acceptance rule and GPU benchmark timing. The CLI, the tests, the fuzzers and
 * the benchmarks use it; training code needs only aploss/aploss.h. */
#ifndef APLOSS_HARNESS_H
#define APLOSS_HARNESS_H

#include "aploss/aploss.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the acceptance rule (src/accept.c): the one place that decides agreement ----
 * Tolerances of the contracts (docs/SPEC*.md): */
#define APL_TOL_GRAD_REL 1e-6 /* max |g - g64| <= 1e-6 * max |g64| (and the same for grad_aux) */
#define APL_TOL_LOSS_ABS 1e-6 /* |loss - loss64| <= 1e-6 (and loss_loc) */
typedef enum {
    APL_REASON_PASS = 0,
    APL_REASON_STATUS,    /* the variant (or the reference) returned an error */
    APL_REASON_COUNTS,    /* positives or valid negatives differ */
    APL_REASON_GRAD,      /* a gradient entry outside the tolerance (NaN included) */
    APL_REASON_ZEROS,     /* not exactly 0 where the reference's gradient is exactly 0 (see accept.c) */
    APL_REASON_LOSS,      /* loss (or loss_loc) outside the tolerance */
    APL_REASON_AUX        /* grad_aux entry outside the tolerance */
} apl_reason;
const char *apl_reason_name(apl_reason r); /* "pass", "status", "counts", ... */

typedef struct {
    int pass;              /* 1 when every criterion holds */
    apl_reason reason;     /* the first criterion that failed (in the enum's order) */
    double max_abs_err;    /* max_j |grad_j - grad64_j| */
    double max_rel_err;    /* max_abs_err / max_j |grad64_j| (0 when both are all 0) */
    size_t worst_index;    /* argmax of the gradient error */
    double worst_value, worst_ref;
    size_t mismatches;     /* gradient entries outside the tolerance */
    size_t zero_mismatches;/* entries whose zero-ness differs from the reference's */
    double loss_err;       /* |loss - loss64| */
    double loss_loc_err;   /* aLRP: |loss_loc - loss_loc64| */
    double aux_max_rel_err;/* grad_aux, as max_rel_err (0 when not compared) */
    size_t aux_worst_index;
    size_t positives, ref_positives, valid_negatives, ref_valid_negatives;
} apl_verdict;

/* Compares a variant's output (grad: n floats, grad_aux: n_aux floats or NULL, res) with the
 * reference's (grad64, grad_aux64 or NULL, ref) for problem p and fills *v. */
void apl_accept(const apl_problem *p, const float *grad, const float *grad_aux,
                const apl_result *res, const double *grad64, const double *grad_aux64,
                const apl_result *ref, apl_verdict *v);
/* One line describing v (no newline), e.g. "pass: max rel grad err 3.1e-08 at [12], loss err
 * 2e-11" or "FAIL (grad): ...". */
void apl_verdict_format(const apl_verdict *v, char *buf, size_t cap);

/* AP-Loss shorthands for harness code (src/accept.c): a problem of loss AP with these inputs,
 * and apl_run / apl_reference / apl_accept on it. */
apl_problem apl_ap_problem(const float *logits, const int8_t *targets, size_t n, double delta);
apl_status apl_run_ap(const apl_variant *v, const float *logits, const int8_t *targets, size_t n,
                      double delta, float *grad, apl_result *res, apl_error *err);
apl_status apl_reference_ap(const float *logits, const int8_t *targets, size_t n, double delta,
                            double *grad64, apl_result *res, apl_error *err);
void apl_accept_ap(const float *logits, const int8_t *targets, size_t n, double delta,
                   const float *grad, const apl_result *res, const double *grad64,
                   const apl_result *ref, apl_verdict *v);

/* ---- the one input generator (src/generate.c) ---- */
typedef enum { APL_DIST_EARLY = 0, APL_DIST_MID = 1, APL_DIST_LATE = 2 } apl_dist;
typedef struct {
    size_t batch, anchors, classes; /* elements = batch * anchors * classes */
    double pos_rate;    /* probability an anchor is positive (one positive class) */
    double ignore_rate; /* probability an anchor is ignored (all classes -1) */
    apl_dist dist;      /* score distribution */
    uint64_t seed;
} apl_gen_params;
#define APL_RETINANET_ANCHORS 32736 /* RetinaNet at 512x512 */
#define APL_COCO_CLASSES 80
#define APL_DEFAULT_SEED 12345u
void apl_gen_defaults(apl_gen_params *p); /* batch 1, RetinaNet anchors, 80 classes, mid */
const char *apl_dist_name(apl_dist d);
apl_status apl_dist_parse(const char *name, apl_dist *d, apl_error *err);
/* Checks the parameters (rates in [0,1], sum <= 1, no size overflow) and returns the count. */
apl_status apl_gen_count(const apl_gen_params *p, size_t *n, apl_error *err);
/* Fills logits and targets (apl_gen_count elements each). Same output on every machine. */
apl_status apl_generate(const apl_gen_params *p, float *logits, int8_t *targets, apl_error *err);
/* Fills the per-positive values the loss needs (n_aux = |P| of targets[0..n)): aLRP: e, the
 * localisation error 1 - GIoU of each positive, in [0, 2); PAP: the IoU (GIoU + 1)/2 of each
 * positive, uniform in [0, 1); AP: nothing (n_aux must be 0). In
 * the flat order of the positives; counter-based like apl_generate. */
apl_status apl_generate_aux(const apl_gen_params *p, apl_loss loss, const int8_t *targets,
                            size_t n, float *aux, size_t n_aux, apl_error *err);

/* ---- .npy files (src/npy.c) ---- */
#define APL_NPY_MAX_DIMS 8
typedef struct {
    int ndim;
    size_t dims[APL_NPY_MAX_DIMS];
} apl_shape;
size_t apl_shape_count(const apl_shape *s);
/* 1 when a and b have the same dimensions, in the same order. */
int apl_shape_equal(const apl_shape *a, const apl_shape *b);
/* Reads a little-endian C-order float32 array; rejects non-finite values, naming the index. */
apl_status apl_npy_read_logits(const char *path, float **data, apl_shape *shape, apl_error *err);
/* Reads targets of any integer or float dtype numpy writes (|i1 <i2 <i4 <i8 |u1 <u2 <u4 <u8 <f4
 * <f8, |b1) whose values are exactly -1, 0 or 1. */
apl_status apl_npy_read_targets(const char *path, int8_t **data, apl_shape *shape, apl_error *err);
/* Reads a little-endian C-order float64 array (<f8), e.g. a float64 reference gradient. */
apl_status apl_npy_read_f64(const char *path, double **data, apl_shape *shape, apl_error *err);
/* Reads one value per positive (e.g. aLRP's e): a 1-D float32 or float64 array ('<f4', '<f8'),
 * converted to float32. Refuses other dtypes and shapes, and non-finite values (or float64 ones
 * outside float32's range) with the file, `what[index]` and the value in the message. */
apl_status apl_npy_read_aux(const char *path, const char *what, float **data, size_t *count,
                            apl_error *err);
/* Reads PAP control points (docs/SPEC_PAP.md): float32 ('<f4') of shape (5, 12) or (4, 12),
 * rows H2 I2 I3 I1 [H1]. Refuses other dtypes and shapes; the values are checked by
 * apl_check_pap_params. */
apl_status apl_npy_read_pap_params(const char *path, float **data, int *rows, apl_error *err);
/* Writes float32 with the given shape: to a temporary file beside path, then rename; on any
 * failure nothing is left at path (an existing file there is untouched). */
apl_status apl_npy_write_f32(const char *path, const float *data, const apl_shape *shape,
                             apl_error *err);
apl_status apl_npy_write_i8(const char *path, const int8_t *data, const apl_shape *shape,
                            apl_error *err);


/* ---- GPU timing (kernels/common/cuda_common.cu; without CUDA every call answers APL_ERR_UNAVAILABLE, src/gpu_stub.c) ----
 * A device-resident benchmark context: the inputs are copied to the GPU once, then a variant's
 * device_fn (or the memory floor) runs on them, timed with CUDA events on the default stream. */
typedef struct apl_gpu_bench apl_gpu_bench;
/* Checks the inputs (apl_check_inputs with delta 1), allocates device logits, targets and
 * gradient (n elements each) and copies logits and targets once. *out is NULL on failure. */
apl_status apl_gpu_bench_create(const float *logits, const int8_t *targets, size_t n,
                                apl_gpu_bench **out, apl_error *err);
/* The same for problem p (host pointers; apl_check_problem, so aLRP's e is checked too): for
 * loss aLRP its per-positive e (p->aux, p->n_aux) is copied to the device once as well, with a
 * device grad_e. The context then runs AP-Loss and p->loss. PAP is refused (APL_ERR_UNAVAILABLE:
 * its parameters and top-K are not carried). p->delta is checked but not kept: each run gives
 * its own. */
apl_status apl_gpu_bench_create_problem(const apl_problem *p, apl_gpu_bench **out,
                                        apl_error *err);
/* Runs v->device_fn on the device buffers (default stream) between two CUDA events and returns
 * the elapsed event time in *seconds: the whole device_fn call, that is the kernels and Thrust/CUB
 * calls, the few scalar device-to-host reads the algorithm needs (counts, the lowest positive,
 * the loss), which wait for the stream (aLRP: also its O(|P|) middle on the host, with the
 * per-positive arrays to and from it), and the pool allocations of its temporaries (after the
 * first call, no cudaMalloc/cudaFree: see apl_gpu_release_cache); no host<->device copy of the
 * arrays. The gradient stays on the device (apl_gpu_bench_grad). */
apl_status apl_gpu_bench_run(apl_gpu_bench *b, const apl_variant *v, double delta,
                             apl_result *res, double *seconds, apl_error *err);
/* apl_gpu_bench_run for loss `loss`: AP-Loss, or the loss the context was made for
 * (apl_gpu_bench_create_problem); for aLRP the call also writes grad_e on the device
 * (apl_gpu_bench_grad_aux), as training needs it. APL_ERR_UNAVAILABLE when v does not implement
 * the loss, APL_ERR_ARG when the context does not carry its inputs. apl_gpu_bench_run is this
 * with APL_LOSS_AP. */
apl_status apl_gpu_bench_run_loss(apl_gpu_bench *b, const apl_variant *v, apl_loss loss,
                                  double delta, apl_result *res, double *seconds, apl_error *err);
/* The device memory floor: one grid-stride kernel that reads logits and targets once and writes
 * the gradient once (g = t == 1 ? -s : 0.5f * s, vectorised where aligned), event-timed. It
 * overwrites the device gradient. */
apl_status apl_gpu_bench_floor(apl_gpu_bench *b, double *seconds, apl_error *err);
/* Copies the device gradient (n floats) to host_grad. */
apl_status apl_gpu_bench_grad(const apl_gpu_bench *b, float *host_grad, apl_error *err);
/* Copies the device grad_aux (aLRP's grad_e of the last aLRP run: n_aux floats, the context's
 * p->n_aux; nothing for a context without aux) to host_grad_aux. */
apl_status apl_gpu_bench_grad_aux(const apl_gpu_bench *b, float *host_grad_aux, apl_error *err);
size_t apl_gpu_bench_size(const apl_gpu_bench *b); /* n; 0 for NULL */
void apl_gpu_bench_destroy(apl_gpu_bench *b);      /* NULL is fine */
/* The current CUDA device's name into buf (always NUL-terminated when cap > 0): APL_OK, or
 * APL_ERR_NODEVICE / APL_ERR_UNAVAILABLE (built without CUDA) / APL_ERR_CUDA with the reason
 * written into buf instead. */
apl_status apl_gpu_name(char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
