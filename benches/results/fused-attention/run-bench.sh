#!/bin/bash
set -x
cd /work/main
BIN=/work/lead-target/release/chatterbox-ort
PY=~/.cache/chatterbox-ort/export-venv/bin/python
date; uptime
$BIN bench --bundle /tmp/full-mha --modes resident,swap --runs 3 --tokens 100 --threads 2 --warmup-tokens 20 --json /tmp/b3/bench-mha.json --markdown /tmp/b3/bench-mha.md > /tmp/b3/bench-mha.log 2>&1
date; uptime
$PY benches/baseline_torch.py --bundle /tmp/full-mha --modes torch-resident --runs 3 --tokens 100 --threads 2 --warmup-tokens 20 --out /tmp/b3/torch.json > /tmp/b3/torch.log 2>&1
date; uptime
$BIN bench --bundle ~/.cache/chatterbox-ort/bundles/full --modes resident --runs 3 --tokens 100 --threads 2 --warmup-tokens 20 --json /tmp/b3/bench-old.json --markdown /tmp/b3/bench-old.md > /tmp/b3/bench-old.log 2>&1
date; uptime
echo DONE
