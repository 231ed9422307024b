#!/usr/bin/env bash
# Copy what a `coemogen bench paper-table` folder keeps (settings, tables, each finished (row, seed)
# report and filter summary) from a working folder SRC to the committed folder DST; the world,
# captions, runs and generated images stay behind. `--report-only` on DST rebuilds its tables.
set -euo pipefail
src=${1:?usage: sync_paper_table.sh SRC DST}
dst=${2:?usage: sync_paper_table.sh SRC DST}
mkdir -p "$dst"
dst=$(cd "$dst" && pwd)
cd "$src"
for f in settings.json paper_table.md paper_table.json; do
    if [ -f "$f" ]; then cp "$f" "$dst/$f"; fi
done
find . -path './world' -prune -o \( -name manifest.summary.json -o -path '*/seed-*/report/metrics.json' \
    -o -path '*/seed-*/report/metrics.md' -o -path '*/seed-*/report/samples.safetensors' \) -print |
    while read -r f; do
        mkdir -p "$dst/$(dirname "$f")"
        cp "$f" "$dst/$f"
    done
