#!/usr/bin/env bash
# Builds the Debian package fluxd_<version>-1_<arch>.deb into
# target/debian/ (or $CARGO_TARGET_DIR/debian/):
#
#   bash packaging/build-deb.sh        (from anywhere; needs cargo-deb:
#                                       `cargo install cargo-deb --locked`)
#
# 1. `cargo build --release` of fluxd and fluxctl (the fluxctl package
#    builds `flux` too: the same CLI under the product page's name);
# 2. the man pages and shell completions, rendered by those binaries from
#    their own command-line definitions (`fluxd --write-man-pages`,
#    `fluxctl man --out-dir`, `fluxctl completions SHELL`, and the same
#    for `flux`, whose pages and scripts say `flux`) into
#    target/release/dist/, so they always describe the binaries shipped,
#    and CHANGELOG.md compressed as the upstream changelog;
# 3. `cargo deb -p fluxd --no-build --strip`, with the metadata in
#    daemon/Cargo.toml ([package.metadata.deb]). The binaries are
#    stripped (the release profile keeps line tables for backtraces in
#    development builds; `cargo deb --dbgsym` would ship them apart).
#
# Prints the path of the .deb as its last line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=${CARGO_TARGET_DIR:-target}
dist=$target/release/dist
# Reproducible man page dates: the last commit's time when in git.
if [[ -z ${SOURCE_DATE_EPOCH:-} ]] && git rev-parse --git-dir >/dev/null 2>&1; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
  export SOURCE_DATE_EPOCH
fi

echo "::: cargo build --release -p fluxd -p fluxctl" >&2
cargo build --release --locked -p fluxd -p fluxctl

echo "::: man pages and completions -> $dist" >&2
rm -rf "$dist"
mkdir -p "$dist/completions"
"$target/release/fluxctl" man --out-dir "$dist/man"
"$target/release/fluxd" --write-man-pages "$dist/man8"
"$target/release/fluxctl" completions bash >"$dist/completions/fluxctl.bash"
"$target/release/fluxctl" completions zsh >"$dist/completions/_fluxctl"
"$target/release/fluxctl" completions fish >"$dist/completions/fluxctl.fish"
"$target/release/flux" man --out-dir "$dist/man"
"$target/release/flux" completions bash >"$dist/completions/flux.bash"
"$target/release/flux" completions zsh >"$dist/completions/_flux"
"$target/release/flux" completions fish >"$dist/completions/flux.fish"
# Debian installs man pages compressed; -n keeps the archive reproducible.
gzip -9n "$dist"/man/*.1 "$dist"/man8/*.8
# The project's CHANGELOG.md, under the name Debian gives an upstream
# changelog, compressed likewise.
gzip -9nc CHANGELOG.md >"$dist/changelog.gz"

echo "::: cargo deb -p fluxd --no-build --strip" >&2
if ! out=$(cargo deb -p fluxd --no-build --strip --locked 2>&1); then
  printf '%s\n' "$out" >&2
  exit 1
fi
printf '%s\n' "$out" | sed '$d' >&2
deb=$(printf '%s\n' "$out" | tail -n 1)
if [[ ! -f $deb ]]; then
  echo "::: cargo deb did not end with the path of a .deb: $deb" >&2
  exit 1
fi
echo "$deb"
