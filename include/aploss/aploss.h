/* aploss/aploss.h: the product API of the AP-Loss family core (libaploss).
 *
 * Every variant computes the contract of docs/SPEC.md (AP-Loss), docs/SPEC_ALRP.md (aLRP Loss)
 * or docs/SPEC_PAP.md (Parameterized AP Loss) for float32 logits and int8 targets (-1 ignore,
 * 0 negative, 1 positive), with one signature, and is registered in one table (src/registry.c).
 *
 * Rules that hold for every function here unless its comment says otherwise:
 *  - It returns a status and fills an apl_error (when not NULL) that says where and why; it never
 *    prints, exits, reads or writes files.
 *  - It keeps no global mutable state: it is safe to call from several threads at once on
 *    different outputs (inputs may be shared).
 *  - CPU variants allocate O(|P|) work memory (plus a per-thread chunk buffer) with malloc and
 *    free it before returning; nothing persists between calls.
 *  - GPU variants (device == APL_GPU) run on the stream in apl_problem.stream (NULL: the legacy
 *    default stream) and take device memory from an internal per-device cache (see
 *    kernels/common/cuda_common.h); their host entry points (fn) copy the arrays to and from the
 *    device and return when the gradient is on the host; device_fn takes device pointers.
 *
 * The harness around the product (generator, .npy files, the acceptance rule, benchmark timing)
 * is declared in aploss/harness.h.
 */
#ifndef APLOSS_APLOSS_H
#define APLOSS_APLOSS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    APL_OK = 0,
    APL_ERR_ARG,      /* bad argument: delta outside [2^-100, 2^100], null pointer, unknown name */
    APL_ERR_INPUT,    /* bad data: non-finite logit, target outside {-1,0,1}, shape mismatch */
    APL_ERR_NOMEM,    /* an allocation failed */
    APL_ERR_IO,       /* open/read/write/rename failed */
    APL_ERR_FORMAT,   /* malformed or unsupported file */
    APL_ERR_CUDA,     /* a CUDA runtime or Thrust error; the message has CUDA's own string */
    APL_ERR_NODEVICE, /* a GPU variant asked to run where no CUDA device is present */
    APL_ERR_UNAVAILABLE /* variant (or loss) not built into this binary / not implemented */
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

/* ---- the losses ---- */
typedef enum {
    APL_LOSS_AP = 0,   /* AP-Loss (docs/SPEC.md) */
    APL_LOSS_ALRP = 1, /* aLRP Loss (docs/SPEC_ALRP.md) */
    APL_LOSS_PAP = 2,  /* Parameterized AP Loss (docs/SPEC_PAP.md) */
    APL_LOSS_COUNT
} apl_loss;
#define APL_LOSS_BIT(l) (1u << (unsigned)(l))
const char *apl_loss_name(apl_loss l); /* "ap", "alrp", "pap" */
apl_status apl_loss_parse(const char *name, apl_loss *l, apl_error *err);

/* One call's inputs. Zero-initialise, then set what the loss needs:
 *   every loss: logits, targets, n;
 *   AP, aLRP:   delta (> 0, finite);
 *   aLRP:       aux = e, one localisation error per positive (finite, >= 0), n_aux = |P|;
 *   PAP:        aux = IoU per positive (in [0, 1]), n_aux = |P|; params (rows x 12 floats,
 *               rows 4 or 5), param_rows; topk (0 = every valid entry ranked). PAP does not
 *               read delta: its contract fixes the window at delta = 1 (h = clamp((s_j - s_i)/2
 *               + 1/2, 0, 1)), so delta may be left 0.
 * aux values are in the flat order of the positives: aux[k] belongs to the k-th index j with
 * targets[j] == 1. */
typedef struct {
    apl_loss loss;
    const float *logits;   /* n */
    const int8_t *targets; /* n */
    size_t n;
    double delta;
    const float *aux; /* aLRP: e; PAP: IoU; NULL for AP */
    size_t n_aux;
    const float *params; /* PAP control points, param_rows x 12 */
    int param_rows;
    size_t topk;
    int threads;  /* CPU variants: 0 = default (OMP_NUM_THREADS if set, else every core) */
    void *stream; /* GPU variants: a cudaStream_t; NULL = the default stream */
} apl_problem;

/* One call's outputs (caller-allocated; on the device for device_fn). */
typedef struct {
    float *grad;     /* n: d loss / d logits (aLRP: of loss_cls) */
    float *grad_aux; /* n_aux, or NULL when not wanted: aLRP d loss_loc / d e; PAP d loss / d IoU */
} apl_output;

typedef struct {
    double loss;            /* AP: 1 - AP; aLRP: loss_cls; PAP: the loss */
    double loss_loc;        /* aLRP: loss_loc; 0 otherwise */
    size_t positives;       /* |P| */
    size_t valid_negatives; /* |V|: negatives with s_j >= min positive - delta; PAP: the
                             * negatives among the ranked rows S (after the top-K cut) */
} apl_result;

