#!/usr/bin/env bash
# plots/make.sh: regenerates the tables (results/*.dat, results/table.md, the README table) and
# every plot (plots/*.svg, plots/*.png) from the stored results alone; runs nothing else.
#   plots/make.sh [convert.py options, e.g. --bench results/X.json]
# Environment: APL_RESULTS (default results): the results directory to read and write;
#              APL_PLOTS_OUT (default plots): where the images go;
#              APL_README (default README.md): the README whose table is replaced.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
results="${APL_RESULTS:-results}"
out="${APL_PLOTS_OUT:-plots}"
python3 bench/convert.py --results "$results" --readme "${APL_README:-README.md}" "$@"
if ! command -v gnuplot > /dev/null; then
    echo "plots/make.sh: gnuplot not found: tables written, plots not (apt-get install -y gnuplot-nox)" >&2
    exit 1
fi
mkdir -p "$out"
for gp in plots/[0-9]_*.gp; do
    gnuplot -e "resdir='$results'; outdir='$out'; plotdir='plots'" "$gp"
    echo "plots/make.sh: $gp -> $out/$(basename "${gp%.gp}").{svg,png}"
done
