// aploss_bench.cc: the one Google Benchmark binary. It registers every row of the variant table
// (apl_variants) over the sweep's slices, plus BM_floor, the memory floor at each size, and
// BM_floor_gpu, the device memory floor at the same sizes.
//
// Names are parseable: BM_loss/<variant>/elements:<M>/pos_ppm:<ppm>/delta:<d>/dist:<dist>,
// BM_floor/elements:<M> and BM_floor_gpu/elements:<M>. pos_ppm is the generator's
// positive-anchor rate in parts per million.
// Slices (not the full product; see bench/README.md):
//   elements   pos_ppm 1000, delta 1, mid; 1e3 .. 2.1e7 elements (8 RetinaNet images);
//              --apl_sweep=full adds 4.2e7 and 1e8
//   pos_rate   1 RetinaNet image (2618880 elements), delta 1, mid; pos_ppm 100 .. 300000
//              (about 3 .. 9800 positives; full adds 500000)
//   delta_dist 1 RetinaNet image, pos_ppm 1000; delta 0.1 .. 4 x dist early, mid, late
//   tiny       (--apl_sweep=tiny, for the tests) one small input
//
// Before timing, each benchmark validates its variant with apl_accept against apl_reference,
// on its own input when the O(P*M) reference fits --apl_ref_budget_s, otherwise on the largest
// prefix of that input that does (a prefix of A anchors is exactly apl_generate's output with A
// anchors: the generator is counter-based). A variant that disagrees is refused with
// SkipWithError("refused: ..."); a cell predicted to take longer than --apl_budget_s per call is
// skipped with SkipWithError("skipped: predicted ..."). Both show in the JSON as error_occurred.
//
// Timed: the variant function alone (inputs were checked once by apl_run during validation).
// GPU rows: device-resident. Each input is copied to the GPU once (apl_gpu_bench_create, cached
// with the input); every iteration runs the variant's device_fn on the device buffers between
// two CUDA events (apl_gpu_bench_run), reported through UseManualTime: the kernels, the
// variant's own temporaries and its final synchronisation, no host<->device copy of the arrays.
// They are validated on exactly that path (device_fn, gradient copied back afterwards).
// BM_floor_gpu: one kernel reading logits and targets once and writing the gradient once,
// timed the same way (apl_gpu_bench_floor). Without a CUDA device (or CUDA) both are skipped
// with SkipWithError("skipped: ...").
//
// Hidden test hook: APL_BENCH_INJECT_WRONG=1 adds a variant "wrong" (sorted with its gradient
// scaled by 1.001), which must be refused, never timed.

#include <benchmark/benchmark.h>

#include "aploss/harness.h"
#include "bench_build_info.h"

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
#include <string>
#include <vector>

namespace {

// ---- options (ours; Google Benchmark's own --benchmark_* flags pass through) ----
struct Options {
    std::string sweep = "default"; // default, full, tiny
    double budget_s = 25.0;        // longest predicted time per call we time
    double ref_budget_s = 2.0;     // longest predicted reference run we validate against
    bool budget_set = false, ref_budget_set = false;
};
Options g_opt;

std::string fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char *f, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

// ---- the cells ----
struct InputKey {
    size_t batch, anchors; // elements = batch * anchors * APL_COCO_CLASSES
    unsigned pos_ppm;
    apl_dist dist;
    bool operator==(const InputKey &o) const
    {
        return batch == o.batch && anchors == o.anchors && pos_ppm == o.pos_ppm && dist == o.dist;
    }
    size_t elements() const { return batch * anchors * APL_COCO_CLASSES; }
};

struct Cell {
    InputKey in;
    double delta;
};

std::string delta_str(double d) { return fmt("%g", d); }

std::string cell_suffix(const Cell &c)
{
    return fmt("elements:%zu/pos_ppm:%u/delta:%s/dist:%s", c.in.elements(), c.in.pos_ppm,
               delta_str(c.delta).c_str(), apl_dist_name(c.in.dist));
}

// ---- the input cache: one input at a time, with its reference results per prefix and delta ----
struct Reference {
    std::vector<double> grad64;
    apl_result res;
};

struct Input {
    InputKey key;
    size_t n = 0;
    std::vector<float> s;
    std::vector<int8_t> t;
    std::vector<float> grad;
    std::map<std::pair<size_t, double>, Reference> refs; // (prefix elements, delta)
    apl_gpu_bench *gpu = nullptr; // s and t on the device, made on first use by a GPU row
    Input() = default;
    Input(const Input &) = delete;
    Input &operator=(const Input &) = delete;
    ~Input() { apl_gpu_bench_destroy(gpu); }
};

std::unique_ptr<Input> g_input;
double g_ref_sec_per_op = 2e-9; // updated from every reference run that does real work

const Input *get_input(const InputKey &k, std::string *error)
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
    p.pos_rate = k.pos_ppm * 1e-6;
    p.dist = k.dist;
    p.seed = APL_DEFAULT_SEED;
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
    g_input = std::move(in);
    return g_input.get();
}

