# common.gp: settings shared by the plot scripts; loads results/plot_meta.gp (written by
# bench/convert.py). Run through plots/make.sh, which sets resdir, outdir and plotdir.
if (!exists("resdir")) resdir = "results"
if (!exists("outdir")) outdir = "plots"
load resdir."/plot_meta.gp"
set datafile missing "NaN"
set encoding utf8
set grid xtics ytics mxtics mytics lc rgb "#dddddd" lw 1, lc rgb "#f0f0f0" lw 1
set border lw 1.2
set key outside right top box opaque samplen 3 spacing 1.1
set style line 100 lc rgb "#000000" dt 3 lw 1.5
# term(ext): the terminal command for svg or png, same size and layout.
term(ext) = ext eq "svg" ? "set term svg size 1200,700 dynamic enhanced font 'Helvetica,14' background rgb 'white'" \
                         : "set term pngcairo size 1200,700 enhanced font 'Helvetica,12' background rgb 'white'"
subtitle = machine.", ".run_date." (".source.")"
# Variants with no time anywhere (GPU rows without a device, ...) named at the bottom right.
set bmargin 5
set label 99 not_timed at screen 0.99, screen 0.012 right font ",9" tc rgb "#555555" noenhanced
