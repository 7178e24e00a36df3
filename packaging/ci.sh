#!/usr/bin/env bash
# Builds the Debian package and checks it the way a user meets it. Run from
# the repository root, as root, on a Debian 12 machine (CI):
#
#   bash packaging/ci.sh
#
# 1. Installs what it needs when missing: dpkg-dev (dpkg-shlibdeps for the
#    package's Depends), systemd (systemd-analyze, sysusers, tmpfiles),
#    man-db and groff-base, lintian, and cargo-deb (`cargo install`).
# 2. Builds the .deb (packaging/build-deb.sh: release build, man pages and
#    completions from the binaries, `cargo deb`).
# 3. `dpkg-deb -I`: the metadata, maintainer scripts and conffiles.
#    `dpkg-deb -c`: every file where it belongs, nothing else. `lintian`:
#    no error and no warning (the overrides it honours are in
#    packaging/debian/fluxd.lintian-overrides, each with its reason).
# 4. `dpkg-deb -x` into a throwaway root: the units name /usr/bin/fluxd in
#    ExecStart= and ExecPaths=, `systemd-analyze verify` of the units as
#    installed passes with no output, sysusers and tmpfiles apply, the
#    example config is valid (as shipped and uncommented), every man page
#    formats without a warning.
# 5. `dpkg -i`: the postinst made the fluxd user and enabled the units;
#    /usr/bin/fluxd --version, /usr/bin/fluxctl --help, /usr/bin/flux
#    --help, `man` finds the pages (with EXIT STATUS and EXAMPLES), bash
#    loads the completions of fluxctl and flux. The installed fluxd, run as the
#    fluxd user on /run/flux, is found by a fluxctl that names no folder.
# 6. `dpkg --purge`: every file of the package, the enablement links and
#    /run/flux are gone (the fluxd user stays, as Debian keeps system
#    users; /var/lib/flux stays, and is never created here).
#
# Every check prints `ok` or `FAIL`; the script exits 1 on any FAIL, and
# ends with a line `N passed, M failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

passed=0
failed=0
ok() {
  echo "ok    $*"
  passed=$((passed + 1))
}
fail() {
  echo "FAIL  $*"
  failed=$((failed + 1))
}
check() { # check DESCRIPTION COMMAND…
  local what=$1
  shift
  if "$@" >/dev/null; then ok "$what"; else fail "$what"; fi
}

if [[ $(id -u) -ne 0 ]]; then
  echo "::: packaging/ci.sh: SKIPPED — it installs and purges a package, which needs root" >&2
  exit 0
fi
if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "::: packaging/ci.sh: SKIPPED — not a Debian system (no dpkg or apt-get)" >&2
  exit 0
fi
if dpkg-query -W -f '${Status}' fluxd 2>/dev/null | grep -q 'install ok installed'; then
  if [[ ${CI:-} != true ]]; then
    echo "::: packaging/ci.sh: the fluxd package is installed on this machine; this check would replace and purge it. Remove it first (dpkg --purge fluxd)." >&2
    exit 1
  fi
  echo "::: a fluxd package is installed (left by an interrupted run?): purging it first"
  dpkg --purge fluxd
fi

