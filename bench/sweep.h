// sweep.h: the benchmark sweep as aploss_bench reads it from bench/sweep.json (the one
// declaration; bench/sweep.py reads the same file for the PyTorch baseline and the converter).
#pragma once

#include <string>
#include <vector>

namespace aplbench {

// One cell: an input (batch x anchors x classes elements, pos_ppm, dist) and a delta, with the
// thread settings and losses its slices ask for. threads: numbers > 0, or 0 for "all"
// (apl_threads(0)).
struct SweepCell {
    size_t batch = 0, anchors = 0, elements = 0;
    unsigned pos_ppm = 0;
    std::string dist;
    double delta = 1.0;
    std::vector<int> threads;
    std::vector<std::string> losses;
    std::string slice; // the first slice that declared it
};

struct SweepMode {
    std::string name;
    double budget_s = 25, ref_budget_s = 2, min_time_s = 0.2;
    int repetitions = 3;
};

struct Sweep {
    std::string path, text; // the file and its full text (recorded in the results' context)
    size_t classes = 80;
    double ignore_rate = 0.01;
    unsigned long long seed = 12345;
    std::string pap_params = "retinanet"; // PAP rows: apl_pap_params name
    bool has_pap = false;                 // the file has a "pap" object
    std::vector<size_t> pap_topks = {100000}; // PAP rows: the top-K axis (0 = untruncated)
    SweepMode mode;
    std::vector<SweepCell> cells; // declaration order, no duplicates (as bench/sweep.py)
};

// Reads path and expands mode; false with a message in *error on any problem (unreadable
// file, malformed JSON, missing or mistyped field, unknown mode).
bool load_sweep(const std::string &path, const std::string &mode, Sweep *out, std::string *error);

// "elements:M/pos_ppm:R/delta:D/dist:X", the cell part of every benchmark name.
std::string cell_suffix(const SweepCell &c);

} // namespace aplbench
