/* aploss.c: the command-line front end. Subcommands: list, gen, run, verify (see usage()).
 * The only place that prints and exits: library calls return a status and a message, and an
 * error here is one line on stderr ("aploss: ...") with a non-zero exit:
 * 2 for a usage error, 1 for a failed run or a failed verification. */
#define _GNU_SOURCE
#include "aploss/harness.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

enum { EXIT_FAIL = 1, EXIT_USAGE = 2 };

static _Noreturn void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("aploss: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *const usage_main =
    "usage: aploss <command> [options]\n"
    "\n"
    "The AP-Loss core (docs/SPEC.md): loss and gradient of every variant, checked against\n"
    "the double-precision reference.\n"
    "\n"
    "commands:\n"
    "  list     every variant, CPU or GPU, whether it can run here, and what it is\n"
    "  gen      write generated logits and targets as .npy\n"
    "  run      run one variant on .npy inputs, print a JSON object\n"
    "  verify   run every variant against the reference, print a table\n"
    "\n"
    "'aploss <command> --help' describes each command's options.\n";

static const char *const usage_gen_opts =
    "  --batch N          images per batch (default 1)\n"
    "  --anchors N        anchors per image (default 32736, RetinaNet at 512x512)\n"
    "  --classes N        classes per anchor (default 80, COCO)\n"
    "  --pos-rate R       probability an anchor is positive (default 0.001)\n"
    "  --ignore-rate R    probability an anchor is ignored (default 0.01)\n"
    "  --dist D           score distribution: early, mid or late (default mid)\n"
    "  --seed S           generator seed (default 12345)\n";

static const char *const usage_gen =
    "usage: aploss gen --logits L.npy --targets T.npy [--loss alrp --eloc E.npy]\n"
    "                  [--loss pap --iou I.npy] [generator options]\n"
    "\n"
    "Writes generated logits (float32) and targets (int8), shape (batch, anchors, classes);\n"
    "with --loss alrp also e, the localisation error of each positive (float32, in [0, 2));\n"
    "with --loss pap also the IoU of each positive (float32, in [0, 1)).\n"
    "\n";

/* --loss pap's options, shared by run and verify (docs/SPEC_PAP.md). */
#define PAP_USAGE                                                                                \
    "  --loss pap         Parameterized AP Loss (docs/SPEC_PAP.md; the JSON has loss_fn and topk)\n" \
    "  --iou I.npy        pap: the IoU of each positive, in the flat order of the positives\n"     \
    "                     (1-D float32 or float64, in [0, 1])\n"                                   \
    "  --params P         pap: the control points, a shipped set (retinanet, the default; rpn;\n" \
    "                     rcnn) or C.npy, float32 of shape (5, 12) or (4, 12): rows H2 I2 I3 I1\n" \
    "                     [H1], each x0 y0 .. x5 y5, x's strictly increasing from 0 to 1, y's\n" \
    "                     nondecreasing from 0 to 1\n"                                              \
    "  --topk K           pap: rank the K largest valid logits (default 100000, the published\n"   \
    "                     setting); 0 or all ranks every valid entry\n"

static const char *const usage_run =
    "usage: aploss run --variant NAME --logits L.npy --targets T.npy [--delta D]\n"
    "                  [--threads N] [--grad-out G.npy]\n"
    "                  [--loss alrp --eloc E.npy [--grad-eloc-out GE.npy]]\n"
    "                  [--loss pap --iou I.npy [--params C.npy|retinanet|rpn|rcnn] [--topk K]\n"
    "                   [--grad-iou-out GI.npy]]\n"
    "\n"
    "Runs one variant and prints one JSON object: variant, loss, positives, valid_negatives,\n"
    "elements, delta, threads, seconds (the variant's own time, file I/O excluded).\n"
    "  --threads N        CPU threads for threaded variants (default 0: OMP_NUM_THREADS if set,\n"
    "                     else every core); the result is the same for any N\n"
    "  --delta D          half-width of the step function's ramp, in [2^-100, 2^100]\n"
    "                     (7.9e-31 to 1.3e30; default 1)\n"
    "  --grad-out G.npy   write the gradient (float32, the logits' shape)\n"
    "  --loss L           ap (AP-Loss, the default) or alrp (aLRP Loss; the JSON then also has\n"
    "                     loss_cls and loss_loc, and loss is loss_cls)\n"
    "  --eloc E.npy       alrp: the localisation error e of each positive, in the flat order of\n"
    "                     the positives (1-D float32 or float64, finite, >= 0)\n"
    "  --grad-eloc-out GE.npy  alrp: write d loss_loc / d e (float32, one per positive)\n"
    PAP_USAGE
    "  --grad-iou-out GI.npy   pap: write d loss / d IoU (float32, one per positive)\n";

static const char *const usage_verify =
    "usage: aploss verify [--logits L.npy --targets T.npy | generator options] [--delta D]\n"
    "                     [--variants a,b,...] [--threads N]\n"
    "                     [--loss alrp [--eloc E.npy]]\n"
    "                     [--loss pap [--iou I.npy] [--params P] [--topk K]]\n"
    "\n"
    "Runs the reference and every available variant (or those named) on the same input and\n"
    "prints max abs and relative gradient error, loss error, time and pass/fail. Exits 1 if any\n"
    "variant is outside the SPEC's tolerance (gradient 1e-6 relative to max |grad|, loss 1e-6).\n"
    "--loss alrp checks aLRP Loss (both gradients, both losses) on the variants that implement\n"
    "it; e comes from --eloc with --logits/--targets, and is generated with generated input.\n"
    "--loss pap likewise (the loss and both gradients), with the IoUs from --iou or generated;\n"
    "--params and --topk as for run.\n"
    "Without --logits/--targets the input is generated:\n";

static const char *const usage_list = "usage: aploss list\n\nLists every variant.\n";

/* ---- option values: strict parsing, a one-line error naming the option ---- */

static double parse_double(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v))
        die(EXIT_USAGE, "%s '%s': expected a finite number", opt, s);
    return v;
}

