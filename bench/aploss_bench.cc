// aploss_bench.cc: the one Google Benchmark binary. The sweep (slices, axes, budgets, thread
// counts, losses) is declared once, in bench/sweep.json (read by bench/sweep.cc); this file
// registers, per cell of the chosen mode:
//   BM_loss/<variant>/<loss>/elements:<M>/pos_ppm:<ppm>/delta:<d>/dist:<dist>/threads:<T>
//   (PAP rows: BM_loss/<variant>/pap/topk:<K>/elements:...; K from sweep.json pap.topk, 0 = all)
//       every row of the variant table for every loss of the cell it implements
//       (apl_variant_has_loss); CPU rows that honour apl_problem.threads (v.threaded) at each of
//       the cell's thread counts ("all" = apl_threads(0)), other CPU rows once at threads:1;
//       GPU rows carry no threads field;
//   BM_floor/elements:<M>/threads:<T>   the memory floor (bench/passes.c) and
//   BM_focal/elements:<M>/threads:<T>   sigmoid focal loss, forward + gradient (bench/passes.c),
//       at every (size, thread count) some BM_loss row uses, so each variant is compared with
//       them like for like;
//   BM_floor_gpu/elements:<M>           the device memory floor.
//
// Before timing, each BM_loss row validates its variant with apl_accept against apl_reference
// (the problem's loss, the row's thread count), on its own input when the O(P*M) reference fits
// the mode's ref_budget_s, otherwise on the largest prefix of that input that does (a prefix of
// A anchors is exactly apl_generate's output with A anchors: the generator is counter-based).
// A row that is not timed calls SkipWithError with a readable message AND sets its label to
// "skip_reason=<code>" (one of kSkipReasons below; over_budget adds "; predicted_s=<s>"): the
// converter and the CTest checks classify by that field, never by the message.
//
// Timed: the variant function alone (inputs were checked once by apl_run during validation).
// GPU rows: device-resident. Each input (with aLRP's e) is copied to the GPU once
// (apl_gpu_bench_create_problem, cached with the input); every iteration runs the variant's
// device_fn for the row's loss on the device buffers between two CUDA events
// (apl_gpu_bench_run_loss), reported through UseManualTime.
//
// Hidden test hook: APL_BENCH_INJECT_WRONG=1 adds a variant "wrong" (sorted with its gradient
// scaled by 1.001), which must be refused (skip_reason=refused:<reason>), never timed.

#include <benchmark/benchmark.h>

#include "aploss/harness.h"
#include "bench_build_info.h"
#include "passes.h"
#include "sweep.h"

#include <algorithm>
#include <cstdarg>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace {

using aplbench::Sweep;
using aplbench::SweepCell;

// ---- why a row was not timed: the codes the label carries (documented in bench/README.md) ----
// refused and error carry a detail: refused:<apl_reason_name>, error:<apl_status_name>.
const char *const kSkipReasons =
    "no_device (GPU row, no CUDA device), not_built (not compiled into this binary), "
    "device_error (the CUDA driver failed), no_device_fn (GPU row without a device-resident "
    "entry), no_aux_inputs (GPU row of PAP: the device-resident path, apl_gpu_bench_*, carries "
    "aLRP's e but not PAP's parameters and top-K yet), "
    "over_budget (predicted time per call above budget_s; predicted_s=...), "
    "refused:<reason> (disagrees with the reference; apl_reason_name), "
    "error:<status> (a call failed; apl_status_name)";

// ---- options (ours; Google Benchmark's own --benchmark_* flags pass through) ----
struct Options {
    std::string mode = "default";
    std::string sweep_file = APL_BENCH_SOURCE_DIR "/bench/sweep.json";
    double budget_s = 0, ref_budget_s = 0; // 0: the mode's
    bool list_cells = false;
};
Options g_opt;
Sweep g_sweep;

std::string fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char *f, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

// ---- the cells ----
struct InputKey {
    size_t batch, anchors; // elements = batch * anchors * classes
    unsigned pos_ppm;
    apl_dist dist;
    bool operator==(const InputKey &o) const
    {
        return batch == o.batch && anchors == o.anchors && pos_ppm == o.pos_ppm && dist == o.dist;
    }
    size_t elements() const { return batch * anchors * g_sweep.classes; }
};

struct Cell {
    InputKey in;
    double delta;
};

// One BM_loss row.
struct Row {
    apl_variant v;
    apl_loss loss;
    Cell c;
    int threads; // resolved, >= 1; 0 for GPU rows
    size_t topk; // PAP rows: this row's value of sweep.json's pap.topk axis (0 = untruncated)
    std::string name;
};

// ---- the input cache: one input at a time, with its reference results per prefix ----
struct Reference {
    std::vector<double> grad64;
    apl_result res;
};