// The cached input's device copy (inputs copied to the GPU once per input).
apl_gpu_bench *get_gpu(Input &in, std::string *error)
{
    if (in.gpu)
        return in.gpu;
    apl_error err{};
    if (apl_gpu_bench_create(in.s.data(), in.t.data(), in.n, &in.gpu, &err) != APL_OK) {
        *error = fmt("cannot copy the input to the device: %s", err.msg);
        return nullptr;
    }
    return in.gpu;
}

// |P| and |V| of the first n elements, as the SPEC defines them.
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

const Reference *get_reference(Input &in, size_t n, double delta, std::string *error)
{
    auto key = std::make_pair(n, delta);
    auto it = in.refs.find(key);
    if (it != in.refs.end())
        return &it->second;
    Reference r;
    r.grad64.resize(n);
    apl_error err{};
    auto t0 = std::chrono::steady_clock::now();
    if (apl_reference_ap(in.s.data(), in.t.data(), n, delta, r.grad64.data(), &r.res, &err) != APL_OK) {
        *error = fmt("reference failed: %s", err.msg);
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
    std::string error;   // SkipWithError message when !ok
    std::string label;
    size_t positives = 0, valid_negatives = 0, val_elements = 0;
    double val_max_rel_err = 0, val_loss_err = 0;
};
std::map<std::string, Decision> g_decisions;

double seconds_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Decision decide(const apl_variant &v, const Cell &c)
{
    Decision d;
    apl_error why{};
    if (!apl_variant_runnable(&v, &why)) {
        if (why.code == APL_ERR_UNAVAILABLE)
            d.error = fmt("skipped: %s", why.msg);
        else if (std::strncmp(why.msg, "no CUDA device", 14) == 0)
            d.error = fmt("skipped: %s", why.msg);
        else
            d.error = fmt("skipped: no CUDA device: %s", why.msg);
        return d;
    }
    if (v.device == APL_GPU && !v.device_fn) {
        d.error = fmt("skipped: %s has no device-resident entry point (device_fn)", v.name);
        return d;
    }
    std::string e;
    if (!get_input(c.in, &e)) {
        d.error = "error: " + e;
        return d;
    }
    Input &in = *g_input;
    const size_t classes = APL_COCO_CLASSES, n = in.n;
    count_pv(in.s.data(), in.t.data(), n, c.delta, &d.positives, &d.valid_negatives);

    // The largest prefix (halving the anchors) whose reference run fits the budget.
    size_t anchors = n / classes, vn = n, vp = d.positives, vv = d.valid_negatives;
    while (ref_ops(vp, vv) * g_ref_sec_per_op > g_opt.ref_budget_s && anchors > 1) {
        anchors /= 2;
        vn = anchors * classes;
        count_pv(in.s.data(), in.t.data(), vn, c.delta, &vp, &vv);
    }
    const Reference *ref = get_reference(in, vn, c.delta, &e);
    if (!ref) {
        d.error = "error: " + e;
        return d;
    }
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
        // temporary one for a prefix), the gradient copied back afterwards. The first call
        // includes one-time costs (module loading), so a quick one is repeated for the budget.
        apl_gpu_bench *tmp = nullptr, *gb = nullptr;
        if (vn == n) {
            gb = get_gpu(in, &e);
            st = gb ? APL_OK : APL_ERR_CUDA;
            if (!gb)
                apl_fail(&why, st, "%s", e.c_str());
        } else {
            st = apl_gpu_bench_create(in.s.data(), in.t.data(), vn, &tmp, &why);
            gb = tmp;
        }
        if (st == APL_OK)
            st = apl_gpu_bench_run(gb, &v, c.delta, &res, &t_val, &why);
        if (st == APL_OK)
            st = apl_gpu_bench_grad(gb, in.grad.data(), &why);
        if (st == APL_OK && t_val < 2.0) {
            double again = 0;
            apl_result res2{};
            st = apl_gpu_bench_run(gb, &v, c.delta, &res2, &again, &why);
            t_val = std::min(t_val, again);
        }
        apl_gpu_bench_destroy(tmp);
    } else {
        auto t0 = std::chrono::steady_clock::now();
        st = apl_run_ap(&v, in.s.data(), in.t.data(), vn, c.delta, in.grad.data(), &res, &why);
        t_val = seconds_since(t0);
    }
    if (st != APL_OK) {
        d.error = fmt("error: %s failed during validation: %s: %s", v.name, apl_status_name(st),
                      why.msg);
        return d;
    }
    apl_verdict ag{};
    apl_accept_ap(in.s.data(), in.t.data(), vn, c.delta, in.grad.data(), &res,
                  ref->grad64.data(), &ref->res, &ag);
    d.val_elements = vn;
    d.val_max_rel_err = ag.max_rel_err;
    d.val_loss_err = ag.loss_err;
    if (!ag.pass) {
        d.error = fmt("refused: %s disagrees with the reference: max_rel_err %.3g (tolerance %g), "
                      "loss_err %.3g (tolerance %g), %zu gradient mismatches, worst grad[%zu] = "
                      "%.9g vs %.9g; %s",
                      v.name, ag.max_rel_err, APL_TOL_GRAD_REL, ag.loss_err, APL_TOL_LOSS_ABS,
                      ag.mismatches, ag.worst_index, (double)in.grad[ag.worst_index],
                      ref->grad64[ag.worst_index], where.c_str());
        return d;
    }

    // Budget: measured when validated at full size, else extrapolated by positives * elements.
    double predicted = t_val;
    if (vn != n && v.quadratic)
        predicted = t_val * ((double)std::max<size_t>(d.positives, 1) * (double)n) /
                    ((double)std::max<size_t>(vp, 1) * (double)vn);
    else if (vn != n)
        predicted = t_val * (double)n / (double)vn;
    if (predicted > g_opt.budget_s) {
        d.error = fmt("skipped: predicted %.3g s per call > budget %g s (%s; positives*elements "
                      "= %.3g; %s took %.3g s on %zu elements with %zu positives)",
                      predicted, g_opt.budget_s, v.quadratic ? "O(P*M) variant" : "variant",
                      (double)d.positives * (double)n, v.name, t_val, vn, vp);
        return d;
    }
    d.label = where;
    if (v.device == APL_GPU)
        d.label += "; time: device-resident: kernels only, inputs already on the GPU, CUDA events";
    d.ok = true;
    return d;
}

