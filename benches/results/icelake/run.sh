#!/bin/bash
# Issue 10's figures on a third machine kind: 2-core Intel Xeon (Ice Lake, AVX-512 with VNNI, no
# BF16/AMX), 2026-12-03, one session, in the order the steps ran. Engine and reference alternate
# (pass A: reference first; pass B: reversed) so this VM's drift hits both alike; ratios are
# read within a pass and pooled over both.
# Bundles (~/.cache/chatterbox-ort/bundles), all exported at this session's commit:
#   full                  export/export_bundle.py --config full --seed 0 --ref-wav onnx/tiny/goldens/ref.wav
#   full-t3int8-flowint8  export/quantize_bundle.py --bundle full --components t3_decoder=int8,flow_estimator=int8
#   full-t3int4-flowint8  the same with t3_decoder=int4
#   turbo-full            export_bundle.py --family turbo --config full --seed 0 --ref-wav onnx/tiny-turbo/goldens/ref.wav
#   turbo-full-flowint8   quantize_bundle.py --bundle turbo-full --components flow_estimator=int8
OUT=${OUT:-/tmp/icelake}
. "$(dirname "$0")/common.sh"
cost() {  # tag rounds bundles... (one estimator call, interleaved with the reference's)
  local tag=$1 rounds=$2 batch=$3 frames=$4
  shift 4
  local args=()
  for b in "$@"; do args+=(--bundle "$B/$b"); done
  $PY benches/s3gen_cost.py "${args[@]}" --torch --batch "$batch" --frames "$frames" --calls 3 --rounds "$rounds" \
    --threads 2 --out "$OUT/cost-$tag.json" > "$OUT/cost-$tag.log" 2>&1 || log "FAILED cost $tag"
}
log "session start; $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo); other processes: $(other_cpu) % CPU"
log "estimator call, original, against PyTorch (1)";  cost orig-1 5 2 700 full full-t3int8-flowint8
log "estimator call, original, against PyTorch (2)";  cost orig-2 5 2 700 full full-t3int8-flowint8
log "estimator call, Turbo, against PyTorch";         cost turbo 5 1 706 turbo-full turbo-full-flowint8
log "pass A: PyTorch reference";                     torch_bench A "$B/full"
log "pass A: engine fp32 resident, swap, T3 alone";  bench fp32-A "$B/full" resident,swap,largest-stage
log "pass A: engine int8 T3 + int8 flow";            bench q8-A "$B/full-t3int8-flowint8" resident
log "pass A: engine int4 T3 + int8 flow";            bench q4-A "$B/full-t3int4-flowint8" resident
log "pass B: engine int4 T3 + int8 flow";            bench q4-B "$B/full-t3int4-flowint8" resident
log "pass B: engine int8 T3 + int8 flow";            bench q8-B "$B/full-t3int8-flowint8" resident
log "pass B: engine fp32 swap, resident";            bench fp32-B "$B/full" swap,resident
log "pass B: PyTorch reference";                     torch_bench B "$B/full"
log "T3 step fp32 / int8 / int4 at 50 and 1000 positions"
$PY benches/t3_step_cost.py --bundle "$B/full" --bundle "$B/full-t3int8-flowint8" --bundle "$B/full-t3int4-flowint8" \
  --positions 50,1000,50,1000 --steps 30 --threads 2 --batch 2 --out "$OUT/t3-step.json" > "$OUT/t3-step.log" 2>&1
log "Turbo: PyTorch reference";                      torch_bench turbo "$B/turbo-full"
log "Turbo: engine fp32, int8 flow";                 bench turbo "$B/turbo-full" resident
bench turbo-flowint8 "$B/turbo-full-flowint8" resident
log "profile int8 estimator"
$PY benches/s3gen_cost.py --bundle "$B/full-t3int8-flowint8" --batch 2 --frames 700 --calls 3 --rounds 1 --threads 2 \
  --profile "$OUT/prof-int8" --top 14 > "$OUT/profile-int8.log" 2>&1
log "session end"