struct Input {
    InputKey key;
    size_t n = 0, positives = 0;
    std::vector<float> s;
    std::vector<int8_t> t;
    std::vector<float> grad;
    // Per-positive inputs in the flat order of the positives (apl_generate_aux: the k-th value
    // depends on the seed and k only, so a prefix of the input takes a prefix of them).
    std::vector<float> eloc, iou;
    std::map<std::tuple<size_t, double, int, size_t>, Reference>
        refs; // (prefix elements, delta, loss, top-K: PAP's reference depends on it)
    apl_gpu_bench *gpu = nullptr; // s, t and eloc on the device, made on first use by a GPU row
    Input() = default;
    Input(const Input &) = delete;
    Input &operator=(const Input &) = delete;
    ~Input() { apl_gpu_bench_destroy(gpu); }
};

std::unique_ptr<Input> g_input;
double g_ref_sec_per_op = 2e-9; // updated from every reference run that does real work

Input *get_input(const InputKey &k, std::string *error)
{
    if (g_input && g_input->key == k)
        return g_input.get();
    g_input.reset(); // free the previous one first: at 1e8 elements each takes 1.7 GB
    auto in = std::make_unique<Input>();
    in->key = k;
    apl_gen_params p;
    apl_gen_defaults(&p);
    p.batch = k.batch;
    p.anchors = k.anchors;
    p.classes = g_sweep.classes;
    p.ignore_rate = g_sweep.ignore_rate;
    p.pos_rate = k.pos_ppm * 1e-6;
    p.dist = k.dist;
    p.seed = g_sweep.seed;
    apl_error err{};
    if (apl_gen_count(&p, &in->n, &err) != APL_OK) {
        *error = fmt("generator: %s", err.msg);
        return nullptr;
    }
    in->s.resize(in->n);
    in->t.resize(in->n);
    in->grad.assign(in->n, 0.0f);
    if (apl_generate(&p, in->s.data(), in->t.data(), &err) != APL_OK) {
        *error = fmt("generator: %s", err.msg);
        return nullptr;
    }
    for (size_t j = 0; j < in->n; j++)
        in->positives += in->t[j] == 1;
    in->eloc.resize(in->positives);
    in->iou.resize(in->positives);
    if (apl_generate_aux(&p, APL_LOSS_ALRP, in->t.data(), in->n, in->eloc.data(), in->positives,
                         &err) != APL_OK ||
        apl_generate_aux(&p, APL_LOSS_PAP, in->t.data(), in->n, in->iou.data(), in->positives,
                         &err) != APL_OK) {
        *error = fmt("generator (per-positive inputs): %s", err.msg);
        return nullptr;
    }
    g_input = std::move(in);
    return g_input.get();
}

// The cached input's device copy (inputs copied to the GPU once per input): logits, targets and
// aLRP's e, so that one copy serves the AP and the aLRP rows.
apl_gpu_bench *get_gpu(Input &in, std::string *error)
{
    if (in.gpu)
        return in.gpu;
    apl_error err{};
    apl_problem prob = apl_ap_problem(in.s.data(), in.t.data(), in.n, 1.0);
    prob.loss = APL_LOSS_ALRP;
    prob.aux = in.eloc.data();
    prob.n_aux = in.positives;
    if (apl_gpu_bench_create_problem(&prob, &in.gpu, &err) != APL_OK) {
        *error = fmt("cannot copy the input to the device: %s", err.msg);
        return nullptr;
    }
    return in.gpu;
}

// The problem a row solves on the first n elements of the input. aLRP takes e and PAP the IoUs
// of the prefix's positives (a prefix of Input's arrays); PAP also the sweep's parameter set and
// the row's top-K (sweep.json "pap": params, and topk, an axis of PAP rows).
bool make_problem(const Input &in, size_t n, apl_loss loss, double delta, int threads,
                  size_t topk, apl_problem *prob, std::string *why)
{
    *prob = apl_ap_problem(in.s.data(), in.t.data(), n, delta);
    prob->loss = loss;
    prob->threads = threads;
    if (loss == APL_LOSS_AP)
        return true;
    size_t np = in.positives;
    if (n != in.n)
        np = (size_t)std::count(in.t.begin(), in.t.begin() + (ptrdiff_t)n, (int8_t)1);
    prob->aux = loss == APL_LOSS_ALRP ? in.eloc.data() : in.iou.data();
    prob->n_aux = np;
    if (loss == APL_LOSS_PAP) {
        apl_error err{};
        int rows = 0;
        if (apl_pap_params(g_sweep.pap_params.c_str(), &prob->params, &rows, &err) != APL_OK) {
            *why = fmt("sweep.json pap.params: %s", err.msg);
            return false;
        }
        prob->param_rows = rows;
        prob->topk = topk;
    }
    return true;
}

// |P| and |V| of the first n elements, as docs/SPEC.md defines them (for choosing a prefix
// the reference can validate within its budget).
void count_pv(const float *s, const int8_t *t, size_t n, double delta, size_t *np, size_t *nv)
{
    float mn = INFINITY;
    size_t p = 0;
    for (size_t j = 0; j < n; j++)
        if (t[j] == 1) {
            p++;
            mn = std::min(mn, s[j]);
        }
    size_t v = 0;
    if (p) {
        double thr = (double)mn - delta;
        for (size_t j = 0; j < n; j++)
            v += t[j] == 0 && (double)s[j] >= thr;
    }
    *np = p;
    *nv = v;
}

