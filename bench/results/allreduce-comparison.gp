set terminal pngcairo size 1500,480 font 'sans,10' noenhanced
set output 'allreduce-comparison.png'
set multiplot layout 1,3 title 'gradwire allreduce, 4 ranks, float32: speedup over MPI_Allreduce (same run)'
set logscale x 2
set logscale y 2
set grid
set xlabel 'size (MB)'
set ylabel 'speedup vs MPI_Allreduce'
set key top left font ',8'
set yrange [0.03:64]
set title 'unshaped host (shared memory)'
set key top left
plot 'allreduce-host.dat' using 1:2 with linespoints title 'none', 'allreduce-host.dat' using 1:3 with linespoints title 'fp16', 'allreduce-host.dat' using 1:4 with linespoints title 'q8', 'allreduce-host.dat' using 1:5 with linespoints title 'q4', 'allreduce-host.dat' using 1:6 with linespoints title 'sign+ef', 'allreduce-host.dat' using 1:7 with linespoints title 'topk:0.01+ef', 'allreduce-host.dat' using 1:8 with linespoints title 'q4@shared-grid', 1 with lines dt 2 lc rgb 'black' title 'MPI_Allreduce'
set title 'emulated 1 Gbit/s link (TCP)'
set key bottom right
plot 'allreduce-1gbit.dat' using 1:2 with linespoints title 'none', 'allreduce-1gbit.dat' using 1:3 with linespoints title 'fp16', 'allreduce-1gbit.dat' using 1:4 with linespoints title 'q8', 'allreduce-1gbit.dat' using 1:5 with linespoints title 'q4', 'allreduce-1gbit.dat' using 1:6 with linespoints title 'sign+ef', 'allreduce-1gbit.dat' using 1:7 with linespoints title 'topk:0.01+ef', 'allreduce-1gbit.dat' using 1:8 with linespoints title 'q4@shared-grid', 1 with lines dt 2 lc rgb 'black' title 'MPI_Allreduce'
set title 'emulated 2.5 Gbit/s link (TCP)'
set key bottom right
plot 'allreduce-2.5gbit.dat' using 1:2 with linespoints title 'none', 'allreduce-2.5gbit.dat' using 1:3 with linespoints title 'fp16', 'allreduce-2.5gbit.dat' using 1:4 with linespoints title 'q8', 'allreduce-2.5gbit.dat' using 1:5 with linespoints title 'q4', 'allreduce-2.5gbit.dat' using 1:6 with linespoints title 'sign+ef', 'allreduce-2.5gbit.dat' using 1:7 with linespoints title 'topk:0.01+ef', 'allreduce-2.5gbit.dat' using 1:8 with linespoints title 'q4@shared-grid', 1 with lines dt 2 lc rgb 'black' title 'MPI_Allreduce'
unset multiplot
