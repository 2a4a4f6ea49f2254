#!/usr/bin/env bash
# Runs every benchmark with the project venv and prints the results table for benchmarks/README.md.
# Usage: make bench   (or: benchmarks/run_all.sh [PYTHON]); BENCH_REPEATS=N overrides each script's repeats.
set -euo pipefail
cd "$(dirname "$0")"
PY="${1:-../.venv/bin/python}"
LOG="${BENCH_LOG:-/tmp/hydra-vertex-ai-bench/run_all.log}"
mkdir -p "$(dirname "$LOG")"
: > "$LOG"
scripts=(bench_startup.py bench_submit.py bench_entry.py bench_local_sweep.py bench_payload.py bench_first_create.py
         bench_heavy_local.py bench_python_package.py bench_sweeper_vertex.py)
for script in "${scripts[@]}"; do
    if [[ ! -f "$script" ]]; then
        echo "RESULT|$script|—|—|pending: \`$PY benchmarks/$script\`|pending" | tee -a "$LOG"
        continue
    fi
    echo "### $script  (load average: $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$LOG"
    before=$(grep -c '^RESULT|' "$LOG" || true)
    "$PY" "$script" 2>&1 | tee -a "$LOG"
    if [[ "$(grep -c '^RESULT|' "$LOG" || true)" == "$before" ]]; then  # a script without RESULT lines
        echo "RESULT|$script|see its output in $LOG|—|see its output|—" >> "$LOG"
    fi
done
echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $("$PY" -V); $(date -u +%Y-%m-%d)"
echo "| Figure | Baseline in the same run | Target | Measured | Verdict |"
echo "|---|---|---|---|---|"
grep '^RESULT|' "$LOG" | awk -F'|' '{ row = "|"; for (i = 2; i <= NF; i++) row = row " " $i " |"; print row }'