// The reference does |P| * (|P| + 2|V|) H evaluations.
double ref_ops(size_t np, size_t nv) { return (double)np * ((double)np + 2.0 * (double)nv); }

const Reference *get_reference(Input &in, const apl_problem &prob, std::string *error)
{
    auto key = std::make_tuple(prob.n, prob.delta, (int)prob.loss,
                               prob.loss == APL_LOSS_PAP ? prob.topk : (size_t)0);
    auto it = in.refs.find(key);
    if (it != in.refs.end())
        return &it->second;
    Reference r;
    r.grad64.resize(prob.n);
    apl_error err{};
    auto t0 = std::chrono::steady_clock::now();
    if (apl_reference(&prob, r.grad64.data(), nullptr, &r.res, &err) != APL_OK) {
        *error = fmt("reference failed: %s: %s", apl_status_name(err.code), err.msg);
        return nullptr;
    }
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double ops = ref_ops(r.res.positives, r.res.valid_negatives);
    if (ops > 1e7)
        g_ref_sec_per_op = sec / ops;
    return &in.refs.emplace(key, std::move(r)).first->second;
}

// ---- validation, decided once per benchmark name (repetitions reuse it) ----
struct Decision {
    bool ok = false;
    std::string skip_reason; // code (kSkipReasons) when !ok
    double predicted_s = 0;  // over_budget only
    std::string message;     // human-readable, the SkipWithError text when !ok
    std::string label;
    size_t positives = 0, valid_negatives = 0, val_elements = 0;
    double val_max_rel_err = 0, val_loss_err = 0;
};
std::map<std::string, Decision> g_decisions;

Decision skip(const std::string &code, const std::string &message)
{
    Decision d;
    d.skip_reason = code;
    d.message = message;
    return d;
}

double seconds_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Decision decide(const Row &row)
{
    const apl_variant &v = row.v;
    const Cell &c = row.c;
    apl_error why{};
    if (!apl_variant_runnable(&v, &why)) {
        const char *code = why.code == APL_ERR_UNAVAILABLE ? "not_built"
                           : why.code == APL_ERR_NODEVICE  ? "no_device"
                                                           : "device_error";
        return skip(code, fmt("skipped: %s", why.msg));
    }
    if (v.device == APL_GPU && !v.device_fn)
        return skip("no_device_fn",
                    fmt("skipped: %s has no device-resident entry point (device_fn)", v.name));
    std::string e;
    Input *inp = get_input(c.in, &e);
    if (!inp)
        return skip("error:generator", "error: " + e);
    Input &in = *inp;
    const size_t classes = g_sweep.classes, n = in.n;
    apl_problem prob{};
    if (v.device == APL_GPU && row.loss == APL_LOSS_PAP)
        return skip("no_aux_inputs",
                    fmt("skipped: loss %s on the GPU: apl_gpu_bench_run_loss carries aLRP's e but "
                        "not PAP's parameters and top-K yet (harness.h)", apl_loss_name(row.loss)));
    if (!make_problem(in, n, row.loss, c.delta, row.threads, row.topk, &prob, &e))
        return skip("error:sweep", "error: " + e);
    Decision d;
    count_pv(in.s.data(), in.t.data(), n, c.delta, &d.positives, &d.valid_negatives);

    // The largest prefix (halving the anchors) whose reference run fits the budget.
    size_t anchors = n / classes, vn = n, vp = d.positives, vv = d.valid_negatives;
    while (ref_ops(vp, vv) * g_ref_sec_per_op > g_opt.ref_budget_s && anchors > 1) {
        anchors /= 2;
        vn = anchors * classes;
        count_pv(in.s.data(), in.t.data(), vn, c.delta, &vp, &vv);
    }
    apl_problem vprob{};
    make_problem(in, vn, row.loss, c.delta, row.threads, row.topk, &vprob, &e);
    const Reference *ref = get_reference(in, vprob, &e);
    if (!ref)
        return skip("error:reference", "error: " + e);
    std::string where =
        vn == n ? std::string("validated on its own input")
                : fmt("validated on the first %zu of %zu elements (= apl_generate with %zu anchors, "
                      "%zu positives): the O(P*M) reference on the full input would exceed %g s",
                      vn, n, anchors, vp, g_opt.ref_budget_s);

    apl_result res{};
    apl_status st;
    double t_val = 0;
    if (v.device == APL_GPU) {
        // What is timed: device_fn on device-resident inputs (the cached copy at full size, a
        // temporary one of the prefix's problem for a prefix), the gradient copied back
        // afterwards. The first call includes one-time costs (module loading), so a quick one
        // is repeated for the budget.
        apl_gpu_bench *tmp = nullptr, *gb = nullptr;
        if (vn == n) {
            gb = get_gpu(in, &e);
            st = gb ? APL_OK : APL_ERR_CUDA;
            if (!gb)
                apl_fail(&why, st, "%s", e.c_str());
        } else {
            st = apl_gpu_bench_create_problem(&vprob, &tmp, &why);
            gb = tmp;
        }
        if (st == APL_OK)
            st = apl_gpu_bench_run_loss(gb, &v, row.loss, c.delta, &res, &t_val, &why);
        if (st == APL_OK)
            st = apl_gpu_bench_grad(gb, in.grad.data(), &why);
        if (st == APL_OK && t_val < 2.0) {
            double again = 0;
            apl_result res2{};
            st = apl_gpu_bench_run_loss(gb, &v, row.loss, c.delta, &res2, &again, &why);
            t_val = std::min(t_val, again);
        }
        apl_gpu_bench_destroy(tmp);
    } else {
        const apl_output out = {in.grad.data(), nullptr};
        auto t0 = std::chrono::steady_clock::now();
        st = apl_run(&v, &vprob, &out, &res, &why);
        t_val = seconds_since(t0);
    }
    if (st != APL_OK)
        return skip(std::string("error:") + apl_status_name(st),
                    fmt("error: %s failed during validation: %s: %s", v.name, apl_status_name(st),
                        why.msg));
    apl_verdict ag{};
    apl_accept(&vprob, in.grad.data(), nullptr, &res, ref->grad64.data(), nullptr, &ref->res, &ag);
    d.val_elements = vn;
    d.val_max_rel_err = ag.max_rel_err;
    d.val_loss_err = ag.loss_err;
    if (!ag.pass) {
        char verdict[1024];
        apl_verdict_format(&ag, verdict, sizeof verdict);
        Decision r = skip(std::string("refused:") + apl_reason_name(ag.reason),
                          fmt("refused: %s disagrees with the reference: %s; %s", v.name, verdict,
                              where.c_str()));
        r.val_elements = vn;
        return r;
    }

    // Budget: measured when validated at full size, else extrapolated by positives * elements.
    double predicted = t_val;
    if (vn != n && v.quadratic)
        predicted = t_val * ((double)std::max<size_t>(d.positives, 1) * (double)n) /
                    ((double)std::max<size_t>(vp, 1) * (double)vn);
    else if (vn != n)
        predicted = t_val * (double)n / (double)vn;
    if (predicted > g_opt.budget_s) {
        Decision r = skip("over_budget",
                          fmt("skipped: predicted %.3g s per call > budget %g s (%s; "
                              "positives*elements = %.3g; %s took %.3g s on %zu elements with %zu "
                              "positives)",
                              predicted, g_opt.budget_s, v.quadratic ? "O(P*M) variant" : "variant",
                              (double)d.positives * (double)n, v.name, t_val, vn, vp));
        r.predicted_s = predicted;
        return r;
    }
    d.label = fmt("loss=%s; threads=%d; %s", apl_loss_name(row.loss), row.threads, where.c_str());
    if (row.loss == APL_LOSS_PAP)
        d.label += fmt("; topk=%zu", row.topk);
    if (v.device == APL_GPU)
        d.label += "; time: device-resident: kernels only, inputs already on the GPU, CUDA events";
    if (v.device == APL_GPU && row.loss == APL_LOSS_ALRP)
        d.label += " (aLRP: with its O(|P|) middle on the host and the per-positive copies)";
    d.ok = true;
    return d;
}

