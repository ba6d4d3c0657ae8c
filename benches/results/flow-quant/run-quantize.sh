#!/bin/bash
# (Written when nbits was the tool's default: the flags below name each variant explicitly.)
# Flow quantization session, part 1 (no timing): the candidate quantizations of the full-size
# flow_estimator (weight-only int8 MatMulNBits at accuracy level 4 and 0, int4 MatMulNBits,
# dynamic int8 MatMulInteger) and their error per stage against fp32 (velocity, mel after the
# Euler loop, HiFT's wav and log-mel). Full-size random bundles, seed 0.
# Run from the repository root; writes into benches/results/flow-quant/ (OUT) and /tmp/flowq-*.
set -u
PY=~/.cache/chatterbox-ort/export-venv/bin/python
OUT=${OUT:-benches/results/flow-quant}; mkdir -p $OUT
ORIG=/tmp/full-bundle-kv; TURBO=/tmp/full-turbo-kv
log() { echo "[$(date -u +%T)] $*  | load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT/session.log; }
log "quantize start; $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for fam in original turbo; do
  src=$ORIG; [ $fam = turbo ] && src=$TURBO
  log "quantize $fam: nbits int8 (level 4)"
  $PY export/quantize_bundle.py --bundle $src --out /tmp/flowq-$fam-nbits8 --components flow_estimator=int8 --flow-method nbits > $OUT/quantize-$fam-nbits8.log 2>&1
  log "quantize $fam: dynamic int8"
  $PY export/quantize_bundle.py --bundle $src --out /tmp/flowq-$fam-dyn8 --components flow_estimator=int8 --flow-method dynamic --flow-weight-scale tensor > $OUT/quantize-$fam-dyn8.log 2>&1
  log "quantize $fam: dynamic int8, weights per column (the tool's default since)"
  $PY export/quantize_bundle.py --bundle $src --out /tmp/flowq-$fam-dyn8pc --components flow_estimator=int8 --flow-method dynamic --flow-weight-scale column > $OUT/quantize-$fam-dyn8pc.log 2>&1
  if [ $fam = original ]; then
    log "quantize $fam: nbits int8 level 0, nbits int4"
    $PY export/quantize_bundle.py --bundle $src --out /tmp/flowq-$fam-nbits8-l0 --components flow_estimator=int8 --flow-method nbits --accuracy-level 0 > $OUT/quantize-$fam-nbits8-l0.log 2>&1
    $PY export/quantize_bundle.py --bundle $src --out /tmp/flowq-$fam-nbits4 --components flow_estimator=int4 --flow-method nbits > $OUT/quantize-$fam-nbits4.log 2>&1
  fi
done
log "errors per stage, original"
$PY benches/flow_quant_error.py --fp32 $ORIG --quant /tmp/flowq-original-nbits8 --quant /tmp/flowq-original-dyn8 --quant /tmp/flowq-original-nbits8-l0 --quant /tmp/flowq-original-nbits4 --quant /tmp/flowq-original-dyn8pc --out $OUT/error-original.json > $OUT/error-original.md 2>&1
log "errors per stage, turbo"
$PY benches/flow_quant_error.py --fp32 $TURBO --quant /tmp/flowq-turbo-nbits8 --quant /tmp/flowq-turbo-dyn8 --quant /tmp/flowq-turbo-dyn8pc --out $OUT/error-turbo.json > $OUT/error-turbo.md 2>&1
log "quantize end"
