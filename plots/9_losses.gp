# 9_losses.gp: time per call vs elements for each loss (facets: AP, aLRP, PAP), the elements
# slice (pos rate 1e-3 per anchor, delta 1, mid scores), all cores; PAP solid at top-K 1e5 (the
# published setting), dashed untruncated. Data: results/losses_<loss>.dat from bench/convert.py.
# Not drawn (exit 0) when no loss other than AP was timed.
load plotdir."/common.gp"
if (!exists("lo_facets") || strlen(lo_facets) == 0) {
    print "9_losses.gp: no aLRP or PAP timings in ".resdir.": not drawn"
    exit
}
nf = words(lo_facets)
do for [ext in "svg png"] {
    eval term(ext)
    set output outdir."/9_losses.".ext
    set multiplot layout 1,nf title "Time per call vs elements, per loss: pos rate 1e-3 per anchor, delta 1, mid scores, all cores\n{/*0.8 ".subtitle."; PAP dashed: untruncated}"
    set logscale xy
    set format x "10^{%L}"
    set format y "10^{%L}"
    set xlabel "elements per call"
    set ylabel "time per call (ms)"
    set key inside left top box opaque font ",9"
    do for [f=1:nf] {
        fam = word(lo_facets, f)
        n = value("lo_".fam."_n")
        cols = value("lo_".fam."_colours")
        dsh = value("lo_".fam."_dash")
        set title fam
        plot for [i=2:n+1] resdir."/losses_".fam.".dat" using 1:i with linespoints lw 2 pt 7 ps 0.7 \
             lc rgb word(cols, i-1) dt 0+word(dsh, i-1) title columnheader(i) noenhanced
    }
    unset multiplot
    unset output
}