// A row that is not timed: the message for people, the label for programs.
void skip_row(benchmark::State &state, const std::string &code, const std::string &message,
              double predicted_s = 0)
{
    std::string label = "skip_reason=" + code;
    if (predicted_s > 0)
        label += fmt("; predicted_s=%.6g", predicted_s);
    state.SetLabel(label);
    state.SkipWithError(message.c_str());
}

void set_common_counters(benchmark::State &state, size_t n, int threads)
{
    state.SetItemsProcessed((int64_t)state.iterations() * (int64_t)n);
    state.SetBytesProcessed((int64_t)state.iterations() * (int64_t)n * (4 + 1 + 4));
    if (threads > 0)
        state.counters["threads_used"] = threads;
}

void bm_loss(benchmark::State &state, Row row)
{
    const apl_variant &v = row.v;
    auto it = g_decisions.find(row.name);
    if (it == g_decisions.end())
        it = g_decisions.emplace(row.name, decide(row)).first;
    const Decision &d = it->second;
    if (!d.ok) {
        skip_row(state, d.skip_reason, d.message, d.predicted_s);
        return;
    }
    std::string e;
    Input *in = get_input(row.c.in, &e); // cached unless benchmarks were interleaved
    if (!in) {
        skip_row(state, "error:generator", "error: " + e);
        return;
    }
    float *grad = in->grad.data();
    apl_result res{};
    apl_error err{};
    apl_status st = APL_OK;
    if (v.device == APL_GPU) {
        apl_gpu_bench *gb = get_gpu(*in, &e); // made during validation unless evicted
        if (!gb) {
            skip_row(state, "error:CUDA", "error: " + e);
            return;
        }
        for (auto _ : state) {
            double sec = 0;
            st = apl_gpu_bench_run_loss(gb, &v, row.loss, row.c.delta, &res, &sec, &err);
            if (st != APL_OK)
                break;
            state.SetIterationTime(sec);
        }
    } else {
        apl_problem prob{};
        make_problem(*in, in->n, row.loss, row.c.delta, row.threads, row.topk, &prob, &e);
        const apl_output out = {grad, nullptr};
        for (auto _ : state) {
            st = v.fn(&prob, &out, &res, &err);
            benchmark::DoNotOptimize(grad);
            benchmark::ClobberMemory();
            if (st != APL_OK)
                break;
        }
    }
    if (st != APL_OK) {
        skip_row(state, std::string("error:") + apl_status_name(st),
                 fmt("error: %s failed: %s", v.name, err.msg));
        return;
    }
    set_common_counters(state, in->n, row.threads);
    state.counters["positives"] = (double)d.positives;
    state.counters["valid_negatives"] = (double)d.valid_negatives;
    state.counters["loss"] = res.loss; // from the timed calls: every call computes the same
    state.counters["val_elements"] = (double)d.val_elements;
    state.counters["val_own_input"] = d.val_elements == in->n;
    state.counters["val_max_rel_err"] = d.val_max_rel_err;
    state.counters["val_loss_err"] = d.val_loss_err;
    if (row.loss == APL_LOSS_PAP)
        state.counters["topk"] = (double)row.topk; // also in the name: 0 = untruncated
    state.SetLabel(d.label);
}