static unsigned long long parse_uint(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '+')
        die(EXIT_USAGE, "%s '%s': expected a non-negative integer", opt, s);
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE)
        die(EXIT_USAGE, "%s '%s': expected a non-negative integer", opt, s);
    return v;
}

/* --threads N: 0 (the default convention of apl_threads) up to 65535. */
static int parse_threads(const char *s)
{
    unsigned long long t = parse_uint("--threads", s);
    if (t > 65535)
        die(EXIT_USAGE, "--threads '%s': expected 0 (default) to 65535", s);
    return (int)t;
}

static double parse_delta(const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0')
        die(EXIT_USAGE, "--delta '%s': expected a number", s);
    /* The range is the library's (apl_check_inputs), so the CLI says what the library says; an
     * underflow (4.9e-324) or overflow (1e999, inf) of strtod lands outside it too. */
    apl_error err = {0};
    if (apl_check_inputs(NULL, NULL, 0, v, &err) != APL_OK)
        die(EXIT_USAGE, "--delta '%s': %s", s, err.msg);
    return v;
}

/* ---- memory: refuse up front what cannot fit, rather than be killed midway ---- */

/* Bytes per element each command holds at once: float32 logits, int8 targets, float32 gradient,
 * and verify's float64 reference gradient. (A variant's own work comes on top: O(|P|) for the
 * sorted ones, up to 16 bytes per valid negative for naive and pruned.) */
enum { BYTES_GEN = 4 + 1, BYTES_RUN = 4 + 1 + 4, BYTES_VERIFY = 4 + 1 + 4 + 8 };

/* A "Key: N kB" line of a /proc file, in bytes; -1 when absent. */
static double proc_kb(const char *file, const char *key)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return -1.0;
    char line[256];
    size_t klen = strlen(key);
    double v = -1.0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtod(line + klen + 1, NULL) * 1024.0;
            break;
        }
    fclose(f);
    return v;
}

/* What this process can still allocate: MemAvailable, or the address-space limit (ulimit -v)
 * less what is mapped already, whichever is smaller. Negative when neither is known. */
static double available_bytes(const char **source)
{
    double avail = proc_kb("/proc/meminfo", "MemAvailable");
    *source = "MemAvailable in /proc/meminfo";
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        double used = proc_kb("/proc/self/status", "VmSize");
        double left = (double)rl.rlim_cur - (used > 0.0 ? used : 0.0);
        if (left < 0.0)
            left = 0.0;
        if (avail < 0.0 || left < avail) {
            avail = left;
            *source = "the address-space limit, ulimit -v";
        }
    }
    return avail;
}

/* Dies before anything is allocated when n elements at `per` bytes each cannot fit. `about`:
 * n is an estimate (from file sizes). */
static void check_memory(const char *cmd, const char *what, double n, int about, int per)
{
    const char *source;
    double avail = available_bytes(&source), need = n * per;
    if (avail >= 0.0 && need > avail)
        die(EXIT_FAIL,
            "%s: %s (%s%.0f elements, %d bytes each) needs %.2f GB but only %.2f GB is available "
            "(%s)", cmd, what, about ? "about " : "", n, per, need / 1e9, avail / 1e9, source);
}

/* An upper bound on the element count of a valid logits/targets pair, from the file sizes alone:
 * a float32 file of n elements holds 4n data bytes after its header, an integer targets file at
 * least n (the reader rejects any other data size). -1 when a size is not known up front (a pipe,
 * or a file that cannot be stat'ed: the reader reports that). */
static double files_max_elements(const char *lpath, const char *tpath)
{
    struct stat ls, ts;
    if (stat(lpath, &ls) != 0 || stat(tpath, &ts) != 0 || !S_ISREG(ls.st_mode) ||
        !S_ISREG(ts.st_mode))
        return -1.0;
    double nl = (double)ls.st_size / 4.0, nt = (double)ts.st_size;
    return nl < nt ? nl : nt;
}

static void check_files_memory(const char *cmd, const char *lpath, const char *tpath, int per)
{
    double n = files_max_elements(lpath, tpath);
    if (n >= 0.0)
        check_memory(cmd, "the input", n, 1, per);
}

/* ---- inputs: from files or from the generator ---- */

typedef struct {
    float *logits;
    int8_t *targets;
    size_t n;
    apl_shape shape;
    char what[256]; /* where the input came from, for the report */
    float *aux;     /* aLRP: e, one per positive (from --eloc or generated); NULL for AP */
    size_t n_aux;
} input;

