#!/bin/bash
# Turbo (2026-12-03, 08:44 UTC, after the fresh-clone CI runs; nothing else running): turbo-full =
# `export/export_bundle.py --family turbo --config full --seed 0 --ref-wav
# onnx/tiny-turbo/goldens/ref.wav` at 8e93934 (with export/graph_passes.py); turbo-full-v0 = the
# same graph with both passes undone by hand (each If replaced by its else-branch node, each
# Mish back to Softplus/Tanh/Mul; the same undoing turns the original model's `full` into a
# graph bit-identical in output to full-v0). One call, batch 1 (Turbo has no CFG), 706 frames
# (103 tokens after the 10 s prompt), interleaved with the reference meanflow estimator's.
set -u
cd "$(dirname "$0")/../../../.."
PY=${PY:-$HOME/.cache/chatterbox-ort/export-venv/bin/python}
B=${BUNDLES:-$HOME/.cache/chatterbox-ort/bundles}
for r in 1 2; do
  $PY benches/s3gen_cost.py --bundle "$B/turbo-full" --bundle "$B/turbo-full-v0" --torch --batch 1 --frames 706 \
    --calls 3 --rounds 5 --threads 2 --out "benches/results/estimator-passes/turbo/cost-torch-$r.json"
done
