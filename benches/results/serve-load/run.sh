#!/usr/bin/env bash
# The load test of `chatterbox-ort serve` (benches/serve_load.py) as committed here. Run on a
# quiet machine (the script records the load average before and after each run).
#   benches/results/serve-load/run.sh [FULL_TURBO_BUNDLE]
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=benches/results/serve-load
cargo build --release --quiet
# Tiny bundle: 200 requests from 8 clients, 2 syntheses at once, 50 speech tokens each; 3 runs.
for i in 1 2 3; do
    python3 benches/serve_load.py --requests 200 --clients 8 --tokens 50 --threads 1 \
        --server-args "--concurrency 2 --max-queue 16 --residency resident" \
        --json "$out/tiny-c8-run$i.json" --markdown "$out/tiny-c8-run$i.md"
done
# RSS over 800 requests, sampled every 100.
python3 benches/serve_load.py --requests 800 --clients 8 --tokens 50 --threads 1 --rss-every 100 \
    --server-args "--concurrency 2 --max-queue 16 --residency resident" \
    --json "$out/tiny-c8-long.json" --markdown "$out/tiny-c8-long.md"
# A full queue: 12 clients against 1 synthesis + 2 waiting; clients retry after Retry-After.
python3 benches/serve_load.py --requests 60 --clients 12 --tokens 50 --threads 1 --retry-429 \
    --server-args "--concurrency 1 --max-queue 2 --residency resident" \
    --json "$out/tiny-429.json" --markdown "$out/tiny-429.md"
# Full-size Turbo (export/export_bundle.py --family turbo): 12 requests from 2 clients.
if [ -n "${1:-}" ]; then
    python3 benches/serve_load.py --bundle "$1" --requests 12 --clients 2 --tokens 50 --threads 2 \
        --warmup 1 --server-args "--concurrency 1 --max-queue 4 --residency resident" \
        --json "$out/turbo-full-c2.json" --markdown "$out/turbo-full-c2.md"
fi
