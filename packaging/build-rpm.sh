#!/usr/bin/env bash
# Builds the RPM from the current git tree: packaging/build-rpm.sh [OUTDIR]
# Installs rpmbuild when missing (Debian's `rpm` package provides it).
# On a non-RPM build host the BuildRequires cannot be checked against an RPM
# database, so they are skipped (--nodeps) there; an RPM host checks them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/target/rpm}"
if ! command -v rpmbuild >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq rpm >/dev/null
fi
version="$(sed -n 's/^Version: *//p' "$root/packaging/coordinatool.spec")"
top="$(mktemp -d)"
trap 'rm -rf "$top"' EXIT
mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS}
# The tarball is the working tree as git sees it (tracked and untracked,
# ignored files excluded), so an uncommitted change is packaged too.
(cd "$root" && git ls-files -co --exclude-standard -z \
    | tar --null -T - --transform "s,^,coordinatool-$version/," -czf "$top/SOURCES/coordinatool-$version.tar.gz")
nodeps=()
if ! rpm -q rpm >/dev/null 2>&1; then nodeps=(--nodeps); fi
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}" \
    rpmbuild -bb "${nodeps[@]}" --define "_topdir $top" "$root/packaging/coordinatool.spec"
mkdir -p "$out"
find "$top/RPMS" -name '*.rpm' -exec cp {} "$out/" \;
ls -1 "$out"/*.rpm
