# The preamble of a benchmark session's script (sourced by a results folder's common.sh, with
# OUT set): from the repository root, the export venv's Python, the release engine and the
# bundles' folder (each overridable), and `log`, which stamps every step with the UTC time and
# the load average into $OUT/session.log.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY=${PY:-$HOME/.cache/chatterbox-ort/export-venv/bin/python}
BIN=${BIN:-target/release/chatterbox-ort}
B=${BUNDLES:-$HOME/.cache/chatterbox-ort/bundles}
mkdir -p "$OUT"
log() { echo "[$(date -u +%T)] $*  | load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/session.log"; }