void set_common_counters(benchmark::State &state, size_t n)
{
    state.SetItemsProcessed((int64_t)state.iterations() * (int64_t)n);
    state.SetBytesProcessed((int64_t)state.iterations() * (int64_t)n * (4 + 1 + 4));
}

void bm_loss(benchmark::State &state, apl_variant v, Cell c, std::string name)
{
    auto it = g_decisions.find(name);
    if (it == g_decisions.end())
        it = g_decisions.emplace(name, decide(v, c)).first;
    const Decision &d = it->second;
    if (!d.ok) {
        state.SkipWithError(d.error.c_str());
        return;
    }
    std::string e;
    const Input *in = get_input(c.in, &e); // cached unless benchmarks were interleaved
    if (!in) {
        state.SkipWithError(("error: " + e).c_str());
        return;
    }
    float *grad = g_input->grad.data();
    apl_result res{};
    apl_error err{};
    apl_status st = APL_OK;
    if (v.device == APL_GPU) {
        apl_gpu_bench *gb = get_gpu(*g_input, &e); // made during validation unless evicted
        if (!gb) {
            state.SkipWithError(("error: " + e).c_str());
            return;
        }
        for (auto _ : state) {
            double sec = 0;
            st = apl_gpu_bench_run(gb, &v, c.delta, &res, &sec, &err);
            if (st != APL_OK)
                break;
            state.SetIterationTime(sec);
        }
    } else {
        const apl_problem prob = apl_ap_problem(in->s.data(), in->t.data(), in->n, c.delta);
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
        state.SkipWithError(fmt("error: %s failed: %s", v.name, err.msg).c_str());
        return;
    }
    set_common_counters(state, in->n);
    state.counters["positives"] = (double)d.positives;
    state.counters["valid_negatives"] = (double)d.valid_negatives;
    state.counters["loss"] = res.loss; // from the timed calls: every call computes the same
    state.counters["val_elements"] = (double)d.val_elements;
    state.counters["val_own_input"] = d.val_elements == in->n;
    state.counters["val_max_rel_err"] = d.val_max_rel_err;
    state.counters["val_loss_err"] = d.val_loss_err;
    state.SetLabel(d.label);
}

