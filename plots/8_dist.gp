# 8_dist.gp: AP-Loss over a batch split across 1, 2 and 4 processes (gloo, CPU, one machine):
# aploss.dist's O(|P|) driver (all_gather of the positives, one all_reduce of the histogram) vs
# all-gathering every logit and target. Left: time per step (the slowest process, median);
# right: bytes each process hands to the collectives. Data: results/dist.dat and
# results/dist_meta.gp, written by bench/dist_bench.py from its JSON.
load plotdir."/common.gp"
if (system("test -f '".resdir."/dist_meta.gp' && echo 1 || echo 0") == 0) {
    print "8_dist.gp: no ".resdir."/dist.dat: run bench/dist_bench.py; not drawn"
    exit
}
load resdir."/dist_meta.gp"
unset label 99
do for [ext in "svg png"] {
    eval term(ext)
    set output outdir."/8_dist.".ext
    set multiplot layout 1,2 title "AP-Loss across processes (gloo, CPU, one machine): ".di_batch."\n{/*0.8 ".di_machine.", ".di_date." (".di_source.")}"
    set xlabel "processes (the batch split by images)"
    set xtics (1, 2, 4)
    set logscale x 2
    set xrange [0.8:5]
    set key inside left bottom box opaque font ",10"
    set title "time per step (slowest process, median)"
    set ylabel "ms"
    set yrange [0:*]
    plot resdir."/dist.dat" using 1:2 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "ap\\_loss(group=...): positives + histogram", \
         "" using 1:3 with linespoints lw 2 pt 5 lc rgb "#d62728" title "all-gather every logit, sorted locally", \
         "" using 1:6 with lines lw 2 dt 2 lc rgb "#000000" title "one process, no group"
    unset yrange
    set logscale y
    set format y "10^{%L}"
    set title "bytes each process hands to the collectives"
    set ylabel "bytes per process per step"
    set key inside right center box opaque font ",10"
    plot resdir."/dist.dat" using 1:4 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "ap\\_loss(group=...): O(|P|)", \
         "" using 1:4:(sprintf("%d B", $4)) with labels offset 0, 1 notitle, \
         "" using 1:5 with linespoints lw 2 pt 5 lc rgb "#d62728" title "all-gather every logit and target: O(N / processes)"
    unset logscale y
    set format y
    unset multiplot
    unset output
}
