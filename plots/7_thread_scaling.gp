# 7_thread_scaling.gp: the thread-scaling slice (bench/sweep.json "threads": RetinaNet batch 8,
# pos rate 1e-3 per anchor, delta 1, mid scores, loss ap). Left: time per call vs threads, with
# the memory floor and sigmoid focal loss at the same thread counts. Right: fraction of the
# memory floor (floor time / variant time, both at the same thread count) vs threads.
# One-thread variants appear as single points at 1.
load plotdir."/common.gp"
d = "mid"
n = value("th_".d."_n")
cols = value("th_".d."_colours")
dash = value("th_".d."_dash")
nff = value("th_ff_".d."_n")
ffcols = value("th_ff_".d."_colours")
do for [ext in "svg png"] {
    eval term(ext)
    set output outdir."/7_thread_scaling.".ext
    set multiplot layout 1,2 title sprintf("Thread scaling (bench/sweep.json slice \"threads\"): %d elements, %s scores, loss ap\n{/*0.8 ", th_elements, d).subtitle."}"
    set logscale x 2
    set logscale y
    eval "set xtics ".value("th_".d."_xtics")
    set xrange [0.8:*]
    set xlabel "threads (apl\\_problem.threads)"
    set key inside right top box opaque font ",10"
    set format y "10^{%L}"
    set title "time per call"
    set ylabel "time per call (ms)"
    plot for [i=2:n+1] resdir."/threads_".d.".dat" using 1:i with linespoints lw 2 pt 7 ps 0.9 \
             lc rgb word(cols, i-1) dt 0+word(dash, i-1) title columnheader(i) noenhanced
    set title "fraction of the memory floor at the same thread count"
    set ylabel "floor time / variant time (1 = memory-bound)"
    set key inside right bottom box opaque font ",10"
    plot for [i=2:nff+1] resdir."/threads_ff_".d.".dat" using 1:i with linespoints lw 2 pt 7 \
             lc rgb word(ffcols, i-1) title columnheader(i) noenhanced, \
         1 with lines lw 2 dt 2 lc rgb "#000000" title "memory floor"
    unset multiplot
    unset output
}
