# Shared by run.sh, run2.sh and run3.sh (sourced; OUT set by the caller). Bundles: full-v0 =
# `export/export_bundle.py --config full --seed 0 --ref-wav onnx/tiny/goldens/ref.wav` at
# 076eb42 (masked MultiHeadAttention, Mish as Softplus/Tanh/Mul); full = the same bundle after
# `export/graph_passes.py full` (on the tiny bundles that rewrite is bit-identical in output to
# a fresh export at this commit); full-t3int8-flowint8-v0 / full-t3int8-flowint8 =
# `export/quantize_bundle.py --components t3_decoder=int8,flow_estimator=int8` of each. The same
# engine binary runs all (the engine is unchanged: the graphs differ).
. "$(dirname "${BASH_SOURCE[0]}")/../session.sh"
bench() {  # tag bundle
  $BIN bench --bundle "$2" --modes resident --runs 3 --tokens 100 --threads 2 --warmup-tokens 20 \
    --json "$OUT/bench-$1.json" --markdown "$OUT/bench-$1.md" > "$OUT/bench-$1.log" 2>&1
}
torch_bench() {
  $PY benches/baseline_torch.py --bundle "$B/full" --modes torch-resident --runs 3 --tokens 100 --threads 2 \
    --warmup-tokens 20 --out "$OUT/torch.json" > "$OUT/torch.log" 2>&1
}
cost() {  # out-name rounds [extra s3gen_cost.py arguments]
  local name=$1 rounds=$2
  shift 2
  $PY benches/s3gen_cost.py --bundle "$B/full-v0" --bundle "$B/full" --bundle "$B/full-t3int8-flowint8-v0" \
    --bundle "$B/full-t3int8-flowint8" --batch 2 --frames 700 --calls 3 --rounds "$rounds" --threads 2 \
    --out "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1
}
log "session start; $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo)"
