// sweep.cc: reads bench/sweep.json for aploss_bench. A small JSON reader (objects, arrays,
// strings without \u escapes beyond ASCII, numbers, true/false/null) is enough for a file we
// write ourselves, and keeps the benchmark free of a JSON dependency; the expansion into cells
// mirrors bench/sweep.py line for line (the CTest bench_sweep_agrees compares the two).
#include "sweep.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace aplbench {
namespace {

struct Json {
    enum Kind { NUL, BOOL, NUM, STR, ARR, OBJ } kind = NUL;
    bool b = false;
    double num = 0;
    std::string str;
    std::vector<Json> arr;
    std::vector<std::pair<std::string, Json>> obj; // declaration order

    const Json *get(const std::string &k) const
    {
        for (const auto &kv : obj)
            if (kv.first == k)
                return &kv.second;
        return nullptr;
    }
};

struct Parser {
    const std::string &s;
    size_t i = 0;
    explicit Parser(const std::string &text) : s(text) {}

    [[noreturn]] void fail(const std::string &what)
    {
        size_t line = 1;
        for (size_t k = 0; k < i && k < s.size(); k++)
            line += s[k] == '\n';
        throw std::runtime_error("line " + std::to_string(line) + ": " + what);
    }
    void ws()
    {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r'))
            i++;
    }
    bool eat(char c)
    {
        ws();
        if (i < s.size() && s[i] == c) {
            i++;
            return true;
        }
        return false;
    }
    void expect(char c)
    {
        if (!eat(c))
            fail(std::string("expected '") + c + "'");
    }
    std::string string()
    {
        expect('"');
        std::string out;
        while (i < s.size() && s[i] != '"') {
            char c = s[i++];
            if (c == '\\') {
                if (i >= s.size())
                    fail("unterminated escape");
                char e = s[i++];
                switch (e) {
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case '"': case '\\': case '/': out += e; break;
                default: fail(std::string("unsupported escape \\") + e);
                }
            } else {
                out += c;
            }
        }
        if (i >= s.size())
            fail("unterminated string");
        i++;
        return out;
    }
    Json value()
    {
        ws();
        Json v;
        if (i >= s.size())
            fail("unexpected end of file");
        char c = s[i];
        if (c == '{') {
            i++;
            v.kind = Json::OBJ;
            if (eat('}'))
                return v;
            do {
                ws();
                std::string k = string();
                expect(':');
                v.obj.emplace_back(k, value());
            } while (eat(','));
            expect('}');
        } else if (c == '[') {
            i++;
            v.kind = Json::ARR;
            if (eat(']'))
                return v;
            do
                v.arr.push_back(value());
            while (eat(','));
            expect(']');
        } else if (c == '"') {
            v.kind = Json::STR;
            v.str = string();
        } else if (s.compare(i, 4, "true") == 0 || s.compare(i, 5, "false") == 0) {
            v.kind = Json::BOOL;
            v.b = s[i] == 't';
            i += v.b ? 4 : 5;
        } else if (s.compare(i, 4, "null") == 0) {
            i += 4;
        } else {
            const char *start = s.c_str() + i;
            char *end = nullptr;
            v.kind = Json::NUM;
            v.num = std::strtod(start, &end);
            if (end == start)
                fail(std::string("unexpected '") + c + "'");
            i += (size_t)(end - start);
        }
        return v;
    }
};

// Field access that names what is missing or mistyped.
const Json &field(const Json &o, const std::string &k, Json::Kind kind, const std::string &where)
{
    const Json *v = o.kind == Json::OBJ ? o.get(k) : nullptr;
    if (!v)
        throw std::runtime_error(where + ": missing \"" + k + "\"");
    if (v->kind != kind)
        throw std::runtime_error(where + "." + k + ": wrong type");
    return *v;
}

double num(const Json &o, const std::string &k, const std::string &where)
{
    return field(o, k, Json::NUM, where).num;
}

// An axis list of the slice plus, when extending, its "full" list.
std::vector<Json> axis(const Json &sweep, const Json &sl, const std::string &name,
                       const std::string &ax, bool extend)
{
    std::vector<Json> out;
    const Json *v = sl.get(ax);
    if (!v && ax == "losses")
        v = sweep.get("losses");
    if (!v || v->kind != Json::ARR)
        throw std::runtime_error("slices." + name + ": missing list \"" + ax + "\"");
    out = v->arr;
    const Json *full = sl.get("full");
    if (extend && full && full->get(ax)) {
        const Json &more = *full->get(ax);
        if (more.kind != Json::ARR)
            throw std::runtime_error("slices." + name + ".full." + ax + ": not a list");
        out.insert(out.end(), more.arr.begin(), more.arr.end());
    }
    return out;
}

} // namespace

std::string cell_suffix(const SweepCell &c)
{
    char buf[256];
    snprintf(buf, sizeof buf, "elements:%zu/pos_ppm:%u/delta:%g/dist:%s", c.elements, c.pos_ppm,
             c.delta, c.dist.c_str());
    return buf;
}

