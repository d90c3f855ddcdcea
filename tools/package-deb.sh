#!/usr/bin/env bash
# Builds the Debian package with cargo-deb ([package.metadata.deb] in Cargo.toml) and checks it:
# its file list and control data (dpkg-deb -c / -I / -e), then a real install, upgrade, remove
# and purge into a scratch root (dpkg --root with chrootless maintainer scripts), and
# deploy/install.sh into another scratch root. Exits non-zero naming whatever is missing.
#   bash tools/package-deb.sh                      build the amd64 (host) package and check it
#   bash tools/package-deb.sh --target aarch64-unknown-linux-gnu --no-build
#                                                  package an already cross-built arm64 binary
#                                                  ($CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/release/ggufd)
# Options:
#   --target TRIPLE    Rust target (cargo-deb maps it to the Debian architecture)
#   --no-build         package the binary already in the target directory (cargo-deb --no-build)
#   --out DIR          where the .deb goes (default: ${CARGO_TARGET_DIR:-target}/debian)
#   --check-only       no scratch-root installs (they need root)
#   --fast             cargo-deb --fast: lighter compression (10 s instead of 60 s; for tests)
#   --tools-only       only check and install the tools (cargo-deb), then exit (tools/test.sh)
# KEEP_WORK=1 keeps the scratch directory (extracted package, roots, dpkg and install.sh logs).
# Besides the .deb, cargo-deb makes ggufd-dbgsym_*.ddeb (the stripped binary's debug info).
# The last line of stdout is the path of the .deb. Needs dpkg, readelf (binutils), dpkg-shlibdeps
# (dpkg-dev; without it libc6 comes from readelf), and for the installs root, systemd-sysusers,
# systemctl (systemd) and deb-systemd-helper (init-system-helpers); installs cargo-deb (pinned)
# with `cargo install` when `cargo deb --version` is not that version.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
TARGET=""
NO_BUILD=0
OUT=""
INSTALL_TESTS=1
FAST=0
TOOLS_ONLY=0
log() { printf '[package-deb %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --target) TARGET=${2:?--target needs a triple}; shift ;;
    --target=*) TARGET=${1#*=} ;;
    --no-build) NO_BUILD=1 ;;
    --out) OUT=${2:?--out needs a directory}; shift ;;
    --check-only) INSTALL_TESTS=0 ;;
    --fast) FAST=1 ;;
    --tools-only) TOOLS_ONLY=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET_DIR/debian}
T0=$(date +%s)
secs() { echo $(( $(date +%s) - $1 )); }

case "${TARGET:-host}" in
  host) ARCH=$(dpkg --print-architecture); ELF_MACHINE="" ;;
  x86_64-unknown-linux-gnu) ARCH=amd64; ELF_MACHINE=3e ;;
  aarch64-unknown-linux-gnu) ARCH=arm64; ELF_MACHINE=b7 ;;
  *) die "unsupported --target $TARGET (x86_64-unknown-linux-gnu or aarch64-unknown-linux-gnu)" ;;
esac
if [ -z "$ELF_MACHINE" ]; then
  case "$ARCH" in amd64) ELF_MACHINE=3e ;; arm64) ELF_MACHINE=b7 ;; *) die "unsupported host architecture $ARCH" ;; esac
fi

for tool in dpkg dpkg-deb readelf cargo; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install dpkg binutils; a Rust toolchain for cargo)"
done
# A cross build is stripped (and its debug info split off) with the target's binutils.
if [ "$ARCH" != "$(dpkg --print-architecture)" ]; then
  case "$ARCH" in arm64) gnu=aarch64-linux-gnu ;; *) gnu=x86_64-linux-gnu ;; esac
  if [ ! -x "/usr/bin/$gnu-strip" ] || [ ! -x "/usr/bin/$gnu-objcopy" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "apt-get install binutils-$gnu (strip/objcopy for $ARCH)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "binutils-$gnu" >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "binutils-$gnu" >/dev/null; } \
        || die "apt-get install binutils-$gnu failed"
    else
      die "/usr/bin/$gnu-strip not found: apt-get install binutils-$gnu"
    fi
  fi
fi
if [ $INSTALL_TESTS = 1 ]; then
  [ "$(id -u)" = 0 ] || die "the scratch-root installs need root (run as root, or pass --check-only)"
  for tool in systemd-sysusers deb-systemd-helper deb-systemd-invoke systemctl; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install systemd init-system-helpers)"
  done
fi

