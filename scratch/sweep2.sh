#!/bin/bash
# enc-heavy AE only: how fast can its slow approach to PCA-z be made
cd /work/wt-budget
run() { tag=$1; shift; PYTHONPATH=workflow /work/main/.venv/bin/python scratch/budget.py $tag --kinds ae "$@" 2>&1 | grep --line-buffered -v INFO | sed -u "s/^/$tag /"; }
run s2_e40_cos_1e2 --archs enc-heavy --epochs 40 --lr 1e-2 --schedule cosine
run s2_e40_cos_2e2 --archs enc-heavy --epochs 40 --lr 2e-2 --schedule cosine
run s2_e40_b32_cos_5e3 --archs enc-heavy --epochs 40 --batch 32 --lr 5e-3 --schedule cosine
run s2_e40_oc_1e2 --archs enc-heavy --epochs 40 --lr 1e-2 --schedule onecycle