# ---- 1. Tools ----------------------------------------------------------------
need=()
command -v dpkg-shlibdeps >/dev/null 2>&1 || need+=(dpkg-dev)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v man >/dev/null 2>&1 || need+=(man-db)
command -v groff >/dev/null 2>&1 || need+=(groff-base)
command -v objcopy >/dev/null 2>&1 || need+=(binutils)
command -v lintian >/dev/null 2>&1 || need+=(lintian)
if ((${#need[@]})); then
  echo "::: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! cargo deb --version >/dev/null 2>&1; then
  echo "::: installing cargo-deb"
  cargo install cargo-deb --locked --version '^3.8' --quiet
fi
echo "::: $(cargo deb --version 2>&1 | head -n 1), $(dpkg-deb --version | head -n 1)"

# ---- 2. Build -----------------------------------------------------------------
echo "::: building the .deb"
deb=$(bash packaging/build-deb.sh | tail -n 1)
echo "::: $deb ($(du -h "$deb" | cut -f1))"

work=$(mktemp -d)
smoke_pid=""
state=""
installed=0
cleanup() {
  if [[ -n $smoke_pid ]]; then kill "$smoke_pid" 2>/dev/null || true; fi
  if [[ -n $state ]]; then rm -rf "$state"; fi
  # A run stopped half-way leaves no package behind.
  if ((installed)); then dpkg --purge fluxd >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---- 3. Metadata and contents ---------------------------------------------------
info=$(dpkg-deb -I "$deb")
printf '%s\n' "$info" | sed 's/^/        /'
field() { dpkg-deb -f "$deb" "$1"; }
check "Package: fluxd" test "$(field Package)" = fluxd
version=$(sed -nE '/^\[workspace\.package\]/,/^\[/ s/^version = "([^"]+)"/\1/p' Cargo.toml)
check "Version: $version-1 (the workspace's)" test "$(field Version)" = "$version-1"
check "Architecture: $(dpkg --print-architecture)" test "$(field Architecture)" = "$(dpkg --print-architecture)"
check "Maintainer is set" test -n "$(field Maintainer)"
check "Section: admin" test "$(field Section)" = admin
depends=$(field Depends)
check "Depends on libc6 (from dpkg-shlibdeps): $depends" grep -q 'libc6' <<<"$depends"
check "Depends on systemd-sysusers and systemd-tmpfiles providers" grep -q 'systemd-standalone-sysusers' <<<"$depends"
for script in postinst prerm postrm; do
  check "control.tar has $script" grep -qE "^ +[0-9]+ bytes, +[0-9]+ lines +\*? *$script( |$)" <<<"$info"
done
mkdir -p "$work/control"
dpkg-deb -e "$deb" "$work/control"
check "conffiles lists /etc/flux/fluxd.toml" grep -qx /etc/flux/fluxd.toml "$work/control/conffiles"

listing=$(dpkg-deb -c "$deb" | awk '{ print $NF }' | sed 's|^\./|/|')
printf '%s\n' "$listing" | grep -v '/$' | sed 's/^/        /'
expect=(
  /usr/bin/fluxd
  /usr/bin/fluxctl
  /usr/bin/flux
  /usr/lib/systemd/system/fluxd.service
  /usr/lib/systemd/system/fluxd.socket
  /usr/lib/systemd/system/fluxd-project@.socket
  /usr/lib/sysusers.d/fluxd.conf
  /usr/lib/tmpfiles.d/fluxd.conf
  /etc/flux/fluxd.toml
  /usr/share/man/man8/fluxd.8.gz
  /usr/share/man/man8/fluxd-dev.8.gz
  /usr/share/man/man1/fluxctl.1.gz
  /usr/share/man/man1/fluxctl-secrets-set.1.gz
  /usr/share/man/man1/fluxctl-secrets-import.1.gz
  /usr/share/man/man1/fluxctl-run.1.gz
  /usr/share/man/man1/fluxctl-completions.1.gz
  /usr/share/man/man1/fluxctl-dev.1.gz
  /usr/share/man/man1/flux.1.gz
  /usr/share/man/man1/flux-secrets-set.1.gz
  /usr/share/man/man1/flux-secrets-list.1.gz
  /usr/share/man/man1/flux-secrets-delete.1.gz
  /usr/share/man/man1/flux-dev.1.gz
  /usr/share/bash-completion/completions/fluxctl
  /usr/share/zsh/vendor-completions/_fluxctl
  /usr/share/fish/vendor_completions.d/fluxctl.fish
  /usr/share/bash-completion/completions/flux
  /usr/share/zsh/vendor-completions/_flux
  /usr/share/fish/vendor_completions.d/flux.fish
  /usr/share/doc/fluxd/copyright
  /usr/share/doc/fluxd/changelog.Debian.gz
  /usr/share/doc/fluxd/changelog.gz
  /usr/share/doc/fluxd/DEPLOY.md
  /usr/share/lintian/overrides/fluxd
)
for path in "${expect[@]}"; do
  check "contains $path" grep -qxF "$path" <<<"$listing"
done
pages=$(grep -c '^/usr/share/man/man1/fluxctl.*\.1\.gz$' <<<"$listing" || true)
check "a man page for fluxctl and each subcommand ($pages pages)" test "$pages" -ge 20
unexpected=$(grep -v '/$' <<<"$listing" | grep -vE '^/(usr/bin/(fluxd|fluxctl|flux)|usr/lib/(systemd/system|sysusers\.d|tmpfiles\.d)/|etc/flux/fluxd\.toml$|usr/share/(man|bash-completion|zsh|fish|doc/fluxd)/|usr/share/lintian/overrides/fluxd$)' || true)
check "no file outside the expected places${unexpected:+: $unexpected}" test -z "$unexpected"

# lintian runs as root here (CI); it only reads the package.
lint=$(lintian --fail-on error,warning --tag-display-limit 0 "$deb" 2>&1) && linted=1 || linted=0
printf '%s\n' "$lint" | grep -v 'running with root privileges' | sed 's/^/        /' || true
check "lintian: no error or warning" test "$linted" = 1

# ---- 4. As extracted into a root ------------------------------------------------
root=$work/root
mkdir -p "$root"
dpkg-deb -x "$deb" "$root"
unit=$root/usr/lib/systemd/system/fluxd.service
check "ExecStart=/usr/bin/fluxd" grep -qx 'ExecStart=/usr/bin/fluxd' "$unit"
check "ExecPaths= starts with /usr/bin/fluxd" grep -qE '^ExecPaths=/usr/bin/fluxd ' "$unit"
check "no unit setting names /usr/local" bash -c '! grep -rh -v "^#" "$0"/usr/lib/systemd/system | grep -q /usr/local' "$root"
check "the binary at ExecStart= is executable" test -x "$root/usr/bin/fluxd"

if command -v systemd-analyze >/dev/null 2>&1; then
  # The host's stock units, so that targets resolve, and the other
  # commands the units run (ExecReload= /bin/kill); fluxd is the package's.
  mkdir -p "$root/usr/lib/systemd" "$root/bin" "$root/usr/bin"
  for stock in /usr/lib/systemd/system /lib/systemd/system; do
    if [[ -d $stock ]]; then
      cp -an "$stock/." "$root/usr/lib/systemd/system/"
      break
    fi
  done
  while read -r cmd; do
    if [[ ! -e $root$cmd ]]; then
      mkdir -p "$root$(dirname "$cmd")"
      printf '#!/bin/sh\nexit 0\n' >"$root$cmd"
      chmod 0755 "$root$cmd"
    fi
  done < <(sed -nE 's/^Exec[A-Za-z]+=[-@:+!]*([^ ]+).*/\1/p' "$root"/usr/lib/systemd/system/fluxd*.service "$root"/usr/lib/systemd/system/fluxd*.socket | sort -u)
  out=$(systemd-analyze verify --root="$root" --recursive-errors=no --man=no \
    fluxd.service fluxd.socket fluxd-project@example.socket 2>&1) && status=0 || status=$?
  if [[ $status -eq 0 && -z $out ]]; then
    ok "systemd-analyze verify of the installed units"
  else
    fail "systemd-analyze verify of the installed units (exit $status):"
    printf '%s\n' "$out" | sed 's/^/        /'
  fi
  check "systemd-sysusers makes the fluxd user from /usr/lib/sysusers.d" \
    bash -c 'systemd-sysusers --root="$0" fluxd.conf >/dev/null 2>&1 && grep -q "^fluxd:" "$0/etc/passwd"' "$root"
  check "systemd-tmpfiles makes /run/flux from /usr/lib/tmpfiles.d" \
    bash -c 'systemd-tmpfiles --root="$0" --create fluxd.conf && test "$(stat -c %a "$0/run/flux")" = 711' "$root"
else
  echo "SKIPPED: systemd-analyze is not installed; the installed units were NOT verified"
fi

check "the example config is valid as shipped" \
  "$root/usr/bin/fluxd" --config "$root/etc/flux/fluxd.toml" --check-config
# Uncommented, with groups that exist here: its keys are real ones.
sed -E 's/^#([a-z[])/\1/; s/"(flux-admins|my-app)"/"root"/g' "$root/etc/flux/fluxd.toml" >"$work/full.toml"
check "the example config is valid uncommented" \
  "$root/usr/bin/fluxd" --config "$work/full.toml" --check-config

bad_pages=""
for page in "$root"/usr/share/man/man*/*.gz; do
  # -k: through preconv, as man renders them (help text has — and …).
  warnings=$(zcat "$page" | groff -k -man -Tutf8 -ww -z 2>&1 || echo "groff failed")
  [[ -z $warnings ]] || bad_pages+=" $(basename "$page"): $warnings"
done
check "every man page formats without a warning${bad_pages:+:$bad_pages}" test -z "$bad_pages"

# ---- 5. Installed ---------------------------------------------------------------
echo "::: dpkg -i $deb"
installed=1
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb"
files=$(dpkg-query -L fluxd)
check "/usr/bin/fluxd --version" bash -c '/usr/bin/fluxd --version | grep -qx "fluxd $0"' "$version"
check "/usr/bin/fluxctl --help" bash -c '/usr/bin/fluxctl --help | grep -q "secrets"'
check "/usr/bin/fluxctl --version" bash -c '/usr/bin/fluxctl --version | grep -qx "fluxctl $0"' "$version"
check "/usr/bin/flux --help says flux" bash -c '/usr/bin/flux --help | grep -q "^Usage: flux "'
check "the postinst made the fluxd user" id fluxd
check "the postinst enabled fluxd.service" test -L /etc/systemd/system/multi-user.target.wants/fluxd.service
check "the postinst enabled fluxd.socket" test -L /etc/systemd/system/sockets.target.wants/fluxd.socket
check "man finds fluxd(8)" man -w 8 fluxd
check "man finds fluxctl-secrets-set(1)" man -w fluxctl-secrets-set
check "man renders fluxctl(1)" bash -c 'MANPAGER=cat MANWIDTH=80 man fluxctl 2>/dev/null | grep -q "Flux Secrets operator CLI"'
for section in "EXIT STATUS" EXAMPLES; do
  check "fluxctl(1), flux(1) and fluxd(8) have $section" bash -c 'for p in fluxctl flux "8 fluxd"; do MANPAGER=cat MANWIDTH=80 man $p 2>/dev/null | grep -qx "$0" || exit 1; done' "$section"
done
check "man finds flux-secrets-set(1)" man -w flux-secrets-set
check "bash loads the completion" \
  bash -c 'source /usr/share/bash-completion/completions/fluxctl && complete -p fluxctl | grep -q _fluxctl'
check "bash loads flux's completion" \
  bash -c 'source /usr/share/bash-completion/completions/flux && complete -p flux | grep -q _clap_complete_flux'

# The installed daemon as the service runs it (user fluxd, /run/flux),
# found by a fluxctl that names no folder.
systemd-tmpfiles --create fluxd.conf
state=$(mktemp -d /tmp/fluxd-ci-state.XXXXXX)
chown fluxd:fluxd "$state"
chmod 0700 "$state"
runuser -u fluxd -- /usr/bin/fluxd --state-dir "$state" --runtime-dir /run/flux \
  2>"$work/fluxd.log" &
smoke_pid=$!
for _ in $(seq 200); do
  [[ -S /run/flux/control.sock ]] && break
  sleep 0.05
done
ctl() { env -u FLUX_RUNTIME_DIR -u RUNTIME_DIRECTORY -u XDG_RUNTIME_DIR -u FLUX_PROJECT /usr/bin/fluxctl "$@"; }
check "fluxctl finds the service's fluxd in /run/flux unasked" \
  bash -c "$(declare -f ctl); ctl projects create ci-smoke >/dev/null && ctl status | grep -q '^runtime: /run/flux$'"
check "fluxctl secrets set/list through it" \
  bash -c "$(declare -f ctl); printf 'v' | ctl secrets set K -p ci-smoke >/dev/null && ctl secrets list -p ci-smoke | grep -q '^K '"
check "flux secrets list through it" \
  bash -c "env -u FLUX_RUNTIME_DIR -u RUNTIME_DIRECTORY -u XDG_RUNTIME_DIR /usr/bin/flux secrets list -p ci-smoke | grep -q '^K '"
check "the installed completion offers the service's projects" \
  bash -c 'source /usr/share/bash-completion/completions/fluxctl; COMP_WORDS=(fluxctl --project ""); COMP_CWORD=2; unset FLUX_RUNTIME_DIR RUNTIME_DIRECTORY XDG_RUNTIME_DIR; _clap_complete_fluxctl fluxctl "" --project; printf "%s\n" "${COMPREPLY[@]}" | grep -qx ci-smoke'
kill "$smoke_pid"
wait "$smoke_pid" || true
smoke_pid=""
rm -rf "$state"
# fluxd leaves its sockets for a successor; the purge removes only the
# empty folders.
rm -f /run/flux/control.sock /run/flux/projects/*.sock

# ---- 6. Purged ------------------------------------------------------------------
echo "::: dpkg --purge fluxd"
DEBIAN_FRONTEND=noninteractive dpkg --purge fluxd
installed=0
left=""
while read -r path; do
  [[ -z $path || -d $path ]] && continue # shared folders (/usr/bin, …) stay
  if [[ -e $path || -L $path ]]; then left+=" $path"; fi
done <<<"$files"
check "every file of the package is gone${left:+:$left}" test -z "$left"
check "/etc/flux/fluxd.toml (a conffile) is gone" test ! -e /etc/flux/fluxd.toml
links=$(find /etc/systemd/system -name 'fluxd*' 2>/dev/null || true)
check "no enablement link is left${links:+: $links}" test -z "$links"
check "deb-systemd-helper forgot the units" \
  bash -c '! ls /var/lib/systemd/deb-systemd-helper-enabled 2>/dev/null | grep -q fluxd'
check "/run/flux is gone" test ! -e /run/flux
check "dpkg no longer knows fluxd" bash -c '! dpkg-query -W fluxd >/dev/null 2>&1 || dpkg-query -W -f "\${Status}" fluxd | grep -q "not-installed"'

echo "::: packaging: $passed passed, $failed failed"
echo "$passed passed, $failed failed"
((failed == 0))
