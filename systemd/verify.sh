#!/usr/bin/env bash
# Checks the units with systemd-analyze verify. systemd-analyze only warns
# (exit 0) about unknown keys and unparsable values, so any message about our
# files counts as a failure here. Installs systemd when the command is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v systemd-analyze >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq systemd >/dev/null
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Verify an instance of the template, as systemd would load it. ExecStart
# must name an existing executable, so point it at one for the check.
sed 's#^ExecStart=/usr/bin/coordinatoold#ExecStart=/bin/true#' \
    "$here/coordinatoold@.service" > "$work/coordinatoold@mnt-lustre.service"
out="$(cd "$work" && systemd-analyze verify --man=no ./coordinatoold@mnt-lustre.service 2>&1 || true)"
relevant="$(printf '%s\n' "$out" | grep -F 'coordinatoold@' || true)"
if [ -n "$relevant" ]; then
    printf 'systemd-analyze verify found problems:\n%s\n' "$relevant" >&2
    exit 1
fi
grep -q '^Type=notify$' "$work/coordinatoold@mnt-lustre.service"
echo "systemd units: ok"