static void load_files(input *in, const char *lpath, const char *tpath)
{
    apl_error err = {0};
    apl_shape ts;
    if (apl_npy_read_logits(lpath, &in->logits, &in->shape, &err) != APL_OK)
        die(EXIT_FAIL, "%s", err.msg);
    if (apl_npy_read_targets(tpath, &in->targets, &ts, &err) != APL_OK)
        die(EXIT_FAIL, "%s", err.msg);
    if (!apl_shape_equal(&ts, &in->shape)) {
        char a[128] = "", b[128] = "";
        for (int d = 0; d < in->shape.ndim; d++)
            snprintf(a + strlen(a), sizeof a - strlen(a), "%s%zu", d ? ", " : "", in->shape.dims[d]);
        for (int d = 0; d < ts.ndim; d++)
            snprintf(b + strlen(b), sizeof b - strlen(b), "%s%zu", d ? ", " : "", ts.dims[d]);
        die(EXIT_FAIL, "shape mismatch: %s has shape (%s) but %s has shape (%s)", lpath, a, tpath,
            b);
    }
    in->n = apl_shape_count(&in->shape);
    snprintf(in->what, sizeof in->what, "%s, %s", lpath, tpath);
}

static void generate(input *in, const apl_gen_params *g, const char *cmd, int bytes_per_element)
{
    apl_error err = {0};
    if (apl_gen_count(g, &in->n, &err) != APL_OK)
        die(EXIT_USAGE, "%s", err.msg);
    char what[128];
    snprintf(what, sizeof what, "batch %zu x anchors %zu x classes %zu", g->batch, g->anchors,
             g->classes);
    check_memory(cmd, what, (double)in->n, 0, bytes_per_element);
    in->logits = malloc((in->n ? in->n : 1) * sizeof *in->logits);
    in->targets = malloc(in->n ? in->n : 1);
    if (!in->logits || !in->targets)
        die(EXIT_FAIL, "cannot allocate %zu elements for generated input", in->n);
    if (apl_generate(g, in->logits, in->targets, &err) != APL_OK)
        die(EXIT_FAIL, "%s", err.msg);
    in->shape = (apl_shape){3, {g->batch, g->anchors, g->classes}};
    snprintf(in->what, sizeof in->what,
             "generated: batch %zu x anchors %zu x classes %zu, pos-rate %g, ignore-rate %g, "
             "dist %s, seed %llu",
             g->batch, g->anchors, g->classes, g->pos_rate, g->ignore_rate, apl_dist_name(g->dist),
             (unsigned long long)g->seed);
}

/* ---- the loss axis: --loss and aLRP's e ---- */

static apl_loss parse_loss(const char *s)
{
    apl_error err = {0};
    apl_loss l;
    if (apl_loss_parse(s, &l, &err) != APL_OK)
        die(EXIT_USAGE, "--loss: %s", err.msg);
    return l;
}

/* --eloc with --loss alrp and only then. */
static void check_loss_options(const char *cmd, apl_loss loss, const char *epath, int needed)
{
    if (loss == APL_LOSS_ALRP && needed && !epath)
        die(EXIT_USAGE, "%s: --loss alrp needs --eloc E.npy (one error per positive)", cmd);
    if (loss != APL_LOSS_ALRP && epath)
        die(EXIT_USAGE, "%s: --eloc is for --loss alrp only", cmd);
}

static void load_eloc(input *in, const char *epath)
{
    apl_error err = {0};
    if (apl_npy_read_aux(epath, "eloc", &in->aux, &in->n_aux, &err) != APL_OK)
        die(EXIT_FAIL, "%s", err.msg);
}

/* The generator's per-positive values for `loss`: aLRP's e or PAP's IoUs. */
static void generate_aux(input *in, const apl_gen_params *g, apl_loss loss)
{
    apl_error err = {0};
    size_t np = 0;
    for (size_t j = 0; j < in->n; j++)
        np += in->targets[j] == 1;
    in->n_aux = np;
    in->aux = malloc((np ? np : 1) * sizeof *in->aux);
    if (!in->aux)
        die(EXIT_FAIL, "cannot allocate %s for %zu positives", loss == APL_LOSS_PAP ? "iou" : "e",
            np);
    if (apl_generate_aux(g, loss, in->targets, in->n, in->aux, np, &err) != APL_OK)
        die(EXIT_FAIL, "%s", err.msg);
}

/* The problem for `in`. For aLRP it is checked here: logits, targets and delta were checked as
 * they were read, so a refusal is about e and names the file it came from. */
static apl_problem make_problem(const input *in, apl_loss loss, double delta, const char *epath)
{
    apl_problem p = {.loss = loss, .logits = in->logits, .targets = in->targets, .n = in->n,
                     .delta = delta, .aux = in->aux, .n_aux = in->n_aux};
    apl_error err = {0};
    if (loss == APL_LOSS_ALRP && apl_check_problem(&p, &err) != APL_OK)
        die(EXIT_FAIL, "%s: %s", epath ? epath : "generated e", err.msg);
    return p;
}

/* ---- PAP's options: --iou, --params, --topk ---- */

typedef struct {
    const char *ipath;  /* --iou I.npy */
    const char *pname;  /* --params: a shipped set's name or a C.npy path */
    size_t topk;        /* 0 = every valid entry */
    int given;          /* --params or --topk appeared */
    const float *ctrl;  /* the control points, param_rows x 12 */
    int rows;
    float *owned;       /* ctrl when read from a file */
} pap_opts;

#define PAP_DEFAULT_TOPK 100000 /* num_topk in every official head and config */

/* --topk K: an integer K >= 1, or 0 / "all" for every valid entry. Read as a number so that the
 * published 1e5 can be written as such; fractions, negatives and words are refused (a K < 1
 * would leave a positive without rows: D = 0 and a NaN loss). */