/* The signature of every variant. Preconditions (checked by apl_run, not by the variant):
 * apl_check_problem passed; out->grad has n elements. The variant writes all n gradient
 * entries (exact 0 outside P and V) and, when out->grad_aux is set, all n_aux of it. n may be
 * 0 and may exceed 2^31. */
typedef apl_status (*apl_variant_fn)(const apl_problem *p, const apl_output *out,
                                     apl_result *res, apl_error *err);

typedef enum { APL_CPU = 0, APL_GPU = 1 } apl_device;

typedef struct {
    const char *name;        /* naive, pruned, sorted, cuda_warp, ... */
    apl_variant_fn fn;       /* host pointers; NULL when not built into this binary */
    /* GPU rows: the same computation, but logits, targets, aux, params and the outputs are
     * DEVICE pointers and nothing of size n crosses the bus; it runs on p->stream and has
     * synchronised with that stream when it returns (res is a host struct). NULL for CPU rows
     * and where not built. */
    apl_variant_fn device_fn;
    apl_device device;
    unsigned losses;         /* APL_LOSS_BIT mask of the losses it implements */
    const char *backend;     /* "C", "Thrust/CPP", "CUDA", ... */
    int quadratic;           /* 1: O(|P|*M) work; benchmarks budget these */
    int threaded;            /* 1: honours apl_problem.threads */
    const char *description; /* one line */
} apl_variant;

/* The one table of variants (src/registry.c). */
const apl_variant *apl_variants(size_t *count);
const apl_variant *apl_variant_find(const char *name);
/* 1 when v can run on this machine; otherwise 0 and why in *why (code APL_ERR_UNAVAILABLE: not
 * built; APL_ERR_NODEVICE: no CUDA device; APL_ERR_CUDA: the driver failed). */
int apl_variant_runnable(const apl_variant *v, apl_error *why);
/* 1 when v implements loss l. */
int apl_variant_has_loss(const apl_variant *v, apl_loss l);

/* The range of delta every variant supports (docs/SPEC.md, "Delta range"); apl_check_inputs
 * refuses anything outside it (0, negative, NaN and inf included) with APL_ERR_ARG. */
#define APL_DELTA_MIN 0x1p-100
#define APL_DELTA_MAX 0x1p100

/* Checks delta (in [APL_DELTA_MIN, APL_DELTA_MAX]), every logit finite and every target in {-1,0,1}; the message names
 * the first offending index and value, e.g. "targets[1043] = 3: expected -1, 0 or 1". */
apl_status apl_check_inputs(const float *logits, const int8_t *targets, size_t n, double delta,
                            apl_error *err);
/* apl_check_inputs plus what the problem's loss needs (aux count and values, params, topk). */
apl_status apl_check_problem(const apl_problem *p, apl_error *err);

/* apl_check_problem, then the variant (host pointers). The entry point for every caller. */
apl_status apl_run(const apl_variant *v, const apl_problem *p, const apl_output *out,
                   apl_result *res, apl_error *err);

/* GPU variants keep one device-memory pool per device (kernels/common/cuda_common.h): it grows
 * to the largest working set seen and is not shrunk by the calls, so steady-state calls do not
 * allocate from the driver. This gives the memory that no call is using back to the driver.
 * APL_OK (also without CUDA: nothing to do), or APL_ERR_CUDA. */
apl_status apl_gpu_release_cache(void);

/* ---- Parameterized AP Loss (docs/SPEC_PAP.md) ----
 * The shipped parameter sets, float32, 5 rows of 12 (H2 I2 I3 I1 H1, each x0 y0 .. x5 y5): name
 * "retinanet", "rpn" or "rcnn" (the official configs at 0f36f022). *params points to a constant
 * table. */
apl_status apl_pap_params(const char *name, const float **params, int *rows, apl_error *err);
/* Checks a parameter array: 4 or 5 rows of 12 finite numbers, each row's x's strictly
 * increasing from 0 to 1 and y's nondecreasing from 0 to 1 (end points (0,0) and (1,1)); the
 * message names the row, the function and the point, e.g. "pap parameters[0] (H2): x2 = 0.3
 * after x1 = 0.4: the x's must be strictly increasing from 0 to 1". */
apl_status apl_check_pap_params(const float *params, int rows, apl_error *err);

/* Threads a CPU variant uses for p->threads (0: OMP_NUM_THREADS if set, else every core). */
int apl_threads(int requested);

/* ---- the reference (reference/): the contracts, literally, in double precision ----
 * grad64 has n entries; grad_aux64 has n_aux entries or is NULL. O(|P| * M) time, O(M) memory. */
apl_status apl_reference(const apl_problem *p, double *grad64, double *grad_aux64,
                         apl_result *res, apl_error *err);

#ifdef __cplusplus
}
#endif
#endif
