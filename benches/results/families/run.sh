#!/usr/bin/env bash
# The three model families side by side in one session, full-size random weights (seed 0),
# CPU, 2 threads, 100 forced speech tokens, resident and swap, 3 measured runs per mode.
#   benches/results/families/run.sh ORIGINAL_DIR TURBO_DIR MULTILINGUAL_DIR
# (bundles made by export/export_bundle.py --config full [--family turbo|multilingual])
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=benches/results/families
bin=target/release/chatterbox-ort
for pair in "original:$1" "turbo:$2" "multilingual:$3"; do
    name=${pair%%:*}
    dir=${pair#*:}
    echo "== $name $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$bin" bench --bundle "$dir" --modes resident,swap --runs 3 --tokens 100 --threads 2 \
        --json "$out/$name.json" --markdown "$out/$name.md"
done
echo "== done $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
