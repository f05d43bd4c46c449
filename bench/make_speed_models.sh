#!/usr/bin/env bash
# The Stage A student and Stage B adapter that bench/speed.py times (small and quick: speed, not
# quality, is measured; the bench compares the exported files with these same torch models).
# Writes under $TAVA_HOME (default ./.tava): students/speed-student, adapters/speed-adapter.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
tava=.venv/bin/tava
home="${TAVA_HOME:-.tava}"
$tava ingest ../shared/data/corpus_passages_en.jsonl.gz --name speed-passages --max-records 3000
$tava distill --datasets speed-passages --student transformer --steps 300 --span-views 0 \
    --eval-every 100 --name speed-student
student="$home/artifacts/students/speed-student"
$tava embed --dataset speed-passages --encoder "$student"
$tava embed --dataset speed-passages --encoder all-MiniLM-L6-v2
svec=$(ls -d "$home"/vectors/speed-passages/*/speed-student-* | head -1)
tvec=$(ls -d "$home"/vectors/speed-passages/*/all-MiniLM-L6-v2-* | head -1)
$tava adapt --student-vectors "$svec" --teacher-vectors "$tvec" --student "$student" --name speed-adapter \
    --max-steps 300 --seeds 1