// The cheapest pass any exact variant makes: read logits and targets once, write the gradient
// once. noinline and the DoNotOptimize below keep the compiler from dropping the stores.
__attribute__((noinline)) void floor_pass(const float *s, const int8_t *t, float *g, size_t n)
{
    for (size_t j = 0; j < n; j++)
        g[j] = t[j] == 1 ? -s[j] : s[j] * 0.5f;
}

void bm_floor(benchmark::State &state, InputKey k)
{
    std::string e;
    const Input *in = get_input(k, &e);
    if (!in) {
        state.SkipWithError(("error: " + e).c_str());
        return;
    }
    float *grad = g_input->grad.data();
    for (auto _ : state) {
        floor_pass(in->s.data(), in->t.data(), grad, in->n);
        benchmark::DoNotOptimize(grad);
        benchmark::ClobberMemory();
    }
    set_common_counters(state, in->n);
    state.SetLabel("read logits + targets, write gradient: 9 bytes per element");
}

// The device memory floor: the same pass as one grid-stride kernel on the device-resident input
// (vectorised loads and stores), CUDA-event time through UseManualTime.
void bm_floor_gpu(benchmark::State &state, InputKey k)
{
    static char gpu[APL_MSG_LEN];
    static apl_status gpu_st = apl_gpu_name(gpu, sizeof gpu); // once: no device stays no device
    if (gpu_st != APL_OK) {
        std::string why = gpu_st == APL_ERR_UNAVAILABLE   ? fmt("skipped: %s", gpu)
                          : gpu_st == APL_ERR_NODEVICE ? (std::strncmp(gpu, "no CUDA device", 14) == 0
                                                                ? fmt("skipped: %s", gpu)
                                                                : fmt("skipped: no CUDA device: %s", gpu))
                                                         : fmt("error: %s", gpu);
        state.SkipWithError(why.c_str());
        return;
    }
    std::string e;
    const Input *in = get_input(k, &e);
    apl_gpu_bench *gb = in ? get_gpu(*g_input, &e) : nullptr;
    if (!gb) {
        state.SkipWithError(("error: " + e).c_str());
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
        state.SkipWithError(fmt("error: device floor failed: %s", err.msg).c_str());
        return;
    }
    set_common_counters(state, in->n);
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

// ---- the sweep ----
std::vector<Cell> sweep_cells(const std::string &sweep)
{
    const size_t A = APL_RETINANET_ANCHORS;
    std::vector<Cell> cells;
    auto add = [&](InputKey k, double delta) {
        for (const Cell &c : cells)
            if (c.in == k && c.delta == delta)
                return;
        cells.push_back({k, delta});
    };
    if (sweep == "tiny") {
        add({1, 1280, 10000, APL_DIST_MID}, 1.0);
        return cells;
    }
    const bool full = sweep == "full";
    // elements: 1040, 10240, 102400, 1e6, 1, 4 and 8 images (full: 16 images, 1e8)
    std::vector<std::pair<size_t, size_t>> sizes = {{1, 13},    {1, 128}, {1, 1280}, {1, 12500},
                                                    {1, A},     {4, A},   {8, A}};
    if (full) {
        sizes.push_back({16, A});
        sizes.push_back({1, 1250000});
    }
    for (auto [b, a] : sizes)
        add({b, a, 1000, APL_DIST_MID}, 1.0);
    std::vector<unsigned> ppms = {100, 300, 1000, 3000, 10000, 30000, 100000, 300000};
    if (full)
        ppms.push_back(500000);
    for (unsigned ppm : ppms)
        add({1, A, ppm, APL_DIST_MID}, 1.0);
    for (apl_dist dist : {APL_DIST_EARLY, APL_DIST_MID, APL_DIST_LATE})
        for (double delta : {0.1, 0.25, 0.5, 1.0, 2.0, 4.0})
            add({1, A, 1000, dist}, delta);
    // Group by input (first appearance order) so the one-input cache generates each input once.
    std::vector<Cell> grouped;
    for (const Cell &c : cells) {
        bool seen = false;
        for (const Cell &g : grouped)
            seen = seen || g.in == c.in;
        if (!seen)
            for (const Cell &x : cells)
                if (x.in == c.in)
                    grouped.push_back(x);
    }
    cells.swap(grouped);
    return cells;
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
    benchmark::AddCustomContext("seed", std::to_string(APL_DEFAULT_SEED));
    benchmark::AddCustomContext("generator", "apl_generate: classes 80, ignore_rate 0.01, seed " +
                                                 std::to_string(APL_DEFAULT_SEED));
    benchmark::AddCustomContext("sweep", g_opt.sweep);
    benchmark::AddCustomContext("budget_s", fmt("%g", g_opt.budget_s));
    benchmark::AddCustomContext("ref_budget_s", fmt("%g", g_opt.ref_budget_s));
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
    for (const apl_variant &v : variants)
        benchmark::AddCustomContext(
            "variant:" + std::string(v.name),
            fmt("%s | %s | %s | %s", v.device == APL_GPU ? "GPU" : "CPU", v.backend,
                v.quadratic ? "O(P*M)" : "O(M log P)", v.description));
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
            if (v != "default" && v != "full" && v != "tiny") {
                std::fprintf(stderr, "aploss_bench: --apl_sweep=%s: expected default, full or tiny\n",
                             v.c_str());
                std::exit(2);
            }
            g_opt.sweep = v;
        } else if (take_flag(argv[i], "--apl_budget_s", &v)) {
            g_opt.budget_s = parse_seconds("--apl_budget_s", v);
            g_opt.budget_set = true;
        } else if (take_flag(argv[i], "--apl_ref_budget_s", &v)) {
            g_opt.ref_budget_s = parse_seconds("--apl_ref_budget_s", v);
            g_opt.ref_budget_set = true;
        } else if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
            std::printf(
                "aploss_bench [--apl_sweep=default|full|tiny] [--apl_budget_s=S] "
                "[--apl_ref_budget_s=S] [--benchmark_* flags]\n"
                "  --apl_sweep          which slices to register (default: default)\n"
                "  --apl_budget_s       skip cells predicted to take longer per call "
                "(default 25, full 120)\n"
                "  --apl_ref_budget_s   validate on a prefix when the reference would take "
                "longer (default 2, full 10)\n");
            argv[out++] = argv[i]; // let Google Benchmark print its own flags too
        } else {
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    if (g_opt.sweep == "full") {
        if (!g_opt.budget_set)
            g_opt.budget_s = 120.0;
        if (!g_opt.ref_budget_set)
            g_opt.ref_budget_s = 10.0;
    }
}

} // namespace