static size_t parse_topk(const char *s)
{
    if (!strcmp(s, "all"))
        return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v) || v < 0.0 || v != floor(v) ||
        v > 9007199254740992.0 || (v > 0.0 && v < 1.0))
        die(EXIT_USAGE, "--topk '%s': expected an integer K >= 1, or 0 or all to rank every "
                        "valid entry", s);
    return (size_t)v;
}

/* --iou, --params and --topk with --loss pap and only then; --iou is needed where the input
 * comes from files (`needed`). PAP's ramp has delta 1: another --delta is refused, not ignored. */
static void check_pap_options(const char *cmd, apl_loss loss, const pap_opts *po, int needed,
                              double delta)
{
    if (loss == APL_LOSS_PAP && needed && !po->ipath)
        die(EXIT_USAGE, "%s: --loss pap needs --iou I.npy (one IoU per positive)", cmd);
    if (loss != APL_LOSS_PAP && po->ipath)
        die(EXIT_USAGE, "%s: --iou is for --loss pap only", cmd);
    if (loss != APL_LOSS_PAP && po->given)
        die(EXIT_USAGE, "%s: --params and --topk are for --loss pap only", cmd);
    if (loss == APL_LOSS_PAP && delta != 1.0)
        die(EXIT_USAGE, "%s: --delta is not used by --loss pap (its ramp has delta 1)", cmd);
}

/* The control points: a shipped set by name, else a C.npy, checked here so that a refusal names
 * the file. */
static void load_pap_params(pap_opts *po)
{
    apl_error err = {0};
    const char *name = po->pname ? po->pname : "retinanet";
    if (apl_pap_params(name, &po->ctrl, &po->rows, &err) == APL_OK)
        return;
    struct stat st;
    if (stat(name, &st) != 0 && !strchr(name, '/') && !strstr(name, ".npy"))
        die(EXIT_USAGE, "--params '%s': expected retinanet, rpn, rcnn or a C.npy file", name);
    if (apl_npy_read_pap_params(name, &po->owned, &po->rows, &err) != APL_OK)
        die(EXIT_FAIL, "%s", err.msg);
    if (apl_check_pap_params(po->owned, po->rows, &err) != APL_OK)
        die(EXIT_FAIL, "%s: %s", name, err.msg);
    po->ctrl = po->owned;
}

static void load_iou(input *in, const char *ipath)
{
    apl_error err = {0};
    if (apl_npy_read_aux(ipath, "iou", &in->aux, &in->n_aux, &err) != APL_OK)
        die(EXIT_FAIL, "%s", err.msg);
}

/* Completes a PAP problem and checks it: logits, targets and the parameters were checked as
 * they were read, so a refusal is about the IoUs and names the file they came from. */
static void pap_problem(apl_problem *p, const pap_opts *po)
{
    p->params = po->ctrl;
    p->param_rows = po->rows;
    p->topk = po->topk;
    apl_error err = {0};
    if (apl_check_problem(p, &err) != APL_OK)
        die(EXIT_FAIL, "%s: %s", po->ipath ? po->ipath : "generated iou", err.msg);
}

/* Generator options shared by gen and verify; returns 1 if `opt` was one of them. */
enum { O_BATCH = 256, O_ANCHORS, O_CLASSES, O_POS_RATE, O_IGNORE_RATE, O_DIST, O_SEED, O_LOGITS,
       O_TARGETS, O_DELTA, O_VARIANT, O_VARIANTS, O_GRAD_OUT, O_HELP, O_LOSS, O_ELOC, O_GRAD_ELOC_OUT, O_THREADS,
       O_IOU, O_GRAD_IOU_OUT, O_PARAMS, O_TOPK };
/* --loss pap's options of run and verify (gen takes --iou only). */
#define PAP_LONG_OPTS                                                                            \
    {"iou", required_argument, 0, O_IOU}, {"params", required_argument, 0, O_PARAMS},            \
        {"topk", required_argument, 0, O_TOPK}

/* Returns 1 if `opt` was one of PAP_LONG_OPTS. */
static int pap_option(int opt, const char *arg, pap_opts *po)
{
    switch (opt) {
    case O_IOU: po->ipath = arg; return 1;
    case O_PARAMS: po->pname = arg; po->given = 1; return 1;
    case O_TOPK: po->topk = parse_topk(arg); po->given = 1; return 1;
    }
    return 0;
}

#define GEN_LONG_OPTS                                                                            \
    {"batch", required_argument, 0, O_BATCH}, {"anchors", required_argument, 0, O_ANCHORS},      \
        {"classes", required_argument, 0, O_CLASSES},                                            \
        {"pos-rate", required_argument, 0, O_POS_RATE},                                          \
        {"ignore-rate", required_argument, 0, O_IGNORE_RATE},                                    \
        {"dist", required_argument, 0, O_DIST}, {"seed", required_argument, 0, O_SEED}

static int gen_option(int opt, const char *arg, apl_gen_params *g)
{
    apl_error err = {0};
    switch (opt) {
    case O_BATCH: g->batch = (size_t)parse_uint("--batch", arg); return 1;
    case O_ANCHORS: g->anchors = (size_t)parse_uint("--anchors", arg); return 1;
    case O_CLASSES: g->classes = (size_t)parse_uint("--classes", arg); return 1;
    case O_POS_RATE: g->pos_rate = parse_double("--pos-rate", arg); return 1;
    case O_IGNORE_RATE: g->ignore_rate = parse_double("--ignore-rate", arg); return 1;
    case O_SEED: g->seed = parse_uint("--seed", arg); return 1;
    case O_DIST:
        if (apl_dist_parse(arg, &g->dist, &err) != APL_OK)
            die(EXIT_USAGE, "--dist: %s", err.msg);
        return 1;
    }
    return 0;
}