# ---------------------------------------------------------------- cargo-deb, pinned
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  log "cargo install cargo-deb $CARGO_DEB_VERSION (about 3 minutes on 2 cores)"
  t=$(date +%s)
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
  log "cargo-deb installed in $(secs "$t") s"
fi
[ $TOOLS_ONLY = 0 ] || exit 0

# ---------------------------------------------------------------- build
BIN=$TARGET_DIR/${TARGET:+$TARGET/}release/ggufd
if [ $NO_BUILD = 1 ] && [ ! -x "$BIN" ]; then
  die "--no-build: no binary at $BIN (build it first, or set CARGO_TARGET_DIR to where it is)"
fi
args=(--locked --output "$OUT/")
[ -z "$TARGET" ] || args+=(--target "$TARGET")
[ $NO_BUILD = 0 ] || args+=(--no-build)
[ $FAST = 0 ] || args+=(--fast)
mkdir -p "$OUT"
log "cargo deb ${args[*]}"
t=$(date +%s)
built=$(cargo deb "${args[@]}") || die "cargo deb ${args[*]} failed (its error is above)"
log "cargo deb took $(secs "$t") s"
DEB=$(printf '%s\n' "$built" | grep '\.deb$' | tail -n 1 || true)
DDEB=$(printf '%s\n' "$built" | grep '\.ddeb$' | tail -n 1 || true)
[ -f "$DEB" ] || die "cargo deb did not report a .deb (it printed '$built')"
[ -f "$DDEB" ] || die "cargo deb did not report the -dbgsym .ddeb (it printed '$built')"
DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")
DDEB=$(cd "$(dirname "$DDEB")" && pwd)/$(basename "$DDEB")
log "built $DEB ($(du -h "$DEB" | cut -f1)) and $(basename "$DDEB") ($(du -h "$DDEB" | cut -f1))"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ggufd-deb.XXXXXX")
if [ -n "${KEEP_WORK:-}" ]; then log "KEEP_WORK: scratch roots kept in $WORK"
else trap 'rm -rf --one-file-system "$WORK"' EXIT; fi
FAIL=0
fail() { log "MISSING: $*"; FAIL=1; }
check_done() { [ $FAIL = 0 ] || die "$1: see MISSING above"; log "ok: $1"; }

# The newest glibc symbol version the binary needs (readelf reads any architecture's ELF).
GLIBC=$(readelf -V -W "$BIN" 2>/dev/null | sed -n '/Version needs section/,$p' \
  | grep -o 'Name: GLIBC_[0-9][0-9.]*' | sed 's/^Name: GLIBC_//' | sort -V | tail -n 1 || true)
log "ggufd needs glibc >= ${GLIBC:-?} (Debian 12 / Raspberry Pi OS 12 have 2.36)"
if [ -n "$GLIBC" ] && [ "$(printf '%s\n' "$GLIBC" 2.36 | sort -V | tail -n 1)" != 2.36 ]; then
  log "warning: glibc $GLIBC is newer than bookworm's 2.36: the package will not install on Debian 12 / Raspberry Pi OS 12"
fi
# A cross build without the target's multiarch libraries gets no libc6 from cargo-deb's $auto
# (dpkg-shlibdeps cannot resolve them): add it from the binary's own symbol versions.
if ! dpkg-deb -f "$DEB" Depends | grep -q libc6 && [ -n "$GLIBC" ]; then
  log "adding libc6 (>= $GLIBC) to Depends (dpkg-shlibdeps had no $ARCH libraries)"
  dpkg-deb -R "$DEB" "$WORK/repack"
  sed -i "s/^Depends: /Depends: libc6 (>= $GLIBC), /" "$WORK/repack/DEBIAN/control"
  dpkg-deb --root-owner-group -Zxz -b "$WORK/repack" "$DEB" >/dev/null
  rm -rf "$WORK/repack"
fi

# ---------------------------------------------------------------- contents (dpkg-deb -c)
dpkg-deb -c "$DEB" > "$WORK/contents"
sed 's/^/  /' "$WORK/contents" >&2
mode_of() { awk -v p="./$1" '$6 == p { print $1 }' "$WORK/contents"; }
expect_file() {  # expect_file PATH MODE
  local m; m=$(mode_of "$1")
  if [ -z "$m" ]; then fail "$1 not in the package"
  elif [ "$m" != "$2" ]; then fail "$1 has mode $m, expected $2"; fi
}
expect_file usr/bin/ggufd -rwxr-xr-x
expect_file usr/lib/systemd/system/ggufd.service -rw-r--r--
expect_file usr/lib/systemd/system/ggufd.socket -rw-r--r--
expect_file etc/ggufd/ggufd.toml -rw-r--r--
expect_file usr/lib/sysusers.d/ggufd.conf -rw-r--r--
expect_file usr/share/doc/ggufd/README.md -rw-r--r--
expect_file usr/share/doc/ggufd/copyright -rw-r--r--
if awk '$2 != "root/root" && $2 != "0/0"' "$WORK/contents" | grep -q .; then
  fail "files not owned by root: $(awk '$2 != "root/root" && $2 != "0/0"' "$WORK/contents")"
