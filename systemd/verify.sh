#!/usr/bin/env bash
# Verifies systemd/emonet.service with systemd-analyze. `verify` exits 0 on unknown keys (it only
# warns), so any output at all fails this check. It needs the ExecStart binary to exist: the unit
# is copied with ExecStart pointing at a built binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${EMONET_BIN:-target/debug/emonet}
[ -x "$bin" ] || cargo build --quiet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|^ExecStart=/usr/bin/emonet|ExecStart=$(realpath "$bin")|" systemd/emonet.service > "$tmp/emonet.service"
out=$(systemd-analyze verify --man=no "$tmp/emonet.service" 2>&1 || true)
# Lines about the host's own units (this machine has no systemd as PID 1) are not ours.
ours=$(printf '%s\n' "$out" | grep -F "emonet.service" || true)
if [ -n "$ours" ]; then
  printf 'systemd-analyze verify reports:\n%s\n' "$ours"
  exit 1
fi
echo "systemd-analyze verify: clean"
systemd-analyze security --offline=yes --no-pager "$tmp/emonet.service" 2>/dev/null | tail -n 1 || true
