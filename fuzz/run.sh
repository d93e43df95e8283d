#!/usr/bin/env bash
# Run every fuzz/fuzz_*.py target with atheris for a bounded time (FUZZ_SECONDS in all,
# default 60), starting from fuzz/seeds/<target>. A crash or a broken invariant exits
# non-zero. Where atheris cannot be installed, says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
total=${FUZZ_SECONDS:-60}
if ! PY=$(python3 -c 'import sys; sys.path.insert(0, "tests"); import run; print(run.ensure_venv(sys.executable, "fuzz"))' 2>/dev/null | tail -n 1) \
    || ! "$PY" -c 'import atheris' 2>/dev/null; then
  echo "fuzz: skipped: atheris unavailable on $(python3 --version)"
  exit 0
fi
targets=(fuzz/fuzz_*.py)
per=$(( total / ${#targets[@]} ))
[ "$per" -ge 1 ] || per=1
status=0
for target in "${targets[@]}"; do
  name=$(basename "$target" .py)
  corpus=$(mktemp -d)
  seeds="fuzz/seeds/${name#fuzz_}"
  log=$(mktemp)
  if "$PY" "$target" -max_total_time="$per" -rss_limit_mb=2048 -timeout=10 \
      "$corpus" "$seeds" >"$log" 2>&1; then
    runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -n 1 || true)
    echo "fuzz: $name: ok (${runs:-no summary} in ${per}s)"
  else
    echo "fuzz: $name: FAILED"
    tail -n 40 "$log"
    status=1
  fi
  rm -rf "$corpus" "$log"
done
exit "$status"
