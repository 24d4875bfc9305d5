# 6_torch_step.gp: one loss forward + backward inside a training step, the published loop's
# PyTorch transcription vs aploss.torch.ap_loss, at RetinaNet 1, 4 and 8 images (mid scores,
# delta 1): time per step (left) and the speed-up (right). Data: results/torch_step.dat and
# results/torch_step_meta.gp, written by bench/torch_step.py from its JSON.
load plotdir."/common.gp"
if (system("test -f '".resdir."/torch_step_meta.gp' && echo 1 || echo 0") == 0) {
    print "6_torch_step.gp: no ".resdir."/torch_step.dat: run bench/torch_step.py; not drawn"
    exit
}
load resdir."/torch_step_meta.gp"
unset label 99
set label 99 ts_not_timed at screen 0.99, screen 0.012 right font ",9" tc rgb "#555555"
do for [ext in "svg png"] {
    eval term(ext)
    set output outdir."/6_torch_step.".ext
    set multiplot layout 1,2 title "Loss forward + backward in a training step: RetinaNet, mid scores, delta 1\n{/*0.8 ".ts_machine.", ".ts_date." (".ts_source."), ".ts_threads."}"
    set xlabel "images per batch (32736 anchors x 80 classes each)"
    set xtics (1, 4, 8)
    set logscale x 2
    set xrange [0.8:10]
    set logscale y
    set key inside left top box opaque font ",10"
    set title "time per step (median)"
    set ylabel "ms"
    plot resdir."/torch_step.dat" using 1:3 with linespoints lw 2 pt 7 lc rgb "#000000" title "published loop (PyTorch, CPU)", \
         "" using 1:4 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "aploss.torch (CPU)", \
         "" using 1:6 with linespoints lw 2 pt 5 dt 2 lc rgb "#000000" title "published loop (CUDA)", \
         "" using 1:7 with linespoints lw 2 pt 5 dt 2 lc rgb "#d62728" title "aploss.torch (CUDA)"
    unset logscale y
    set yrange [0:*]
    set key inside left top box opaque font ",10"
    set title "speed-up: published time / aploss.torch time"
    set ylabel "speed-up (x)"
    plot resdir."/torch_step.dat" using 1:5 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "CPU", \
         "" using 1:5:(sprintf("%.1fx", $5)) with labels offset 0, 1 notitle, \
         "" using 1:8 with linespoints lw 2 pt 5 lc rgb "#d62728" title "CUDA"
    unset multiplot
    unset output
    unset yrange
}
