#!/usr/bin/env bash
# The study's last steps, once every model's runs are stored (docs/results/README.md): the
# report under the pre-registered rules, the hidden-state analysis, the numbered tables, the
# GPU projection and the figures the README shows. Run from the repository root with the
# project's environment active:
#
#   bash docs/results/finish.sh [STORE]          (STORE defaults to study)
#
# The store is only read. Writes STORE/report, docs/results/tables.md,
# docs/results/figures/*.png and perf/results-DATE-gpu-projection.json. OUT=dir writes the
# docs files there instead (a dry run); REPORT=existing reuses a report already written.
set -euo pipefail
STORE=${1:-study}
OUT=${OUT:-docs/results}
PERF=${PERF:-perf}

running=$(python - "$STORE" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}/results.sqlite?mode=ro", uri=True)
print(" ".join(r for (r,) in db.execute("select run_id from runs where status = 'running'")))
PY
)
if [ -n "$running" ]; then
    echo "finish.sh: runs still marked running in $STORE: $running (wait for them, or restart" \
         "the study command so that it marks them interrupted and completes them)" >&2
    exit 1
fi

if [ "${REPORT:-}" != "existing" ]; then
    selfcorrect report "$STORE" --rules docs/results/rules.toml --bootstrap 2000
    selfcorrect analyze hidden "$STORE"
fi
mkdir -p "$OUT/figures"
projection="$PERF/results-$(date -u +%Y-%m-%d)-gpu-projection.json"
python perf/gpu_projection.py "$STORE" --json "$projection"
python docs/results/tables.py "$STORE/report" "$STORE" --gpu "$projection" > "$OUT/tables.md.part"
mv "$OUT/tables.md.part" "$OUT/tables.md"
for f in bbq/bbq_conditions bbq/bbq_size bbq/bbq_heatmap_ambig bbq/bbq_readouts \
         bbq/rounds_uncertainty bbq/exact_transitions winogender/winogender_r \
         winogender/scatter law/law_parity law/law_merit hidden/hidden_layers; do
    if [ -f "$STORE/report/$f.png" ]; then
        cp "$STORE/report/$f.png" "$OUT/figures/$(basename "$f").png"
    else
        echo "finish.sh: no $STORE/report/$f.png (left out)" >&2
    fi
done
echo "finish.sh: wrote $OUT/tables.md, $OUT/figures/ and the GPU projection"
