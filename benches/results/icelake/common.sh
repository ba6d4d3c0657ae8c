# Shared by run.sh and session2/run.sh (sourced; OUT set by the caller): the paths, the log line
# with the load average, and the two synthesis benchmarks with the settings of every figure here
# (100 tokens, 3 measured runs after a 20-token warm-up, 2 threads).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
PY=${PY:-$HOME/.cache/chatterbox-ort/export-venv/bin/python}
BIN=${BIN:-target/release/chatterbox-ort}
B=${BUNDLES:-$HOME/.cache/chatterbox-ort/bundles}
mkdir -p "$OUT"
log() { echo "[$(date -u +%T)] $*  | load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/session.log"; }
other_cpu() { ps -eo pcpu= | awk '{s+=$1} END {print s}'; }
bench() {  # tag bundle modes
  $BIN bench --bundle "$2" --modes "$3" --runs 3 --tokens 100 --threads 2 --warmup-tokens 20 \
    --json "$OUT/bench-$1.json" --markdown "$OUT/bench-$1.md" > "$OUT/bench-$1.log" 2>&1 || log "FAILED bench $1"
}
torch_bench() {  # tag bundle
  $PY benches/baseline_torch.py --bundle "$2" --modes torch-resident --runs 3 --tokens 100 --threads 2 \
    --warmup-tokens 20 --out "$OUT/torch-$1.json" > "$OUT/torch-$1.log" 2>&1 || log "FAILED torch $1"
}