fi
check_done "dpkg-deb -c lists the binary, units, config, sysusers.d and docs"

dpkg-deb -x "$DEB" "$WORK/data"
machine=$(od -An -tx1 -j18 -N1 "$WORK/data/usr/bin/ggufd" | tr -d ' ')
[ "$machine" = "$ELF_MACHINE" ] || fail "usr/bin/ggufd is ELF machine 0x$machine, expected 0x$ELF_MACHINE ($ARCH)"
cmp -s deploy/ggufd.service "$WORK/data/usr/lib/systemd/system/ggufd.service" || fail "the packaged ggufd.service differs from deploy/"
cmp -s deploy/ggufd.socket "$WORK/data/usr/lib/systemd/system/ggufd.socket" || fail "the packaged ggufd.socket differs from deploy/"
cmp -s deploy/ggufd.toml "$WORK/data/etc/ggufd/ggufd.toml" || fail "the packaged ggufd.toml differs from deploy/"
! readelf -S -W "$WORK/data/usr/bin/ggufd" | grep -q '\.debug_info' || fail "usr/bin/ggufd is not stripped"
# The debug info is in the .ddeb under the binary's build id.
build_id=$(readelf -n -W "$WORK/data/usr/bin/ggufd" | grep -o 'Build ID: [0-9a-f]*' | cut -d' ' -f3 || true)
[ -n "$build_id" ] || fail "usr/bin/ggufd has no build id"
debug_file=./usr/lib/debug/.build-id/${build_id:0:2}/${build_id:2}.debug
dpkg-deb -c "$DDEB" | awk '{ print $6 }' | grep -qxF "$debug_file" || fail "$(basename "$DDEB") has no $debug_file"
[ "$(dpkg-deb -f "$DDEB" Architecture)" = "$ARCH" ] || fail "$(basename "$DDEB") is not $ARCH"
check_done "the packaged files are deploy/'s, a stripped $ARCH binary, its debug info in the .ddeb"

# ---------------------------------------------------------------- control (dpkg-deb -I / -e)
dpkg-deb -I "$DEB" | sed 's/^/  /' >&2
field() { dpkg-deb -f "$DEB" "$1"; }
[ "$(field Package)" = ggufd ] || fail "Package: $(field Package)"
[ "$(field Architecture)" = "$ARCH" ] || fail "Architecture: $(field Architecture), expected $ARCH"
depends=$(field Depends)
case "$depends" in *systemd*) ;; *) fail "Depends lacks systemd (systemd-sysusers): $depends" ;; esac
case "$depends" in *procps*) ;; *) fail "Depends lacks procps (/bin/kill for ExecReload): $depends" ;; esac
case "$depends" in *libc6*) ;; *) fail "Depends lacks libc6: $depends" ;; esac
dpkg-deb -e "$DEB" "$WORK/control"
for f in control conffiles postinst prerm postrm; do
  [ -f "$WORK/control/$f" ] || fail "control archive has no $f"
done
for f in postinst prerm postrm; do
  [ -x "$WORK/control/$f" ] || fail "$f is not executable"
  sh -n "$WORK/control/$f" || fail "$f: shell syntax error"
  ! grep -q '#DEBHELPER#' "$WORK/control/$f" || fail "$f still has the #DEBHELPER# token"
done
grep -qx /etc/ggufd/ggufd.toml "$WORK/control/conffiles" || fail "conffiles does not list /etc/ggufd/ggufd.toml"
grep -q 'systemd-sysusers .*ggufd.conf' "$WORK/control/postinst" || fail "postinst does not run systemd-sysusers"
grep -q 'deb-systemd-helper' "$WORK/control/postinst" || fail "postinst does not register the units"
grep -q 'var/lib/ggufd/models' "$WORK/control/postinst" || fail "postinst does not make the models directory"
grep -q 'deb-systemd-invoke stop' "$WORK/control/prerm" || fail "prerm does not stop the units"
grep -q 'deb-systemd-helper purge' "$WORK/control/postrm" || fail "postrm does not purge the unit state"
check_done "dpkg-deb -I/-e: $ARCH control data, conffiles and maintainer scripts"

