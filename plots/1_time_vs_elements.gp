# 1_time_vs_elements.gp: time per call vs elements, log-log, one line per variant plus the memory
# floor and the PyTorch baseline; pos rate 1e-3 per anchor (pos_ppm 1000), delta 1, mid scores.
# Hollow points: O(P*M) cells predicted over the time budget and not run.
load plotdir."/common.gp"
do for [ext in "svg png"] {
    eval term(ext)
    set output outdir."/1_time_vs_elements.".ext
    set title "Time per call vs elements: pos rate 1e-3 per anchor, delta 1, mid scores\n{/*0.8 ".subtitle."}"
    set logscale xy
    if (el_nopos_edge > 0) {
        set object 1 rect from graph 0, graph 0 to first el_nopos_edge, graph 1 behind \
            fc rgb "#e8e8e8" fs solid 1.0 noborder
        set label 1 "no positives:\nloss 0, gradient 0,\nnothing to rank" at graph 0.01, graph 0.95 left font ",10"
    }
    set format x "10^{%L}"
    set format y "10^{%L}"
    set xlabel "elements per call (batch x anchors x 80 classes; 2.6e6 = 1 RetinaNet image)"
    set ylabel "time per call (ms)"
    eval "set xrange ".el_xrange
    eval "set x2range ".el_xrange
    set logscale x2
    eval "set x2tics ".el_x2tics
    set x2tics font ",10"
    set x2label "positives per call"
    set xtics nomirror
    plot for [i=2:el_n+1] resdir."/elements.dat" using 1:i with linespoints lw 2 pt 7 ps 0.9 \
             lc rgb word(el_colours, i-1) dt 0+word(el_dash, i-1) title columnheader(i) noenhanced, \
         for [i=el_n+2:el_n+el_np+1] resdir."/elements.dat" using 1:i with points pt 6 ps 2 lw 2 \
             lc rgb word(el_colours, i-1) title columnheader(i) noenhanced
    unset output
}