// The memory floor: read logits and targets once, write the gradient once, at `threads`.
void bm_floor(benchmark::State &state, InputKey k, int threads)
{
    std::string e;
    Input *in = get_input(k, &e);
    if (!in) {
        skip_row(state, "error:generator", "error: " + e);
        return;
    }
    float *grad = in->grad.data();
    for (auto _ : state) {
        apl_bench_floor(in->s.data(), in->t.data(), grad, in->n, threads);
        benchmark::DoNotOptimize(grad);
        benchmark::ClobberMemory();
    }
    set_common_counters(state, in->n, threads);
    state.SetLabel(fmt("threads=%d; read logits + targets, write gradient: 9 bytes per element",
                       threads));
}

// Sigmoid focal loss (alpha 0.25, gamma 2), forward and gradient, at `threads`: the elementwise
// loss most detectors train with; converter reports each variant as a multiple of it.
constexpr float kFocalAlpha = 0.25f;
void bm_focal(benchmark::State &state, InputKey k, int threads)
{
    std::string e;
    Input *in = get_input(k, &e);
    if (!in) {
        skip_row(state, "error:generator", "error: " + e);
        return;
    }
    float *grad = in->grad.data();
    const float norm = 1.0f / (float)std::max<size_t>(in->positives, 1);
    double loss = 0;
    for (auto _ : state) {
        loss = apl_bench_focal(in->s.data(), in->t.data(), grad, in->n, kFocalAlpha, norm, threads);
        benchmark::DoNotOptimize(loss);
        benchmark::DoNotOptimize(grad);
        benchmark::ClobberMemory();
    }
    set_common_counters(state, in->n, threads);
    state.counters["loss"] = loss;
    state.counters["positives"] = (double)in->positives;
    state.SetLabel(fmt("threads=%d; sigmoid focal loss, alpha %g, gamma 2, ignore -1, "
                       "normalised by positives; forward + gradient in one pass",
                       threads, kFocalAlpha));
}

// The device memory floor: the same pass as one grid-stride kernel on the device-resident input
// (vectorised loads and stores), CUDA-event time through UseManualTime.
void bm_floor_gpu(benchmark::State &state, InputKey k)
{
    static char gpu[APL_MSG_LEN];
    static apl_status gpu_st = apl_gpu_name(gpu, sizeof gpu); // once: no device stays no device
    if (gpu_st != APL_OK) {
        const char *code = gpu_st == APL_ERR_UNAVAILABLE ? "not_built"
                           : gpu_st == APL_ERR_NODEVICE  ? "no_device"
                                                         : "device_error";
        skip_row(state, code, fmt("skipped: %s", gpu));
        return;
    }
    std::string e;
    Input *in = get_input(k, &e);
    apl_gpu_bench *gb = in ? get_gpu(*in, &e) : nullptr;
    if (!gb) {
        skip_row(state, "error:CUDA", "error: " + e);
        return;
    }
    apl_error err{};
    apl_status st = APL_OK;
    for (auto _ : state) {
        double sec = 0;
        st = apl_gpu_bench_floor(gb, &sec, &err);
        if (st != APL_OK)
            break;
        state.SetIterationTime(sec);
    }
    if (st != APL_OK) {
        skip_row(state, std::string("error:") + apl_status_name(st),
                 fmt("error: device floor failed: %s", err.msg));
        return;
    }
    set_common_counters(state, in->n, 0);
    state.SetLabel("device-resident: read logits + targets, write gradient once (9 bytes per "
                   "element), inputs already on the GPU, CUDA events");
}

