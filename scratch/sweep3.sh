#!/bin/bash
cd /work/wt-budget
c() { echo "== $*"; PYTHONPATH=workflow /work/main/.venv/bin/python scratch/curve.py "$@" 2>&1 | grep -v INFO | grep -v "^seed"; }
c factors 8 enc-heavy 100 64 1e-2 cosine
c factors 8 enc-heavy 100 32 5e-3 cosine
c factors 8 enc-heavy 100 128 1e-2 cosine
c digits 8 enc-heavy 100 64 1e-2 cosine
