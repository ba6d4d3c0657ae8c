# Shared by run.sh and session2/run.sh (sourced; OUT set by the caller): ../session.sh's paths
# and log line, and the two synthesis benchmarks with the settings of every figure here
# (100 tokens, 3 measured runs after a 20-token warm-up, 2 threads).
. "$(dirname "${BASH_SOURCE[0]}")/../session.sh"
other_cpu() { ps -eo pcpu= | awk '{s+=$1} END {print s}'; }
bench() {  # tag bundle modes
  $BIN bench --bundle "$2" --modes "$3" --runs 3 --tokens 100 --threads 2 --warmup-tokens 20 \
    --json "$OUT/bench-$1.json" --markdown "$OUT/bench-$1.md" > "$OUT/bench-$1.log" 2>&1 || log "FAILED bench $1"
}
torch_bench() {  # tag bundle
  $PY benches/baseline_torch.py --bundle "$2" --modes torch-resident --runs 3 --tokens 100 --threads 2 \
    --warmup-tokens 20 --out "$OUT/torch-$1.json" > "$OUT/torch-$1.log" 2>&1 || log "FAILED torch $1"
}
