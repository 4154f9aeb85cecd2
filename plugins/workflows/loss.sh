#!/bin/sh
# loss.sh ALPHA BETA SEED: the task of the example workflows, standing in for a simulation; prints a
# "loss" on stdout, which mpmux keeps as the element's result.
awk -v a="$1" -v b="$2" -v s="$3" 'BEGIN { printf "%.6f\n", (a - 0.3)^2 + (b - 2)^2 / 10 + (s % 7) / 1000 }'