// ---- the injected wrong variant (test hook) ----
apl_status wrong_fn(const apl_problem *p, const apl_output *out, apl_result *res, apl_error *err)
{
    const apl_variant *sorted = apl_variant_find("sorted");
    if (!sorted || !sorted->fn)
        return apl_fail(err, APL_ERR_UNAVAILABLE, "wrong: needs the sorted variant");
    apl_status st = sorted->fn(p, out, res, err);
    for (size_t j = 0; st == APL_OK && j < p->n; j++)
        out->grad[j] *= 1.001f;
    return st;
}

// ---- the rows: every (variant, loss, cell, thread count) the sweep asks for ----
std::vector<Row> make_rows(const std::vector<apl_variant> &variants, std::vector<Cell> *cells_out)
{
    // Cells grouped by input (first appearance order) so the one-input cache generates each
    // input once.
    std::vector<std::pair<Cell, const SweepCell *>> cells;
    for (const SweepCell &sc : g_sweep.cells) {
        apl_dist dist;
        apl_error err{};
        if (apl_dist_parse(sc.dist.c_str(), &dist, &err) != APL_OK) {
            std::fprintf(stderr, "aploss_bench: %s: %s\n", g_sweep.path.c_str(), err.msg);
            std::exit(2);
        }
        cells.push_back({{{sc.batch, sc.anchors, sc.pos_ppm, dist}, sc.delta}, &sc});
    }
    std::vector<std::pair<Cell, const SweepCell *>> grouped;
    for (const auto &c : cells) {
        bool seen = false;
        for (const auto &g : grouped)
            seen = seen || g.first.in == c.first.in;
        if (!seen)
            for (const auto &x : cells)
                if (x.first.in == c.first.in)
                    grouped.push_back(x);
    }
    std::vector<Row> rows;
    for (const auto &[c, sc] : grouped) {
        cells_out->push_back(c);
        for (const std::string &ln : sc->losses) {
            apl_loss loss;
            apl_error err{};
            if (apl_loss_parse(ln.c_str(), &loss, &err) != APL_OK) {
                std::fprintf(stderr, "aploss_bench: %s: %s\n", g_sweep.path.c_str(), err.msg);
                std::exit(2);
            }
            for (const apl_variant &v : variants) {
                if (!apl_variant_has_loss(&v, loss))
                    continue;
                std::vector<int> ths;
                if (v.device == APL_GPU)
                    ths.push_back(0);
                else if (!v.threaded)
                    ths.push_back(1);
                else
                    for (int t : sc->threads) {
                        int r = apl_threads(t); // "all" (0) -> every core / OMP_NUM_THREADS
                        if (std::find(ths.begin(), ths.end(), r) == ths.end())
                            ths.push_back(r);
                    }
                // PAP rows: one per value of the top-K axis, named ".../pap/topk:K/...".
                std::vector<size_t> ks = {0};
                if (loss == APL_LOSS_PAP)
                    ks = g_sweep.pap_topks;
                for (size_t k : ks)
                    for (int t : ths) {
                        Row r{v, loss, c, t, k, ""};
                        r.name = "BM_loss/" + std::string(v.name) + "/" + apl_loss_name(loss) +
                                 (loss == APL_LOSS_PAP ? fmt("/topk:%zu", k) : std::string()) +
                                 "/" + aplbench::cell_suffix(*sc) +
                                 (t ? fmt("/threads:%d", t) : "");
                        rows.push_back(r);
                    }
            }
        }
    }
    return rows;
}

std::string run_cmd(const std::string &cmd)
{
    std::string out;
    FILE *f = popen(cmd.c_str(), "r");
    if (!f)
        return out;
    char buf[256];
    while (fgets(buf, sizeof buf, f))
        out += buf;
    pclose(f);
    while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
        out.pop_back();
    return out;
}

std::string cpu_model()
{
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("model name", 0) == 0) {
            size_t p = line.find(':');
            return p == std::string::npos ? line : line.substr(p + 2);
        }
    return "unknown CPU";
}

