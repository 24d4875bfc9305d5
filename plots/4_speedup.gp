# 4_speedup.gp: speed-up of each variant over naive (left) and over the PyTorch baseline (right),
# vs elements; pos rate 1e-3 per anchor, delta 1, mid scores. Above 1 = faster.
load plotdir."/common.gp"
do for [ext in "svg png"] {
    eval term(ext)
    set output outdir."/4_speedup.".ext
    set multiplot layout 1,2 title "Speed-up vs elements: pos rate 1e-3 per anchor, delta 1, mid scores\n{/*0.8 ".subtitle."}"
    set logscale xy
    if (el_nopos_edge > 0) {
        set object 1 rect from graph 0, graph 0 to first el_nopos_edge, graph 1 behind \
            fc rgb "#e8e8e8" fs solid 1.0 noborder
        set label 1 "no positives:\nloss 0, gradient 0,\nnothing to rank" at graph 0.01, graph 0.12 left font ",10"
    }
    set format x "10^{%L}"
    eval "set xrange ".el_xrange
    set xlabel "elements per call"
    set key inside right bottom box opaque font ",10"
    set title "over ".sn_base.": ".sn_base." time / variant time" noenhanced
    set ylabel "speed-up (x)"
    plot for [i=2:sn_n+1] resdir."/speedup_naive.dat" using 1:i with linespoints lw 2 pt 7 \
             lc rgb word(sn_colours, i-1) title columnheader(i) noenhanced, \
         1 with lines ls 100 title "same speed"
    set key inside right top box opaque font ",10"
    set title "over ".st_base.": ".st_base." time / variant time" noenhanced
    plot for [i=2:st_n+1] resdir."/speedup_torch.dat" using 1:i with linespoints lw 2 pt 7 \
             lc rgb word(st_colours, i-1) title columnheader(i) noenhanced, \
         1 with lines ls 100 title "same speed"
    unset multiplot
    unset output
}