if [ $INSTALL_TESTS = 0 ]; then
  log "done in $(secs "$T0") s (--check-only: no scratch-root installs)"
  echo "$DEB"
  exit 0
fi

# ---------------------------------------------------------------- dpkg --root scratch install
# An empty dpkg database in ROOT; the maintainer scripts run on this host with DPKG_ROOT=ROOT
# (--force-script-chrootless), so they are the real scripts doing the real work, only
# re-rooted: systemd-sysusers --root, deb-systemd-helper's DPKG_ROOT support. policy-rc.d
# (exit 101) keeps deb-systemd-invoke from touching the host's units. Dependencies are not in
# the empty database, hence --force-depends.
ROOT=$WORK/root
mkdir -p "$ROOT/var/lib/dpkg/info" "$ROOT/var/lib/dpkg/updates" "$ROOT/var/lib/dpkg/triggers" \
  "$ROOT/etc" "$ROOT/usr/sbin" "$ROOT/var/log"
: > "$ROOT/var/lib/dpkg/status"
: > "$ROOT/var/lib/dpkg/available"
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
rdpkg() { dpkg --root="$ROOT" --log="$ROOT/var/log/dpkg.log" --force-script-chrootless --force-depends \
  --force-architecture "$@" >> "$WORK/dpkg.out" 2>&1 || { cat "$WORK/dpkg.out" >&2; die "dpkg --root $*"; }; }
status() { dpkg-query --root="$ROOT" -W -f='${Status}' ggufd 2>/dev/null || true; }
wants() { find "$ROOT/etc/systemd/system" -name 'ggufd.*' 2>/dev/null | sed "s#^$ROOT##"; }

rdpkg -i "$DEB"
[ "$(status)" = "install ok installed" ] || fail "dpkg status after install: '$(status)'"
[ -x "$ROOT/usr/bin/ggufd" ] || fail "/usr/bin/ggufd not installed"
cmp -s deploy/ggufd.service "$ROOT/usr/lib/systemd/system/ggufd.service" || fail "/usr/lib/systemd/system/ggufd.service not installed"
cmp -s deploy/ggufd.socket "$ROOT/usr/lib/systemd/system/ggufd.socket" || fail "/usr/lib/systemd/system/ggufd.socket not installed"
cmp -s deploy/ggufd.toml "$ROOT/etc/ggufd/ggufd.toml" || fail "/etc/ggufd/ggufd.toml not installed"
grep -qx /etc/ggufd/ggufd.toml "$ROOT/var/lib/dpkg/info/ggufd.conffiles" || fail "dpkg does not track /etc/ggufd/ggufd.toml as a conffile"
grep -q '^ggufd:x:[0-9]*:[0-9]*:[^:]*:[^:]*:/usr/sbin/nologin$' "$ROOT/etc/passwd" || fail "postinst did not create the user ggufd"
grep -q '^ggufd:x:' "$ROOT/etc/group" || fail "postinst did not create the group ggufd"
[ -d "$ROOT/var/lib/ggufd/models" ] || fail "postinst did not make /var/lib/ggufd/models"
[ -z "$(wants)" ] || fail "the units were enabled on install: $(wants)"
check_done "dpkg --root -i: binary, units, conffile, user ggufd, models dir; units not enabled"

# Enable as an admin would; upgrade (re-install) keeps that, the user and an edited conffile.
systemctl --root="$ROOT" enable ggufd.service >/dev/null 2>&1 || fail "systemctl --root enable ggufd.service failed"
[ -L "$ROOT/etc/systemd/system/multi-user.target.wants/ggufd.service" ] || fail "enable made no multi-user.target.wants link"
echo "# edited by the admin" >> "$ROOT/etc/ggufd/ggufd.toml"
uid=$(grep '^ggufd:' "$ROOT/etc/passwd")
rdpkg -i "$DEB"
[ "$(status)" = "install ok installed" ] || fail "dpkg status after upgrade: '$(status)'"
grep -q '^# edited by the admin$' "$ROOT/etc/ggufd/ggufd.toml" || fail "upgrade overwrote the edited conffile"
[ "$(grep '^ggufd:' "$ROOT/etc/passwd")" = "$uid" ] || fail "upgrade changed the user: $(grep '^ggufd:' "$ROOT/etc/passwd")"
[ "$(grep -c '^ggufd:' "$ROOT/etc/passwd")" = 1 ] || fail "upgrade added a second user ggufd"
[ -L "$ROOT/etc/systemd/system/multi-user.target.wants/ggufd.service" ] || fail "upgrade disabled the service"
check_done "upgrade: enabled state, user and edited conffile kept"

