# 5_floor_fraction.gp: achieved fraction of the memory floor (floor time / variant time at the
# same size, both measured in the same run) vs elements; 1 = as fast as one read+write pass.
load plotdir."/common.gp"
do for [ext in "svg png"] {
    eval term(ext)
    set output outdir."/5_floor_fraction.".ext
    set title "Fraction of the memory floor (one pass reading logits + targets, writing the gradient)\npos rate 1e-3 per anchor, delta 1, mid scores\n{/*0.8 ".subtitle."}"
    set logscale xy
    if (el_nopos_edge > 0) {
        set object 1 rect from graph 0, graph 0 to first el_nopos_edge, graph 1 behind \
            fc rgb "#e8e8e8" fs solid 1.0 noborder
        set label 1 "no positives:\nloss 0, gradient 0,\nnothing to rank" at graph 0.01, graph 0.12 left font ",10"
    }
    set format x "10^{%L}"
    eval "set xrange ".el_xrange
    set format y "10^{%L}"
    set yrange [:*]
    set xlabel "elements per call"
    set ylabel "floor time / variant time (1 = memory-bound)"
    plot for [i=2:ff_n+1] resdir."/floor_fraction.dat" using 1:i with linespoints lw 2 pt 7 \
             lc rgb word(ff_colours, i-1) title columnheader(i) noenhanced, \
         1 with lines lw 2 dt 2 lc rgb "#000000" title "memory floor"
    unset output
}
