#!/usr/bin/env bash
# One benchmark at two commits, one after the other on this machine, each in a worktree of its
# own and a fresh VMKIT_HOME (tiny built from the test package cache): for "this change is not
# slower" claims.
#
#     bench/compare_commits.sh BEFORE AFTER bench/boot.py --runs 5
set -euo pipefail
before=$1 after=$2 script=$3
shift 3
cd "$(dirname "$0")/.."
debs=${VMKIT_TEST_CACHE:-$HOME/.cache/vmkit-tests/debs}
cleanup() {  # also when the benchmark fails: no guest or worktree of the run outlives it
    VMKIT_HOME=$home PYTHONPATH="$tree/src" python -m vmkit.cli.main rm -f $(VMKIT_HOME=$home \
        PYTHONPATH="$tree/src" python -m vmkit.cli.main ls -q 2>/dev/null) >/dev/null 2>&1 || true
    kill "$(cat "$home/run/vmkitd.pid" 2>/dev/null)" 2>/dev/null || true
    pkill -9 -f -- "$home/" || true
    sleep 2
    git worktree remove --force "$tree" 2>/dev/null || true
    rm -rf "$home"
}
for rev in "$before" "$after"; do
    tree=$(mktemp -d /tmp/vmkit-rev-XXXX)
    home=$(mktemp -d /tmp/vmkit-bh-XXXX)
    trap cleanup EXIT
    git worktree add -q --detach "$tree" "$rev"
    mkdir -p "$home/cache" && ln -s "$debs" "$home/cache/debs"
    echo "== $script at $(git rev-parse --short "$rev")"
    (cd "$tree" && PYTHONPATH="$tree/src" python "$script" --home "$home" "$@")
    cleanup
    trap - EXIT
done
