#!/usr/bin/env bash
# plots/make.sh: regenerates the tables (results/*.dat, results/table.md, the README table) and
# every plot (plots/*.svg, plots/*.png) from the stored results alone; runs nothing else.
#   plots/make.sh [convert.py options, e.g. --bench results/X.json]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python3 bench/convert.py "$@"
if ! command -v gnuplot > /dev/null; then
    echo "plots/make.sh: gnuplot not found: tables written, plots not (apt-get install -y gnuplot-nox)" >&2
    exit 1
fi
for gp in plots/[0-9]_*.gp; do
    gnuplot -e "resdir='results'; outdir='plots'; plotdir='plots'" "$gp"
    echo "plots/make.sh: $gp -> plots/$(basename "${gp%.gp}").{svg,png}"
done
