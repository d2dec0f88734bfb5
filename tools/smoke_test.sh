#!/usr/bin/env bash
# Smoke test of a built rumba-bids image (CircleCI's build job; needs docker and python3).
#
#   bash tools/smoke_test.sh IMAGE [WORKDIR]
#
# Runs the container the way users do, but stricter: an arbitrary non-root uid, read-only image,
# no network, HOME pointing at a directory that does not exist (so any write under $HOME fails),
# the BIDS dataset mounted read-only. Then checks the output file list against
# tests/data/expected_outputs.txt, the list the CLI tests check (tools/check_outputs.py).
set -euo pipefail

image=${1:?usage: smoke_test.sh IMAGE [WORKDIR]}
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${2:-$(mktemp -d)}
mkdir -p "$root/bids" "$root/out" "$root/work"
expected_version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/rumba_bids/__init__.py")

strict=(--rm --network none --read-only --tmpfs /tmp:mode=1777
        --user "$(id -u):$(id -g)" --env HOME=/nonexistent/home)

echo "== image metadata"
[ "$(docker image inspect --format '{{.Config.User}}' "$image")" = "1000:1000" ] \
    || { echo "image does not run as 1000:1000" >&2; exit 1; }
for label in version source licenses; do
    value=$(docker image inspect \
        --format "{{index .Config.Labels \"org.opencontainers.image.$label\"}}" "$image")
    [ -n "$value" ] || { echo "missing label org.opencontainers.image.$label" >&2; exit 1; }
    echo "org.opencontainers.image.$label=$value"
done

echo "== --version (default user, no network)"
version=$(docker run --rm --network none "$image" --version)
echo "$version"
[ "$version" = "rumba-bids $expected_version" ] \
    || { echo "expected 'rumba-bids $expected_version'" >&2; exit 1; }
[ "$(docker run --rm --entrypoint id "$image" -u)" != 0 ] \
    || { echo "the image runs as root" >&2; exit 1; }

echo "== demo dataset"
docker run "${strict[@]}" -v "$root/bids:/data" --entrypoint rumba-bids-demo "$image" /data

echo "== participant level"
start=$(date +%s)
docker run "${strict[@]}" -v "$root/bids:/data:ro" -v "$root/out:/out" -v "$root/work:/work" \
    "$image" /data /out participant -w /work --nprocs 2
echo "participant level took $(( $(date +%s) - start )) s"

echo "== outputs vs tests/data/expected_outputs.txt"
python3 "$repo/tools/check_outputs.py" "$root/out" "$repo/tests/data/expected_outputs.txt"
