#!/usr/bin/env bash
# Keep the running study in git: export the store into docs/results/archive (only the runs
# that grew are rewritten) and commit that folder alone. A new machine resumes with
#   selfcorrect restore docs/results/archive study && selfcorrect run --plan docs/results/plan.toml
# Run from the repository root with the project's environment active; STORE defaults to study.
set -euo pipefail
STORE=${1:-study}
ARCHIVE=docs/results/archive
# hidden states of the 1.5B model only (the analysis the study reports; about 55 MB, the four
# models' together about 130 MB)
selfcorrect export "$STORE" "$ARCHIVE" --hidden qwen2.5-coder-1.5b-instruct
git add -- "$ARCHIVE"
if git diff --cached --quiet -- "$ARCHIVE"; then
    echo "checkpoint.sh: nothing new in $STORE"
    exit 0
fi
n=$(python - "$STORE" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}/results.sqlite?mode=ro", uri=True)
print(db.execute("select count(*) from answers").fetchone()[0])
PY
)
git commit -q -m "study archive: $n answers ($(date -u +%H:%M) UTC)" -- "$ARCHIVE"
echo "checkpoint.sh: committed $ARCHIVE ($n answers)"
