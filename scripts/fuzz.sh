#!/usr/bin/env bash
# fuzz.sh DURATION — run every Fuzz target in the module for DURATION each,
# with the invariants build tag as the tests have it. New inputs that
# widen coverage stay in Go's cache; a failing one is written to the
# target's testdata/fuzz directory (docs/fuzzing.md), to commit with its fix.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "== $pkg $f"
		# Minimizing each new input for the default 60 s would take most of
		# a short run.
		go test -tags invariants -run '^$' -fuzz "^$f\$" -fuzztime "$t" -fuzzminimizetime 5s "$pkg"
	done
done