bool load_sweep(const std::string &path, const std::string &mode, Sweep *out, std::string *error)
{
    std::ifstream f(path);
    if (!f) {
        *error = path + ": cannot open";
        return false;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    Sweep sw;
    sw.path = path;
    sw.text = ss.str();
    try {
        Parser p(sw.text);
        Json root = p.value();
        p.ws();
        if (p.i != sw.text.size())
            p.fail("trailing characters");
        const Json &gen = field(root, "generator", Json::OBJ, "sweep");
        sw.classes = (size_t)num(gen, "classes", "generator");
        sw.ignore_rate = num(gen, "ignore_rate", "generator");
        sw.seed = (unsigned long long)num(gen, "seed", "generator");
        if (root.get("pap")) { // optional: a sweep without PAP rows need not say
            const Json &pap = field(root, "pap", Json::OBJ, "sweep");
            sw.has_pap = true;
            sw.pap_params = field(pap, "params", Json::STR, "pap").str;
            // topk: the axis of PAP rows, a list (a single number is read as a list of one).
            const Json *tk = pap.get("topk");
            std::vector<Json> ks;
            if (tk && tk->kind == Json::NUM)
                ks.push_back(*tk);
            else
                ks = field(pap, "topk", Json::ARR, "pap").arr;
            sw.pap_topks.clear();
            for (const Json &k : ks) {
                if (k.kind != Json::NUM || k.num < 0)
                    throw std::runtime_error("pap.topk: numbers >= 0 (0 = untruncated)");
                sw.pap_topks.push_back((size_t)k.num);
            }
            if (sw.pap_topks.empty())
                throw std::runtime_error("pap.topk: an empty list");
        }
        const Json &modes = field(root, "modes", Json::OBJ, "sweep");
        const Json *m = modes.get(mode);
        if (!m || m->kind != Json::OBJ) {
            std::string have;
            for (const auto &kv : modes.obj)
                have += (have.empty() ? "" : ", ") + kv.first;
            throw std::runtime_error("no mode \"" + mode + "\" (have " + have + ")");
        }
        const std::string where = "modes." + mode;
        sw.mode.name = mode;
        sw.mode.budget_s = num(*m, "budget_s", where);
        sw.mode.ref_budget_s = num(*m, "ref_budget_s", where);
        sw.mode.repetitions = (int)num(*m, "repetitions", where);
        sw.mode.min_time_s = num(*m, "min_time_s", where);
        const Json *ext = m->get("extend");
        const bool extend = ext && ext->kind == Json::BOOL && ext->b;
        const Json &slices = field(root, "slices", Json::OBJ, "sweep");
        std::map<std::string, size_t> index; // cell key -> position in sw.cells
        for (const Json &sn : field(*m, "slices", Json::ARR, where).arr) {
            if (sn.kind != Json::STR)
                throw std::runtime_error(where + ".slices: expected names");
            const std::string &name = sn.str;
            const Json &sl = field(slices, name, Json::OBJ, "slices");
            auto sizes = axis(root, sl, name, "sizes", extend);
            auto ppms = axis(root, sl, name, "pos_ppm", extend);
            auto dists = axis(root, sl, name, "dist", extend);
            auto deltas = axis(root, sl, name, "delta", extend);
            auto threads = axis(root, sl, name, "threads", extend);
            auto losses = axis(root, sl, name, "losses", extend);
            for (const Json &sz : sizes) {
                if (sz.kind != Json::ARR || sz.arr.size() != 2 || sz.arr[0].kind != Json::NUM ||
                    sz.arr[1].kind != Json::NUM)
                    throw std::runtime_error("slices." + name + ".sizes: expected [batch, anchors]");
                for (const Json &pp : ppms)
                    for (const Json &di : dists)
                        for (const Json &de : deltas) {
                            if (pp.kind != Json::NUM || di.kind != Json::STR || de.kind != Json::NUM)
                                throw std::runtime_error("slices." + name +
                                                         ": pos_ppm and delta are numbers, dist names");
                            SweepCell c;
                            c.batch = (size_t)sz.arr[0].num;
                            c.anchors = (size_t)sz.arr[1].num;
                            c.elements = c.batch * c.anchors * sw.classes;
                            c.pos_ppm = (unsigned)pp.num;
                            c.dist = di.str;
                            c.delta = de.num;
                            c.slice = name;
                            std::string key = cell_suffix(c);
                            auto it = index.find(key);
                            if (it == index.end()) {
                                it = index.emplace(key, sw.cells.size()).first;
                                sw.cells.push_back(c);
                            }
                            SweepCell &cell = sw.cells[it->second];
                            for (const Json &t : threads) {
                                int tv;
                                if (t.kind == Json::STR && t.str == "all")
                                    tv = 0;
                                else if (t.kind == Json::NUM && t.num >= 1 && t.num < 65536)
                                    tv = (int)t.num;
                                else
                                    throw std::runtime_error("slices." + name +
                                                             ".threads: numbers >= 1 or \"all\"");
                                bool have = false;
                                for (int x : cell.threads)
                                    have = have || x == tv;
                                if (!have)
                                    cell.threads.push_back(tv);
                            }
                            for (const Json &l : losses) {
                                if (l.kind != Json::STR)
                                    throw std::runtime_error("slices." + name + ".losses: names");
                                bool have = false;
                                for (const std::string &x : cell.losses)
                                    have = have || x == l.str;
                                if (!have)
                                    cell.losses.push_back(l.str);
                            }
                        }
            }
        }
    } catch (const std::exception &e) {
        *error = path + ": " + e.what();
        return false;
    }
    *out = std::move(sw);
    return true;
}

} // namespace aplbench
