# 2_time_vs_pos_rate.gp: time per call vs positive-anchor rate at one RetinaNet image
# (2618880 elements), delta 1, mid scores; the memory floor at that size as a flat line.
load plotdir."/common.gp"
do for [ext in "svg png"] {
    eval term(ext)
    set output outdir."/2_time_vs_pos_rate.".ext
    set title "Time per call vs positive rate: 1 RetinaNet image (2,618,880 elements), delta 1, mid scores\n{/*0.8 ".subtitle."}"
    set logscale xy
    set format x "10^{%L}"
    set format y "10^{%L}"
    set xlabel "positive-anchor rate (positives / anchors)"
    set ylabel "time per call (ms)"
    eval "set xrange ".pr_xrange
    eval "set x2range ".pr_xrange
    set logscale x2
    eval "set x2tics ".pr_x2tics
    set x2tics font ",10"
    set x2label "positives per call"
    set xtics nomirror
    plot for [i=2:pr_n+1] resdir."/pos_rate.dat" using 1:i with linespoints lw 2 pt 7 ps 0.9 \
             lc rgb word(pr_colours, i-1) dt 0+word(pr_dash, i-1) title columnheader(i) noenhanced, \
         for [i=pr_n+2:pr_n+pr_np+1] resdir."/pos_rate.dat" using 1:i with points pt 6 ps 2 lw 2 \
             lc rgb word(pr_colours, i-1) title columnheader(i) noenhanced, \
         floor_one_image_ms with lines lw 2 dt 2 lc rgb "#000000" title "floor (1 image)"
    unset output
}