int main(int argc, char **argv)
{
    parse_options(&argc, argv);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 2;

    size_t count = 0;
    const apl_variant *table = apl_variants(&count);
    std::vector<apl_variant> variants(table, table + count);
    int ncpu = 0;
    for (const apl_variant &v : variants)
        ncpu += v.device == APL_CPU;
    const char *inject = std::getenv("APL_BENCH_INJECT_WRONG");
    if (inject && std::strcmp(inject, "1") == 0) {
        apl_variant wrong{};
        wrong.name = "wrong";
        wrong.fn = wrong_fn;
        wrong.device = APL_CPU;
        wrong.losses = APL_LOSS_BIT(APL_LOSS_AP);
        wrong.backend = "C++ test hook";
        wrong.description = "sorted with its gradient scaled by 1.001: must be refused";
        variants.push_back(wrong);
    }
    add_context(variants, ncpu);

    std::vector<Cell> cells = sweep_cells(g_opt.sweep);
    std::vector<InputKey> floored;
    for (const Cell &c : cells) {
        // One floor per element count, registered beside the first input of that size.
        bool have = false;
        for (const InputKey &k : floored)
            have = have || k.elements() == c.in.elements();
        if (!have) {
            floored.push_back(c.in);
            std::string name = fmt("BM_floor/elements:%zu", c.in.elements());
            // The floor is what the machine can do: its fastest repetition ("min") is reported
            // beside the median, and the converter uses it (less exposed to a busy neighbour).
            auto min_stat = [](const std::vector<double> &v) {
                return *std::min_element(v.begin(), v.end());
            };
            benchmark::RegisterBenchmark(name.c_str(), bm_floor, c.in)
                ->Unit(benchmark::kMillisecond)
                ->ComputeStatistics("min", min_stat);
            // The device floor beside it, for the GPU rows' fraction of the floor.
            name = fmt("BM_floor_gpu/elements:%zu", c.in.elements());
            benchmark::RegisterBenchmark(name.c_str(), bm_floor_gpu, c.in)
                ->Unit(benchmark::kMillisecond)
                ->UseManualTime()
                ->ComputeStatistics("min", min_stat);
        }
        for (const apl_variant &v : variants) {
            std::string name = "BM_loss/" + std::string(v.name) + "/" + cell_suffix(c);
            auto *b = benchmark::RegisterBenchmark(name.c_str(), bm_loss, v, c, name);
            b->Unit(benchmark::kMillisecond);
            if (v.device == APL_GPU)
                b->UseManualTime();
        }
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