/* getopt_long with our own one-line messages. */
static int next_option(int argc, char **argv, const struct option *longs, const char *cmd)
{
    opterr = 0;
    int opt = getopt_long(argc, argv, "", longs, NULL);
    if (opt == '?') {
        const char *bad = argv[optind - 1];
        if (optopt)
            die(EXIT_USAGE, "%s: option %s needs a value (see 'aploss %s --help')", cmd, bad, cmd);
        die(EXIT_USAGE, "%s: unknown option '%s' (see 'aploss %s --help')", cmd, bad, cmd);
    }
    if (opt == ':')
        die(EXIT_USAGE, "%s: option %s needs a value", cmd, argv[optind - 1]);
    return opt;
}

static void no_operands(int argc, char **argv, const char *cmd)
{
    if (optind < argc)
        die(EXIT_USAGE, "%s: unexpected argument '%s' (see 'aploss %s --help')", cmd, argv[optind],
            cmd);
}

/* ---- list ---- */

static int cmd_list(int argc, char **argv)
{
    static const struct option longs[] = {{"help", no_argument, 0, O_HELP}, {0}};
    int opt;
    while ((opt = next_option(argc, argv, longs, "list")) != -1)
        if (opt == O_HELP) {
            fputs(usage_list, stdout);
            return 0;
        }
    no_operands(argc, argv, "list");
    size_t count;
    const apl_variant *v = apl_variants(&count);
    printf("%-18s %-6s %-12s %-5s %s\n", "variant", "device", "backend", "here", "description");
    for (size_t i = 0; i < count; i++) {
        apl_error why = {0};
        int ok = apl_variant_runnable(&v[i], &why);
        printf("%-18s %-6s %-12s %-5s %s%s%s%s\n", v[i].name, v[i].device == APL_GPU ? "GPU" : "CPU",
               v[i].backend, ok ? "yes" : "no", v[i].description, ok ? "" : " [", ok ? "" : why.msg,
               ok ? "" : "]");
    }
    return 0;
}

/* ---- gen ---- */

static int cmd_gen(int argc, char **argv)
{
    static const struct option longs[] = {GEN_LONG_OPTS,
                                           {"logits", required_argument, 0, O_LOGITS},
                                           {"targets", required_argument, 0, O_TARGETS},
                                           {"loss", required_argument, 0, O_LOSS},
                                           {"eloc", required_argument, 0, O_ELOC},
                                           {"iou", required_argument, 0, O_IOU},
                                           {"help", no_argument, 0, O_HELP},
                                           {0}};
    apl_gen_params g;
    apl_gen_defaults(&g);
    const char *lpath = NULL, *tpath = NULL, *epath = NULL, *ipath = NULL;
    apl_loss loss = APL_LOSS_AP;
    int opt;
    while ((opt = next_option(argc, argv, longs, "gen")) != -1) {
        if (gen_option(opt, optarg, &g))
            continue;
        if (opt == O_LOGITS)
            lpath = optarg;
        else if (opt == O_TARGETS)
            tpath = optarg;
        else if (opt == O_LOSS)
            loss = parse_loss(optarg);
        else if (opt == O_ELOC)
            epath = optarg;
        else if (opt == O_IOU)
            ipath = optarg;
        else if (opt == O_HELP) {
            printf("%s%s", usage_gen, usage_gen_opts);
            return 0;
        }
    }
    no_operands(argc, argv, "gen");
    if (!lpath || !tpath)
        die(EXIT_USAGE, "gen: --logits and --targets are required (see 'aploss gen --help')");
    check_loss_options("gen", loss, epath, 1);
    check_pap_options("gen", loss, &(pap_opts){.ipath = ipath}, 1, 1.0);
    input in = {0};
    generate(&in, &g, "gen", BYTES_GEN);
    if (loss == APL_LOSS_ALRP || loss == APL_LOSS_PAP)
        generate_aux(&in, &g, loss);
    apl_error err = {0};
    if (apl_npy_write_f32(lpath, in.logits, &in.shape, &err) != APL_OK)
        die(EXIT_FAIL, "%s", err.msg);
    if (apl_npy_write_i8(tpath, in.targets, &in.shape, &err) != APL_OK)
        die(EXIT_FAIL, "%s", err.msg);
    size_t np = 0;
    for (size_t j = 0; j < in.n; j++)
        np += in.targets[j] == 1;
    apl_shape es = {1, {in.n_aux}};
    if (epath && apl_npy_write_f32(epath, in.aux, &es, &err) != APL_OK)
        die(EXIT_FAIL, "%s", err.msg);
    if (ipath && apl_npy_write_f32(ipath, in.aux, &es, &err) != APL_OK)
        die(EXIT_FAIL, "%s", err.msg);
    fprintf(stderr, "aploss: wrote %zu elements (%zu positives) to %s and %s%s%s%s%s\n", in.n, np,
            lpath, tpath, epath ? ", e to " : "", epath ? epath : "", ipath ? ", iou to " : "",
            ipath ? ipath : "");
    free(in.aux);
    free(in.logits);
    free(in.targets);
    return 0;
}

/* ---- run ---- */