rdpkg -r ggufd
[ "$(status)" = "deinstall ok config-files" ] || fail "dpkg status after remove: '$(status)'"
[ ! -e "$ROOT/usr/bin/ggufd" ] || fail "remove left /usr/bin/ggufd"
[ ! -e "$ROOT/usr/lib/systemd/system/ggufd.service" ] || fail "remove left the service unit"
[ -f "$ROOT/etc/ggufd/ggufd.toml" ] || fail "remove deleted the conffile (only purge should)"
touch "$ROOT/var/lib/ggufd/models/kept.gguf"
rdpkg -P ggufd
[ -z "$(status)" ] || [ "$(status)" = "unknown ok not-installed" ] || fail "dpkg status after purge: '$(status)'"
[ ! -e "$ROOT/etc/ggufd" ] || fail "purge left /etc/ggufd: $(ls -A "$ROOT/etc/ggufd")"
[ -f "$ROOT/var/lib/ggufd/models/kept.gguf" ] || fail "purge deleted a model"
[ -z "$(wants)" ] || fail "purge left unit links: $(wants)"
grep -q '^ggufd:' "$ROOT/etc/passwd" || fail "purge removed the user ggufd (it is kept by convention)"
check_done "remove keeps the config; purge removes it, keeps models and the user"

# ---------------------------------------------------------------- deploy/install.sh --root
IROOT=$WORK/iroot
mkdir -p "$IROOT/etc"
BINARY=$WORK/data/usr/bin/ggufd
inst() { bash deploy/install.sh --root "$IROOT" "$@" >> "$WORK/install.out" 2>&1 || { cat "$WORK/install.out" >&2; die "install.sh --root $*"; }; }
inst --binary "$BINARY" --socket
[ -x "$IROOT/usr/local/bin/ggufd" ] || fail "install.sh: /usr/local/bin/ggufd"
grep -qx 'ExecStart=/usr/local/bin/ggufd serve --config /etc/ggufd/ggufd.toml' "$IROOT/etc/systemd/system/ggufd.service" \
  || fail "install.sh: /etc/systemd/system/ggufd.service with ExecStart=/usr/local/bin/ggufd"
cmp -s deploy/ggufd.socket "$IROOT/etc/systemd/system/ggufd.socket" || fail "install.sh: /etc/systemd/system/ggufd.socket"
cmp -s deploy/ggufd.toml "$IROOT/etc/ggufd/ggufd.toml" || fail "install.sh: /etc/ggufd/ggufd.toml"
grep -q '^ggufd:x:.*:/usr/sbin/nologin$' "$IROOT/etc/passwd" || fail "install.sh: the user ggufd"
[ -d "$IROOT/var/lib/ggufd/models" ] || fail "install.sh: /var/lib/ggufd/models"
[ -L "$IROOT/etc/systemd/system/multi-user.target.wants/ggufd.service" ] || fail "install.sh --socket: ggufd.service not enabled"
[ -L "$IROOT/etc/systemd/system/sockets.target.wants/ggufd.socket" ] || fail "install.sh --socket: ggufd.socket not enabled"
echo "# edited by the admin" >> "$IROOT/etc/ggufd/ggufd.toml"
inst --binary "$BINARY"
grep -q '^# edited by the admin$' "$IROOT/etc/ggufd/ggufd.toml" || fail "install.sh overwrote an edited config"
[ "$(grep -c '^ggufd:' "$IROOT/etc/passwd")" = 1 ] || fail "install.sh added a second user ggufd"
inst --uninstall
[ ! -e "$IROOT/usr/local/bin/ggufd" ] || fail "install.sh --uninstall left the binary"
[ ! -e "$IROOT/etc/systemd/system/ggufd.service" ] || fail "install.sh --uninstall left the unit"
[ -z "$(find "$IROOT/etc/systemd/system" -name 'ggufd.*')" ] || fail "install.sh --uninstall left unit links"
[ -f "$IROOT/etc/ggufd/ggufd.toml" ] || fail "install.sh --uninstall (no --purge) deleted the config"
inst --uninstall --purge
[ ! -e "$IROOT/etc/ggufd" ] || fail "install.sh --uninstall --purge left /etc/ggufd"
[ ! -e "$IROOT/var/lib/ggufd" ] || fail "install.sh --uninstall --purge left an empty /var/lib/ggufd"
check_done "deploy/install.sh --root: install, enable, re-install, uninstall, purge"

log "done in $(secs "$T0") s: $DEB"
echo "$DEB"