void add_context(const std::vector<apl_variant> &variants, int ncpu_rows)
{
    benchmark::AddCustomContext("cpu_model", cpu_model());
    benchmark::AddCustomContext("compiler", APL_BENCH_C_COMPILER " (C), " APL_BENCH_CXX_COMPILER
                                                                    " (C++)");
    benchmark::AddCustomContext("flags", APL_BENCH_FLAGS);
    std::string src = APL_BENCH_SOURCE_DIR;
    std::string rev = run_cmd("git -C '" + src + "' rev-parse --short=12 HEAD 2>/dev/null");
    if (rev.empty())
        rev = "none (no commit yet)";
    else if (!run_cmd("git -C '" + src + "' status --porcelain --untracked-files=no 2>/dev/null")
                  .empty())
        rev += "-dirty";
    benchmark::AddCustomContext("git_revision", rev);
    benchmark::AddCustomContext("seed", std::to_string(g_sweep.seed));
    benchmark::AddCustomContext("generator", fmt("apl_generate: classes %zu, ignore_rate %g, seed %llu",
                                                 g_sweep.classes, g_sweep.ignore_rate, g_sweep.seed));
    benchmark::AddCustomContext("sweep", g_opt.mode);
    benchmark::AddCustomContext("sweep_file", g_sweep.path);
    // The whole declaration the run used: the converter reads its slices from here, so a later
    // edit of bench/sweep.json cannot misdescribe an older result.
    benchmark::AddCustomContext("sweep_json", g_sweep.text);
    benchmark::AddCustomContext("budget_s", fmt("%g", g_opt.budget_s));
    benchmark::AddCustomContext("ref_budget_s", fmt("%g", g_opt.ref_budget_s));
    benchmark::AddCustomContext("threads_all", std::to_string(apl_threads(0)));
    const char *omp = std::getenv("OMP_NUM_THREADS");
    benchmark::AddCustomContext("omp_num_threads", omp ? omp : "unset");
    benchmark::AddCustomContext("passes_openmp", apl_bench_passes_openmp() ? "yes" : "no");
    benchmark::AddCustomContext("skip_reasons", kSkipReasons);
    benchmark::AddCustomContext("timed", "CPU: the variant function alone; GPU: device-resident "
                                         "(inputs copied to the GPU once per input), CUDA-event "
                                         "time of device_fn, no host<->device copies of the "
                                         "arrays; BM_floor_gpu likewise");
    char gpu_name[APL_MSG_LEN];
    std::string gpu;
    if (apl_gpu_name(gpu_name, sizeof gpu_name) == APL_OK)
        gpu = gpu_name; // the device the GPU rows run on
    else
        gpu = run_cmd("nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null");
    bool gpu_rows = (int)variants.size() > ncpu_rows;
    if (!gpu.empty())
        benchmark::AddCustomContext("gpu", gpu);
    else if (gpu_rows)
        benchmark::AddCustomContext("gpu", "none (no CUDA device)");
    std::string names; // the table's order (the context itself is sorted by key)
    for (const apl_variant &v : variants)
        names += (names.empty() ? "" : ",") + std::string(v.name);
    benchmark::AddCustomContext("variants", names);
    for (const apl_variant &v : variants) {
        std::string losses;
        for (int l = 0; l < APL_LOSS_COUNT; l++)
            if (apl_variant_has_loss(&v, (apl_loss)l))
                losses += (losses.empty() ? "" : ",") + std::string(apl_loss_name((apl_loss)l));
        benchmark::AddCustomContext(
            "variant:" + std::string(v.name),
            fmt("%s | %s | %s | %s | %s | %s", v.device == APL_GPU ? "GPU" : "CPU", v.backend,
                v.quadratic ? "O(P*M)" : "O(M log P)", v.description,
                v.device == APL_GPU ? "device" : v.threaded ? "threaded" : "one thread",
                losses.c_str()));
    }
}

bool take_flag(const char *arg, const char *name, std::string *val)
{
    size_t len = std::strlen(name);
    if (std::strncmp(arg, name, len) == 0 && arg[len] == '=') {
        *val = arg + len + 1;
        return true;
    }
    return false;
}

double parse_seconds(const char *flag, const std::string &v)
{
    char *end = nullptr;
    double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end || !(x > 0)) {
        std::fprintf(stderr, "aploss_bench: %s=%s: expected seconds > 0\n", flag, v.c_str());
        std::exit(2);
    }
    return x;
}

// Removes our --apl_* flags from argv; Google Benchmark parses the rest.
void parse_options(int *argc, char **argv)
{
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        std::string v;
        if (take_flag(argv[i], "--apl_sweep", &v)) {
            g_opt.mode = v;
        } else if (take_flag(argv[i], "--apl_sweep_file", &v)) {
            g_opt.sweep_file = v;
        } else if (take_flag(argv[i], "--apl_budget_s", &v)) {
            g_opt.budget_s = parse_seconds("--apl_budget_s", v);
        } else if (take_flag(argv[i], "--apl_ref_budget_s", &v)) {
            g_opt.ref_budget_s = parse_seconds("--apl_ref_budget_s", v);
        } else if (!std::strcmp(argv[i], "--apl_list_cells")) {
            g_opt.list_cells = true;
        } else if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
            std::printf(
                "aploss_bench [--apl_sweep=MODE] [--apl_sweep_file=F] [--apl_budget_s=S] "
                "[--apl_ref_budget_s=S] [--apl_list_cells] [--benchmark_* flags]\n"
                "  --apl_sweep          the mode of the sweep file to run: tiny, default, full "
                "(default: default)\n"
                "  --apl_sweep_file     the sweep declaration (default: bench/sweep.json)\n"
                "  --apl_budget_s       skip cells predicted to take longer per call (default: "
                "the mode's budget_s)\n"
                "  --apl_ref_budget_s   validate on a prefix when the reference would take longer "
                "(default: the mode's ref_budget_s)\n"
                "  --apl_list_cells     print the mode's cells as bench/sweep.py --list-cells "
                "does, and exit\n"
                "The mode's repetitions and min_time_s apply unless --benchmark_repetitions / "
                "--benchmark_min_time are given.\n");
            argv[out++] = argv[i]; // let Google Benchmark print its own flags too
        } else {
            argv[out++] = argv[i];
        }
    }
    *argc = out;
}

} // namespace