static const apl_variant *find_variant(const char *name)
{
    const apl_variant *v = apl_variant_find(name);
    if (!v) {
        size_t count;
        const apl_variant *all = apl_variants(&count);
        char names[512] = "";
        for (size_t i = 0; i < count; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                     all[i].name);
        die(EXIT_USAGE, "unknown variant '%s' (variants: %s)", name, names);
    }
    return v;
}

static int cmd_run(int argc, char **argv)
{
    static const struct option longs[] = {{"variant", required_argument, 0, O_VARIANT},
                                           {"logits", required_argument, 0, O_LOGITS},
                                           {"targets", required_argument, 0, O_TARGETS},
                                           {"delta", required_argument, 0, O_DELTA},
                                           {"grad-out", required_argument, 0, O_GRAD_OUT},
                                           {"loss", required_argument, 0, O_LOSS},
                                           {"eloc", required_argument, 0, O_ELOC},
                                           {"grad-eloc-out", required_argument, 0, O_GRAD_ELOC_OUT},
                                           {"threads", required_argument, 0, O_THREADS},
                                           PAP_LONG_OPTS,
                                           {"grad-iou-out", required_argument, 0, O_GRAD_IOU_OUT},
                                           {"help", no_argument, 0, O_HELP},
                                           {0}};
    const char *vname = NULL, *lpath = NULL, *tpath = NULL, *gpath = NULL;
    const char *epath = NULL, *gepath = NULL, *gipath = NULL;
    pap_opts po = {.topk = PAP_DEFAULT_TOPK};
    apl_loss loss = APL_LOSS_AP;
    double delta = 1.0;
    int opt, threads = 0;
    while ((opt = next_option(argc, argv, longs, "run")) != -1) {
        if (pap_option(opt, optarg, &po))
            continue;
        switch (opt) {
        case O_VARIANT: vname = optarg; break;
        case O_LOGITS: lpath = optarg; break;
        case O_TARGETS: tpath = optarg; break;
        case O_DELTA: delta = parse_delta(optarg); break;
        case O_GRAD_OUT: gpath = optarg; break;
        case O_LOSS: loss = parse_loss(optarg); break;
        case O_ELOC: epath = optarg; break;
        case O_GRAD_ELOC_OUT: gepath = optarg; break;
        case O_GRAD_IOU_OUT: gipath = optarg; break;
        case O_THREADS: threads = parse_threads(optarg); break;
        case O_HELP: fputs(usage_run, stdout); return 0;
        }
    }
    no_operands(argc, argv, "run");
    if (!vname || !lpath || !tpath)
        die(EXIT_USAGE,
            "run: --variant, --logits and --targets are required (see 'aploss run --help')");
    check_loss_options("run", loss, epath, 1);
    if (gepath && loss != APL_LOSS_ALRP)
        die(EXIT_USAGE, "run: --grad-eloc-out is for --loss alrp only");
    check_pap_options("run", loss, &po, 1, delta);
    if (gipath && loss != APL_LOSS_PAP)
        die(EXIT_USAGE, "run: --grad-iou-out is for --loss pap only");
    const apl_variant *v = find_variant(vname);
    apl_error err = {0};
    if (!apl_variant_has_loss(v, loss))
        die(EXIT_FAIL, "variant %s does not implement loss %s (see 'aploss list')", v->name,
            apl_loss_name(loss));
    if (!apl_variant_runnable(v, &err))
        die(EXIT_FAIL, "%s", err.msg);
    input in = {0};
    check_files_memory("run", lpath, tpath, BYTES_RUN);
    load_files(&in, lpath, tpath);
    if (epath)
        load_eloc(&in, epath);
    if (loss == APL_LOSS_PAP) {
        load_pap_params(&po);
        load_iou(&in, po.ipath);
    }
    float *grad_e = malloc((in.n_aux ? in.n_aux : 1) * sizeof *grad_e);
    if (!grad_e)
        die(EXIT_FAIL, "cannot allocate grad_e (%zu positives)", in.n_aux);
    float *grad = malloc((in.n ? in.n : 1) * sizeof *grad);
    if (!grad)
        die(EXIT_FAIL, "cannot allocate the gradient (%zu elements)", in.n);
    apl_result r;
    apl_problem prob = make_problem(&in, loss, delta, epath);
    prob.threads = threads;
    if (loss == APL_LOSS_PAP)
        pap_problem(&prob, &po);
    const apl_output out = {grad, loss != APL_LOSS_AP ? grad_e : NULL};
    double t0 = now_seconds();
    apl_status st = apl_run(v, &prob, &out, &r, &err);
    double secs = now_seconds() - t0;
    if (st != APL_OK)
        die(EXIT_FAIL, "%s: %s", v->name, err.msg);
    if (gpath && apl_npy_write_f32(gpath, grad, &in.shape, &err) != APL_OK)
        die(EXIT_FAIL, "%s", err.msg);
    apl_shape es = {1, {in.n_aux}};
    if (gepath && apl_npy_write_f32(gepath, grad_e, &es, &err) != APL_OK)
        die(EXIT_FAIL, "%s", err.msg);
    if (gipath && apl_npy_write_f32(gipath, grad_e, &es, &err) != APL_OK)
        die(EXIT_FAIL, "%s", err.msg);
    if (loss == APL_LOSS_PAP) /* topk 0: every valid entry was ranked */
        printf("{\"variant\": \"%s\", \"loss_fn\": \"pap\", \"loss\": %.17g, \"positives\": %zu, "
               "\"valid_negatives\": %zu, \"elements\": %zu, \"topk\": %zu, \"param_rows\": %d, "
               "\"threads\": %d, \"seconds\": %.9f}\n",
               v->name, r.loss, r.positives, r.valid_negatives, in.n, po.topk, po.rows,
               v->threaded ? apl_threads(threads) : 1, secs);
    else if (loss == APL_LOSS_ALRP)
        printf("{\"variant\": \"%s\", \"loss_fn\": \"alrp\", \"loss\": %.17g, \"loss_cls\": %.17g, "
               "\"loss_loc\": %.17g, \"positives\": %zu, \"valid_negatives\": %zu, \"elements\": %zu, "
               "\"delta\": %.17g, \"threads\": %d, \"seconds\": %.9f}\n",
               v->name, r.loss, r.loss, r.loss_loc, r.positives, r.valid_negatives, in.n, delta,
               v->threaded ? apl_threads(threads) : 1, secs);
    else
    printf("{\"variant\": \"%s\", \"loss\": %.17g, \"positives\": %zu, \"valid_negatives\": %zu, "
           "\"elements\": %zu, \"delta\": %.17g, \"threads\": %d, \"seconds\": %.9f}\n",
           v->name, r.loss, r.positives, r.valid_negatives, in.n, delta,
           v->threaded ? apl_threads(threads) : 1, secs);
    free(grad);
    free(grad_e);
    free(po.owned);
    free(in.aux);
    free(in.logits);
    free(in.targets);
    return 0;
}

