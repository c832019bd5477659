#!/usr/bin/env bash
# The lbbench ratios (pipeline Mpps / same-run reference Mpps) of the standard runs,
# against the recorded ones in bench/ratios.baseline: run it before and after a change to
# the dataplane, on an idle machine. A ratio below 85% of its baseline is a regression
# (exit status 1); a run that fails is exit status 2. Medians of ROUNDS runs of 1 s.
#
#   bench/ratios.sh BUILD_DIR [ROUNDS]          (default 3 rounds)
#   bench/ratios.sh BUILD_DIR 5 > new-baseline  (the table it prints is a baseline)
#
# Ratios, not Mpps: the reference moves with the machine and its neighbours, the ratio much
# less. Not part of the test suite: timings do not belong in tests on a shared machine.
set -uo pipefail
build=${1:?usage: bench/ratios.sh BUILD_DIR [ROUNDS]}
rounds=${2:-3}
baseline="$(dirname "$0")/ratios.baseline"
eal=(-l 0-1 --no-huge -m 2048 --no-shconf --no-pci --no-telemetry --log-level=lib.eal:error)

status=0
echo "# name | lbbench arguments | ratio (median of $rounds runs)   # Mpps, baseline"
while IFS='|' read -r name args base; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  base=${base%%#*}
  runs=()
  for _ in $(seq "$rounds"); do
    # shellcheck disable=SC2086  # args are words
    out=$("$build/bench/lbbench" "${eal[@]}" -- --json --seconds=1 $args) || { echo "lbbench failed: $args" >&2; exit 2; }
    runs+=("$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["total_mpps"], d["ratio"])' <<<"$out")")
  done
  read -r mpps ratio < <(printf '%s\n' "${runs[@]}" | sort -k2 -g | sed -n "$(( (rounds + 1) / 2 ))p")
  verdict=""
  if python3 -c "import sys; sys.exit(0 if float('$ratio') < 0.85 * float('$base') else 1)"; then
    verdict="  REGRESSION"
    status=1
  fi
  printf '%s|%s|%.3f   # %.2f Mpps, baseline %s%s\n' "$name" "$args" "$ratio" "$mpps" "$base" "$verdict"
done <"$baseline"
exit $status
