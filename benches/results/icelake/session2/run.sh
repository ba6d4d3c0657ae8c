#!/bin/bash
# Second session (same machine, after the fresh-clone CI run and the README `say` build): Turbo's
# fastest configuration, int8 T3 + int8 flow (turbo-full-t3int8-flowint8 =
# export/quantize_bundle.py --bundle turbo-full --components t3_decoder=int8,flow_estimator=int8),
# against the reference and the fp32 engine, A B C C B A so drift hits all alike.
OUT=${OUT:-/tmp/icelake2}
. "$(dirname "$0")/../common.sh"
log "session start; other processes: $(other_cpu) % CPU"
log "PyTorch Turbo (A)";               torch_bench A "$B/turbo-full"
log "engine Turbo fp32 (A)";           bench fp32-A "$B/turbo-full" resident
log "engine Turbo int8 T3 + flow (A)"; bench q8-A "$B/turbo-full-t3int8-flowint8" resident
log "engine Turbo int8 T3 + flow (B)"; bench q8-B "$B/turbo-full-t3int8-flowint8" resident
log "engine Turbo fp32 (B)";           bench fp32-B "$B/turbo-full" resident
log "PyTorch Turbo (B)";               torch_bench B "$B/turbo-full"
log "session end"