/* ---- verify ---- */

static int selected(const char *list, const char *name)
{
    if (!list)
        return 1;
    size_t len = strlen(name);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        if (l == len && strncmp(p, name, l) == 0)
            return 1;
        p += l + (comma != NULL);
    }
    return 0;
}

static int cmd_verify(int argc, char **argv)
{
    static const struct option longs[] = {GEN_LONG_OPTS,
                                           {"logits", required_argument, 0, O_LOGITS},
                                           {"targets", required_argument, 0, O_TARGETS},
                                           {"delta", required_argument, 0, O_DELTA},
                                           {"variants", required_argument, 0, O_VARIANTS},
                                           {"loss", required_argument, 0, O_LOSS},
                                           {"eloc", required_argument, 0, O_ELOC},
                                           {"threads", required_argument, 0, O_THREADS},
                                           PAP_LONG_OPTS,
                                           {"help", no_argument, 0, O_HELP},
                                           {0}};
    pap_opts po = {.topk = PAP_DEFAULT_TOPK};
    apl_gen_params g;
    apl_gen_defaults(&g);
    const char *lpath = NULL, *tpath = NULL, *list = NULL, *epath = NULL;
    apl_loss loss = APL_LOSS_AP;
    int gen_opts = 0, threads = 0;
    double delta = 1.0;
    int opt;
    while ((opt = next_option(argc, argv, longs, "verify")) != -1) {
        if (gen_option(opt, optarg, &g)) {
            gen_opts = 1;
            continue;
        }
        if (pap_option(opt, optarg, &po))
            continue;
        switch (opt) {
        case O_LOGITS: lpath = optarg; break;
        case O_TARGETS: tpath = optarg; break;
        case O_DELTA: delta = parse_delta(optarg); break;
        case O_VARIANTS: list = optarg; break;
        case O_LOSS: loss = parse_loss(optarg); break;
        case O_ELOC: epath = optarg; break;
        case O_THREADS: threads = parse_threads(optarg); break;
        case O_HELP: printf("%s%s", usage_verify, usage_gen_opts); return 0;
        }
    }
    no_operands(argc, argv, "verify");
    if ((lpath != NULL) != (tpath != NULL))
        die(EXIT_USAGE, "verify: give both --logits and --targets, or neither");
    if (lpath && gen_opts)
        die(EXIT_USAGE, "verify: generator options cannot be combined with --logits/--targets");
    check_loss_options("verify", loss, epath, lpath != NULL);
    if (epath && !lpath)
        die(EXIT_USAGE, "verify: --eloc goes with --logits/--targets (generated input gets "
                        "generated e)");
    check_pap_options("verify", loss, &po, lpath != NULL, delta);
    if (po.ipath && !lpath)
        die(EXIT_USAGE, "verify: --iou goes with --logits/--targets (generated input gets "
                        "generated IoUs)");
    if (loss == APL_LOSS_PAP)
        load_pap_params(&po);
    size_t count;
    const apl_variant *all = apl_variants(&count);
    if (list) /* every name in the list must exist */
        for (const char *p = list; *p;) {
            const char *comma = strchr(p, ',');
            size_t l = comma ? (size_t)(comma - p) : strlen(p);
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(l < 127 ? l : 127), p);
            find_variant(name);
            p += l + (comma != NULL);
        }

    input in = {0};
    if (lpath) {
        check_files_memory("verify", lpath, tpath, BYTES_VERIFY);
        load_files(&in, lpath, tpath);
        if (epath)
            load_eloc(&in, epath);
        if (po.ipath)
            load_iou(&in, po.ipath);
    } else {
        generate(&in, &g, "verify", BYTES_VERIFY);
        if (loss != APL_LOSS_AP)
            generate_aux(&in, &g, loss);
    }
    apl_problem prob0 = make_problem(&in, loss, delta, epath);
    if (loss == APL_LOSS_PAP)
        pap_problem(&prob0, &po);
    size_t e1 = in.n_aux ? in.n_aux : 1;
    double *grad_e64 = malloc(e1 * sizeof *grad_e64);
    float *grad_e = malloc(e1 * sizeof *grad_e);
    if (!grad_e64 || !grad_e)
        die(EXIT_FAIL, "cannot allocate grad_e for %zu positives", in.n_aux);

    apl_error err = {0};
    size_t n1 = in.n ? in.n : 1;
    double *grad64 = malloc(n1 * sizeof *grad64);
    float *grad = malloc(n1 * sizeof *grad);
    if (!grad64 || !grad)
        die(EXIT_FAIL, "cannot allocate gradients for %zu elements", in.n);
    apl_result ref;
    double t0 = now_seconds();
    if (apl_reference(&prob0, grad64, loss != APL_LOSS_AP ? grad_e64 : NULL, &ref, &err) != APL_OK)
        die(EXIT_FAIL, "reference: %s", err.msg);
    double tref = now_seconds() - t0;

    printf("input: %s\n", in.what);
    printf("elements %zu, positives %zu, valid negatives %zu, delta %g\n", in.n, ref.positives,
           ref.valid_negatives, delta);
    printf("tolerance: max|grad - grad64| <= %g * max|grad64|, |loss - loss64| <= %g\n\n",
           APL_TOL_GRAD_REL, APL_TOL_LOSS_ABS);
    printf("%-18s %12s %12s %12s %11s  %s\n", "variant", "max_abs_err", "max_rel_err", "loss_err",
           "seconds", "result");
    if (loss == APL_LOSS_ALRP)
        printf("loss alrp: loss_err is loss_cls's; each variant's second row has grad_e's "
               "max_rel_err and loss_loc's error, with the same tolerances\n");
    if (loss == APL_LOSS_PAP)
        printf("loss pap: %d parameter rows, topk %zu%s; each variant's second row has the IoU "
               "gradient's max_rel_err, with the same tolerance\n", po.rows, po.topk,
               po.topk ? "" : " (every valid entry ranked)");
    printf("%-18s %12s %12s %12s %11.6f  loss %.12f", "reference", "-", "-", "-", tref, ref.loss);
    if (loss == APL_LOSS_ALRP)
        printf(", loss_loc %.12f", ref.loss_loc);
    putchar('\n');
    int failed = 0, ran = 0;
    for (size_t i = 0; i < count; i++) {
        const apl_variant *v = &all[i];
        if (!selected(list, v->name))
            continue;
        apl_error why = {0};
        if (!apl_variant_has_loss(v, loss)) {
            printf("%-18s %12s %12s %12s %11s  skipped: does not implement loss %s\n", v->name,
                   "-", "-", "-", "-", apl_loss_name(loss));
            continue;
        }
        if (!apl_variant_runnable(v, &why)) {
            printf("%-18s %12s %12s %12s %11s  skipped: %s\n", v->name, "-", "-", "-", "-", why.msg);
            continue;
        }
        apl_result r;
        apl_problem prob = prob0;
        prob.threads = threads;
        const apl_output out = {grad, loss != APL_LOSS_AP ? grad_e : NULL};
        t0 = now_seconds();
        apl_status st = apl_run(v, &prob, &out, &r, &err);
        double secs = now_seconds() - t0;
        ran++;
        if (st != APL_OK) {
            printf("%-18s %12s %12s %12s %11.6f  FAIL: %s\n", v->name, "-", "-", "-", secs, err.msg);
            failed++;
            continue;
        }
        /* The one acceptance rule (apl_accept: counts, gradient, zero pattern, loss); a failure
         * is described by its verdict. */
        apl_verdict ag;
        apl_accept(&prob, grad, out.grad_aux, &r, grad64, out.grad_aux ? grad_e64 : NULL, &ref,
                   &ag);
        char verdict[APL_MSG_LEN];
        apl_verdict_format(&ag, verdict, sizeof verdict);
        printf("%-18s %12.3e %12.3e %12.3e %11.6f  %s\n", v->name, ag.max_abs_err, ag.max_rel_err,
               ag.loss_err, secs, ag.pass ? "pass" : verdict);
        if (loss == APL_LOSS_ALRP) /* a second row: grad_e's error and loss_loc's */
            printf("%-18s %12s %12.3e %12.3e %11s  (grad_e, loss_loc)\n", "", "",
                   ag.aux_max_rel_err, ag.loss_loc_err, "");
        if (loss == APL_LOSS_PAP) /* a second row: the IoU gradient's error */
            printf("%-18s %12s %12.3e %12s %11s  (grad_iou)\n", "", "", ag.aux_max_rel_err, "-",
                   "");
        failed += !ag.pass;
    }
    if (ran == 0)
        printf("\nno variant could run here\n");
    else if (failed)
        printf("\n%d of %d variants FAILED\n", failed, ran);
    else
        printf("\nall %d variants agree with the reference\n", ran);
    free(grad);
    free(grad64);
    free(grad_e);
    free(grad_e64);
    free(po.owned);
    free(in.aux);
    free(in.logits);
    free(in.targets);
    return failed || ran == 0 ? EXIT_FAIL : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage_main, stdout);
        return 0;
    }
    /* Each subcommand parses argv[1..]: getopt sees the subcommand as argv[0]. */
    if (!strcmp(cmd, "list"))
        return cmd_list(argc - 1, argv + 1);
    if (!strcmp(cmd, "gen"))
        return cmd_gen(argc - 1, argv + 1);
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "verify"))
        return cmd_verify(argc - 1, argv + 1);
    die(EXIT_USAGE, "unknown command '%s' (commands: list, gen, run, verify; see 'aploss --help')",
        cmd);
}
