#!/bin/bash
# Session 3: the four estimators and the PyTorch reference's, interleaved in one process
# (s3gen_cost.py --torch), twice back to back (bundles: common.sh). These ran by hand with the
# same arguments (the bundle order full, full-v0, int8, int8-v0); the .md files are their
# printed tables.
OUT=${OUT:-/tmp/estimator-passes/session3}
. "$(dirname "$0")/common.sh"
log "estimator call against PyTorch";             cost cost-torch 5 --torch
log "estimator call against PyTorch, second run"; cost cost-torch-2 5 --torch
log "session end"