int main(int argc, char **argv)
{
    parse_options(&argc, argv);
    std::string err;
    if (!aplbench::load_sweep(g_opt.sweep_file, g_opt.mode, &g_sweep, &err)) {
        std::fprintf(stderr, "aploss_bench: %s\n", err.c_str());
        return 2;
    }
    if (g_opt.list_cells) {
        for (const SweepCell &c : g_sweep.cells) {
            std::string th, ls;
            for (int t : c.threads)
                th += (th.empty() ? "" : ",") + (t ? std::to_string(t) : std::string("all"));
            for (const std::string &l : c.losses)
                ls += (ls.empty() ? "" : ",") + l;
            std::printf("%s threads:%s losses:%s\n", aplbench::cell_suffix(c).c_str(), th.c_str(),
                        ls.c_str());
        }
        if (g_sweep.has_pap) { // the top-K axis of PAP rows, as bench/sweep.py prints it
            std::string ks;
            for (size_t k : g_sweep.pap_topks)
                ks += (ks.empty() ? "" : ",") + std::to_string(k);
            std::printf("pap params:%s topk:%s\n", g_sweep.pap_params.c_str(), ks.c_str());
        }
        return 0;
    }
    if (g_opt.budget_s == 0)
        g_opt.budget_s = g_sweep.mode.budget_s;
    if (g_opt.ref_budget_s == 0)
        g_opt.ref_budget_s = g_sweep.mode.ref_budget_s;

    // The mode's repetitions and minimum time, placed before the caller's flags so that an
    // explicit --benchmark_repetitions / --benchmark_min_time (parsed later) wins.
    std::string reps = fmt("--benchmark_repetitions=%d", g_sweep.mode.repetitions);
    std::string mint = fmt("--benchmark_min_time=%g", g_sweep.mode.min_time_s);
    std::vector<char *> args(argv, argv + argc);
    args.insert(args.begin() + 1, {&reps[0], &mint[0]});
    int nargs = (int)args.size();
    args.push_back(nullptr);
    benchmark::Initialize(&nargs, args.data());
    if (benchmark::ReportUnrecognizedArguments(nargs, args.data()))
        return 2;

    size_t count = 0;
    const apl_variant *table = apl_variants(&count);
    std::vector<apl_variant> variants(table, table + count);
    int ncpu = 0;
    for (const apl_variant &v : variants)
        ncpu += v.device == APL_CPU;
    const char *inject = std::getenv("APL_BENCH_INJECT_WRONG");
    if (inject && std::strcmp(inject, "1") == 0) {
        const apl_variant *sorted = apl_variant_find("sorted");
        apl_variant wrong{};
        wrong.name = "wrong";
        wrong.fn = wrong_fn;
        wrong.device = APL_CPU;
        wrong.losses = APL_LOSS_BIT(APL_LOSS_AP);
        wrong.threaded = sorted ? sorted->threaded : 0;
        wrong.backend = "C++ test hook";
        wrong.description = "sorted with its gradient scaled by 1.001: must be refused";
        variants.push_back(wrong);
    }
    add_context(variants, ncpu);

    std::vector<Cell> cells;
    std::vector<Row> rows = make_rows(variants, &cells);
    // The thread counts any CPU row uses at each size: the floor and focal run at each of them.
    std::map<size_t, std::set<int>> threads_at;
    for (const Row &r : rows)
        if (r.threads > 0)
            threads_at[r.c.in.elements()].insert(r.threads);
    std::set<size_t> floored;
    // The floor is what the machine can do: its fastest repetition ("min") is reported beside
    // the median, and the converter uses it (less exposed to a busy neighbour).
    auto min_stat = [](const std::vector<double> &v) { return *std::min_element(v.begin(), v.end()); };
    for (const Cell &c : cells) {
        const size_t m = c.in.elements();
        if (floored.insert(m).second) { // beside the first input of that size
            for (int t : threads_at[m]) {
                benchmark::RegisterBenchmark(fmt("BM_floor/elements:%zu/threads:%d", m, t).c_str(),
                                             bm_floor, c.in, t)
                    ->Unit(benchmark::kMillisecond)
                    ->ComputeStatistics("min", min_stat);
                // The focal loss is compared like a variant: its median.
                benchmark::RegisterBenchmark(fmt("BM_focal/elements:%zu/threads:%d", m, t).c_str(),
                                             bm_focal, c.in, t)
                    ->Unit(benchmark::kMillisecond);
            }
            benchmark::RegisterBenchmark(fmt("BM_floor_gpu/elements:%zu", m).c_str(), bm_floor_gpu,
                                         c.in)
                ->Unit(benchmark::kMillisecond)
                ->UseManualTime()
                ->ComputeStatistics("min", min_stat);
        }
        for (const Row &r : rows) {
            if (!(r.c.in == c.in && r.c.delta == c.delta))
                continue;
            auto *b = benchmark::RegisterBenchmark(r.name.c_str(), bm_loss, r);
            b->Unit(benchmark::kMillisecond);
            if (r.v.device == APL_GPU)
                b->UseManualTime();
        }
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
