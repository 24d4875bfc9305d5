/* aploss.h: the one public header of the AP-Loss core harness.
 *
 * Every variant computes the SPEC's (../shared/SPEC.md) loss and gradient for float32 logits and
 * int8 targets (-1 ignore, 0 negative, 1 positive) with the same signature, and is registered in
 * one table (kernels/variants.c). Library functions return a status and fill an apl_error that says
 * where and why; they never print or exit.
 */
#ifndef APLOSS_H
#define APLOSS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    APL_OK = 0,
    APL_ERR_ARG,      /* bad argument: delta <= 0 or non-finite, null pointer, unknown name */
    APL_ERR_INPUT,    /* bad data: non-finite logit, target outside {-1,0,1}, shape mismatch */
    APL_ERR_NOMEM,    /* an allocation failed */
    APL_ERR_IO,       /* open/read/write/rename failed */
    APL_ERR_FORMAT,   /* malformed or unsupported file */
    APL_ERR_CUDA,     /* a CUDA runtime or Thrust error; the message has CUDA's own string */
    APL_ERR_NODEVICE, /* a GPU variant asked to run where no CUDA device is present */
    APL_ERR_UNAVAILABLE /* variant not built into this binary */
} apl_status;

#define APL_MSG_LEN 512
typedef struct {
    apl_status code;
    char msg[APL_MSG_LEN];
} apl_error;

/* Sets err (if not NULL) and returns code. printf-style message. */
apl_status apl_fail(apl_error *err, apl_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
const char *apl_status_name(apl_status s);

typedef struct {
    double loss;            /* 1 - AP */
    size_t positives;       /* |P| */
    size_t valid_negatives; /* |V|: negatives with s_j >= min positive - delta */
} apl_result;

/* The signature of every variant. Preconditions (checked by apl_run, not by the variant):
 * apl_check_inputs passed, grad has n elements. The variant writes all n gradient entries
 * (exact 0 outside P and V). n may be 0 and may exceed 2^31. */
typedef apl_status (*apl_variant_fn)(const float *logits, const int8_t *targets, size_t n,
                                     double delta, float *grad, apl_result *res, apl_error *err);

typedef enum { APL_CPU = 0, APL_GPU = 1 } apl_device;

typedef struct {
    const char *name;        /* naive, pruned, sorted, cuda_warp, ... */
    apl_variant_fn fn;       /* NULL when not built into this binary */
    apl_device device;
    const char *backend;     /* "C", "Thrust/CPP", "CUDA", ... */
    int quadratic;           /* 1: O(|P|*M) work; benchmarks budget these */
    const char *description; /* one line */
    /* GPU rows: the same computation and contract as fn, but logits, targets and grad are DEVICE
     * pointers (n elements each) and nothing of that size crosses the bus; it has synchronised
     * with the device when it returns (res is a host struct). NULL for CPU rows and where not
     * built. Last, so positional initialisers of the fields above stay valid. */
    apl_variant_fn device_fn;
} apl_variant;

/* The one table of variants. */
const apl_variant *apl_variants(size_t *count);
const apl_variant *apl_variant_find(const char *name);
/* 1 when v can run on this machine; otherwise 0 and why (not built, no CUDA device). */
int apl_variant_runnable(const apl_variant *v, apl_error *why);

/* Checks delta (> 0, finite), every logit finite and every target in {-1,0,1}; the message names
 * the first offending index and value, e.g. "targets[1043] = 3: expected -1, 0 or 1". */
apl_status apl_check_inputs(const float *logits, const int8_t *targets, size_t n, double delta,
                            apl_error *err);

/* apl_check_inputs, then the variant. The entry point for every caller. */
apl_status apl_run(const apl_variant *v, const float *logits, const int8_t *targets, size_t n,
                   double delta, float *grad, apl_result *res, apl_error *err);

/* ---- GPU timing (kernels/cuda_common.cu; without CUDA every call answers APL_ERR_UNAVAILABLE) ----
 * A device-resident benchmark context: the inputs are copied to the GPU once, then a variant's
 * device_fn (or the memory floor) runs on them, timed with CUDA events on the default stream. */
typedef struct apl_gpu_bench apl_gpu_bench;
/* Checks the inputs (apl_check_inputs with delta 1), allocates device logits, targets and
 * gradient (n elements each) and copies logits and targets once. *out is NULL on failure. */
apl_status apl_gpu_bench_create(const float *logits, const int8_t *targets, size_t n,
                                apl_gpu_bench **out, apl_error *err);
/* Runs v->device_fn on the device buffers between two CUDA events (the kernels, the variant's
 * own temporaries and its synchronisation; no host<->device copy of the arrays) and returns the
 * elapsed event time in *seconds. The gradient stays on the device (apl_gpu_bench_grad). */
apl_status apl_gpu_bench_run(apl_gpu_bench *b, const apl_variant *v, double delta,
                             apl_result *res, double *seconds, apl_error *err);
/* The device memory floor: one grid-stride kernel that reads logits and targets once and writes
 * the gradient once (g = t == 1 ? -s : 0.5f * s, vectorised where aligned), event-timed. It
 * overwrites the device gradient. */
apl_status apl_gpu_bench_floor(apl_gpu_bench *b, double *seconds, apl_error *err);
/* Copies the device gradient (n floats) to host_grad. */
apl_status apl_gpu_bench_grad(const apl_gpu_bench *b, float *host_grad, apl_error *err);
size_t apl_gpu_bench_size(const apl_gpu_bench *b); /* n; 0 for NULL */
void apl_gpu_bench_destroy(apl_gpu_bench *b);      /* NULL is fine */
/* The current CUDA device's name into buf (always NUL-terminated when cap > 0): APL_OK, or
 * APL_ERR_NODEVICE / APL_ERR_UNAVAILABLE (built without CUDA) / APL_ERR_CUDA with the reason
 * written into buf instead. */
apl_status apl_gpu_name(char *buf, size_t cap);

/* ---- reference (reference/reference.c): the SPEC, literally, in double precision ---- */
apl_status apl_reference(const float *logits, const int8_t *targets, size_t n, double delta,
                         double *grad64, apl_result *res, apl_error *err);

/* ---- agreement with the reference (the SPEC's tolerance) ---- */
#define APL_TOL_GRAD_REL 1e-6 /* max |g - g64| <= 1e-6 * max |g64| */
#define APL_TOL_LOSS_ABS 1e-6 /* |loss - loss64| <= 1e-6 */
typedef struct {
    double max_abs_err;  /* max_j |grad_j - grad64_j| */
    double max_rel_err;  /* max_abs_err / max_j |grad64_j| (0 when grad64 is all 0 and so is grad) */
    double loss_err;     /* |loss - loss64| */
    size_t worst_index;  /* argmax of the gradient error */
    size_t mismatches;   /* elements outside the gradient tolerance */
    int pass;            /* 1 when both bounds hold */
} apl_agreement;
void apl_compare(const float *grad, double loss, const double *grad64, double loss64, size_t n,
                 apl_agreement *out);

/* ---- the one input generator (kernels/generate.c) ---- */
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

/* ---- .npy files (kernels/npy.c) ---- */
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
/* Writes float32 with the given shape: to a temporary file beside path, then rename; on any
 * failure nothing is left at path (an existing file there is untouched). */
apl_status apl_npy_write_f32(const char *path, const float *data, const apl_shape *shape,
                             apl_error *err);
apl_status apl_npy_write_i8(const char *path, const int8_t *data, const apl_shape *shape,
                            apl_error *err);

#ifdef __cplusplus
}
#endif
#endif
