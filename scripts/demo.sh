#!/usr/bin/env bash
# `make demo`: the whole pipeline, offline, against the bundled sandbox archive on a free loopback port.
set -euo pipefail
BIN=${BIN:-.venv/bin}
DEMO=${DEMO:-.demo}
rm -rf "$DEMO"
mkdir -p "$DEMO"

"$BIN/birdgrab" sandbox --port 0 --env-file "$DEMO/sandbox.env" --quiet &
SANDBOX_PID=$!
trap 'kill "$SANDBOX_PID" 2>/dev/null || true; wait "$SANDBOX_PID" 2>/dev/null || true' EXIT

for _ in $(seq 1 300); do
  [ -s "$DEMO/sandbox.env" ] && break
  kill -0 "$SANDBOX_PID" 2>/dev/null || { echo "demo: the sandbox did not start" >&2; exit 1; }
  sleep 0.1
done
[ -s "$DEMO/sandbox.env" ] || { echo "demo: the sandbox did not start within 30 s" >&2; exit 1; }
# shellcheck disable=SC1090,SC1091
. "$DEMO/sandbox.env"
export BIRDGRAB_CONTACT="birdgrab-demo@example.invalid"

run() { echo; echo "\$ birdgrab $*"; "$BIN/birdgrab" "$@"; }
COMMON=(--manifests "$DEMO/manifests" --cache "$DEMO/cache" --out "$DEMO/dataset")
# iNaturalist is opt-in: name all three archives.
run catalog "${COMMON[@]}" --source xeno-canto --source europeana --source inaturalist
run filter "${COMMON[@]}" --min-files 3
run fetch "${COMMON[@]}" --windows events --max-chunks-per-recording 30
run stats "${COMMON[@]}"
run export --manifests "$DEMO/manifests" --dataset "$DEMO/dataset" --out "$DEMO/export"
run report --manifests "$DEMO/manifests" --dataset "$DEMO/dataset"
echo
echo "demo: manifests in $DEMO/manifests, audio cache in $DEMO/cache, dataset in $DEMO/dataset"
echo "demo: Hugging Face export in $DEMO/export (datasets.load_dataset(\"$DEMO/export\"))"
echo "demo: report: $(cd "$DEMO/dataset" && pwd)/report.html"
