#!/usr/bin/env bash
# Runs every Go fuzz target in the tree for FUZZTIME each (default 30s).
#
# Targets are discovered, not listed: every `func FuzzXxx(f *testing.F)` in a
# *_test.go file outside testdata/ and hidden directories, as (package
# directory, name). `go test -fuzz` takes one package and one target per
# run, so each target runs on its own. Finding no target at all is an error:
# a broken discovery must not pass as "nothing to fuzz".
#
# A run that fails keeps going with the other targets, then exits 1. The
# failing input that go test writes to <package>/testdata/fuzz/<Name>/ is
# printed here, with the command that replays it, so the CI log alone is
# enough to reproduce; commit the file to keep it as a regression seed.
#
# Go 1.26's fuzz coordinator can fail a run at the -fuzztime boundary with a
# bare "context deadline exceeded" when a worker is starved of CPU as the
# deadline fires (go.dev/issue/75804, fixed in Go 1.27). Such a run wrote no
# failing input, printed no panic and no test error: it found nothing. A run
# that failed only that way is fuzzed again (up to FUZZ_RETRIES times); if it
# keeps failing only that way, the target's whole corpus is replayed without
# fuzzing, and the target passes only if that replay passes. It is counted
# and named as a deadline flake in the summary, never silently.
#
#   .ci/fuzz.sh           fuzz every target
#   .ci/fuzz.sh --list    print "<package dir> <Name>" per target and exit
#   .ci/fuzz.sh --classify LOG   print how a failed run's log reads:
#                         "deadline-only" (the boundary flake) or "failure"
#
# Environment: FUZZTIME (go test -fuzztime; default 30s), GO (default go),
# FUZZ_RETRIES (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
GO="${GO:-go}"
FUZZTIME="${FUZZTIME:-30s}"
FUZZ_RETRIES="${FUZZ_RETRIES:-2}"

# deadline_only succeeds when the log in $1 shows a run that failed only at
# the -fuzztime boundary (go.dev/issue/75804): "context deadline exceeded",
# no failing input written, no panic, no other error line under the FAIL.
deadline_only() {
  grep -q 'context deadline exceeded' "$1" || return 1
  grep -qE 'Failing input written|panic:|fatal error:|_test\.go:[0-9]+:|fuzzing process hung|no fuzz tests to fuzz' "$1" && return 1
  # Every line indented under "--- FAIL:" must be the deadline line.
  awk '/^--- FAIL:/ {f=1; next} f && /^[ \t]+/ && $0 !~ /context deadline exceeded/ {bad=1} /^[^ \t]/ {f=0} END {exit bad}' "$1"
}

# discover prints "<package dir> <Name>" per fuzz target, sorted. The name
# rule is go test's: Fuzz, then nothing or a character that is not a
# lower-case letter.
discover() {
  find . \( -name testdata -o -name vendor -o \( -name '.?*' ! -name . \) \) -prune \
    -o -type f -name '*_test.go' -print0 |
    xargs -0 -r grep -HE '^func Fuzz([^a-z(][A-Za-z0-9_]*)?\([A-Za-z_][A-Za-z0-9_]* \*testing\.F\)' |
    sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' |
    LC_ALL=C sort -u
}

if [ "${1:-}" = "--classify" ]; then # --classify LOG: "deadline-only" or "failure"
  if deadline_only "$2"; then echo deadline-only; else echo failure; fi
  exit 0
fi

mapfile -t targets < <(discover)
if [ "${#targets[@]}" -eq 0 ]; then
  echo "fuzz: discovery found no fuzz targets (looked for 'func FuzzXxx(f *testing.F)' in *_test.go)" >&2
  exit 1
fi
if [ "${1:-}" = "--list" ]; then
  printf '%s\n' "${targets[@]}"
  exit 0
fi

echo "fuzz: ${#targets[@]} targets, ${FUZZTIME} each"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
passed=0
failed=()
flaked=()
start=$SECONDS
for t in "${targets[@]}"; do
  pkg="${t% *}"
  name="${t#* }"
  echo "=== fuzz ${pkg} ${name}"
  t0=$SECONDS
  ok=true
  "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1 | tee "$log" || ok=false
  tries=0
  while ! $ok && deadline_only "$log" && [ "$tries" -lt "$FUZZ_RETRIES" ]; do
    tries=$((tries + 1))
    echo "fuzz: ${pkg} ${name}: failed only at the -fuzztime boundary (go.dev/issue/75804); fuzzing again (${tries}/${FUZZ_RETRIES})"
    ok=true
    "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1 | tee "$log" || ok=false
  done
  if ! $ok && deadline_only "$log"; then
    echo "fuzz: ${pkg} ${name}: still only the boundary failure; replaying its corpus without fuzzing"
    if "$GO" test -count=1 -run "^${name}\$" "$pkg" 2>&1 | tee "$log"; then
      flaked+=("${pkg} ${name}")
      passed=$((passed + 1))
      echo "--- fuzz ok (deadline flake, corpus replay passed) ${pkg} ${name} ($((SECONDS - t0))s)"
      continue
    fi
  fi
  # Without this check a target that stopped being one (renamed, build tag)
  # would pass without fuzzing anything.
  if grep -q 'no fuzz tests to fuzz' "$log"; then
    echo "fuzz: ${pkg} ${name}: go test found no such fuzz target" >&2
    ok=false
  fi
  if $ok; then
    passed=$((passed + 1))
    echo "--- fuzz ok ${pkg} ${name} ($((SECONDS - t0))s)"
    continue
  fi
  failed+=("${pkg} ${name}")
  echo "--- FUZZ FAIL ${pkg} ${name} ($((SECONDS - t0))s)"
  # go test prints: Failing input written to testdata/fuzz/<Name>/<hash>
  sed -nE 's/.*Failing input written to ([^ ]+).*/\1/p' "$log" | while read -r input; do
    echo "fuzz: failing input ${pkg}/${input}:"
    cat "${pkg}/${input}" || true
    echo "fuzz: replay with: go test -run '^${name}/$(basename "$input")\$' ${pkg}"
  done
done
echo "fuzz: $((SECONDS - start))s in all"
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'fuzz: FAILED %s\n' "${failed[@]}" >&2
fi
if [ "${#flaked[@]}" -gt 0 ]; then
  printf 'fuzz: deadline flake (go.dev/issue/75804), corpus replay passed: %s\n' "${flaked[@]}"
  echo "fuzz: ${#flaked[@]} of the passed targets passed on their corpus replay after deadline flakes"
fi
echo "fuzz: ${passed} passed, ${#failed[@]} failed"
[ "${#failed[@]}" -eq 0 ]
