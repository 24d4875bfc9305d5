# 3_time_vs_delta.gp: time per call vs delta, one panel per score distribution (early, mid, late),
# at one RetinaNet image (2618880 elements), pos rate 1e-3 per anchor. Same y range everywhere.
load plotdir."/common.gp"
dists = "early mid late"
what = "early: RetinaNet start, everything overlaps|mid: most negatives pruned|late: positives well separated"
do for [ext in "svg png"] {
    eval term(ext)
    set output outdir."/3_time_vs_delta.".ext
    set multiplot layout 1,3 title "Time per call vs delta per score distribution: 1 RetinaNet image (2,618,880 elements), pos rate 1e-3 per anchor\n{/*0.8 ".subtitle."}"
    set logscale xy
    set format y "10^{%L}"
    set xrange [0.08:5]
    set yrange [ymin_delta:ymax_delta]
    set xtics (0.1, 0.25, 0.5, 1, 2, 4)
    set xlabel "delta (ramp half-width)"
    set ylabel "time per call (ms)"
    set key horizontal at screen 0.5, screen 0.015 center bottom box opaque font ",11"
    set bmargin 7
    do for [k=1:3] {
        d = word(dists, k)
        n = value("d_".d."_n")
        np = value("d_".d."_np")
        cols = value("d_".d."_colours")
        dash = value("d_".d."_dash")
        set title "dist: ".d."  {/*0.85 (valid negatives at delta 1: ".value("d_".d."_vshare").")}"
        if (k > 1) { unset key; unset ylabel }
        plot for [i=2:n+1] resdir."/delta_".d.".dat" using 1:i with linespoints lw 2 pt 7 ps 0.9 \
                 lc rgb word(cols, i-1) dt 0+word(dash, i-1) title columnheader(i) noenhanced, \
             for [i=n+2:n+np+1] resdir."/delta_".d.".dat" using 1:i with points pt 6 ps 2 lw 2 \
                 lc rgb word(cols, i-1) title columnheader(i) noenhanced, \
             floor_one_image_ms with lines lw 2 dt 2 lc rgb "#000000" title "floor"
    }
    unset multiplot
    unset output
}
