#!/usr/bin/env bash
# Run every fuzz/fuzz_*.py target (or the ones named as arguments) with atheris for a
# bounded time: FUZZ_SECONDS in all (default 60), split evenly, each target starting from
# fuzz/seeds/<name without fuzz_>/. A crash or a broken invariant exits non-zero and
# prints the input that caused it. Where atheris cannot be installed, prints
# "skipped: atheris unavailable" and exits 0.
#
#   bash fuzz/run.sh                       # CI (.ci/run) calls this
#   FUZZ_SECONDS=600 bash fuzz/run.sh fuzz/fuzz_sse.py
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
total=${FUZZ_SECONDS:-60}

# A venv with the project and its `fuzz` extra. atheris comes as a wheel for CPython on
# Linux x86-64, so no compiler is needed there; elsewhere pip may fail, and we skip.
setup_log=$(mktemp)
trap 'rm -f "$setup_log"' EXIT
if ! FPY=$("$PY" -c 'import sys; sys.path.insert(0, "tests"); import run; print(run.ensure_venv(sys.executable, "fuzz"))' 2>"$setup_log" | tail -n 1) \
    || ! "$FPY" -c 'import atheris' 2>>"$setup_log"; then
  echo "fuzz: skipped: atheris unavailable for $("$PY" --version 2>&1) on $(uname -sm)"
  { grep -m 3 '^ERROR' "$setup_log" || tail -n 3 "$setup_log"; } | sed 's/^/fuzz:   /'
  exit 0
fi

if [ "$#" -gt 0 ]; then targets=("$@"); else targets=(fuzz/fuzz_*.py); fi
per=$(( total / ${#targets[@]} ))
[ "$per" -ge 1 ] || per=1
artifacts=${FUZZ_ARTIFACTS:-$(mktemp -d)}
mkdir -p "$artifacts"
status=0
for target in "${targets[@]}"; do
  name=$(basename "$target" .py)
  corpus=$(mktemp -d)
  seeds=()
  [ -d "fuzz/seeds/${name#fuzz_}" ] && seeds=("fuzz/seeds/${name#fuzz_}")
  log=$(mktemp)
  if "$FPY" "$target" -max_total_time="$per" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/$name-" \
      "$corpus" "${seeds[@]}" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    echo "fuzz: $name: ok, ${runs:-?} runs in ${per}s (${rate:-?} exec/s)"
  else
    status=1
    echo "fuzz: $name: FAILED"
    grep -v '^INFO: Instrumenting' "$log" | tail -n 40
    for crash in "$artifacts/$name"-*; do
      [ -e "$crash" ] || continue
      echo "fuzz: input: $crash"
      "$FPY" -c 'import sys; print(repr(open(sys.argv[1], "rb").read()[:4000]))' "$crash"
      echo "fuzz: replay: $FPY $target $crash"
    done
  fi
  rm -rf "$corpus" "$log"
done
exit "$status"
