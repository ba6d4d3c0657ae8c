#!/bin/bash
# Session 2 (same machine, bundles and binary: common.sh), ordered against drift: the estimator
# call A/B with 5 interleaved rounds, then the int8 engine after / PyTorch / int8 before / int8
# after, then fp32 after.
OUT=${OUT:-/tmp/estimator-passes/session2}
. "$(dirname "$0")/common.sh"
log "one estimator call: fp32 before/after, int8 before/after (5 interleaved rounds)"
cost cost 5
log "engine int8 T3 + flow after (1)"; bench t3int8-flowint8-a "$B/full-t3int8-flowint8"
log "PyTorch reference resident";      torch_bench
log "engine int8 T3 + flow before";    bench t3int8-flowint8-v0 "$B/full-t3int8-flowint8-v0"
log "engine int8 T3 + flow after (2)"; bench t3int8-flowint8-b "$B/full-t3int8-flowint8"
log "engine fp32 after";               bench fp32 "$B/full"
log "session end"
