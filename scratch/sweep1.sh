#!/bin/bash
# hard cells: enc-heavy AE (both data sets, z 4/8) and linear AE; one process at a time
cd /work/wt-budget
run() { tag=$1; shift; PYTHONPATH=workflow /work/main/.venv/bin/python scratch/budget.py $tag --kinds ae --archs enc-heavy linear "$@" 2>&1 | grep -v INFO | sed "s/^/$tag /"; }
run s1_e40_cos_2e3 --epochs 40 --lr 2e-3 --schedule cosine
run s1_e40_cos_5e3 --epochs 40 --lr 5e-3 --schedule cosine
run s1_e80_cos_2e3 --epochs 80 --lr 2e-3 --schedule cosine
run s1_e80_b128_cos_4e3 --epochs 80 --batch 128 --lr 4e-3 --schedule cosine
run s1_e40_lin_5e3 --epochs 40 --lr 5e-3 --schedule linear
