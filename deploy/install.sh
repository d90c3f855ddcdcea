#!/usr/bin/env bash
# Installs ggufd as a systemd service on distributions without the Debian package (on Debian,
# Ubuntu and Raspberry Pi OS use the .deb: tools/package-deb.sh). Run as root from the repository:
#   bash deploy/install.sh [--enable] [--socket]    install binary, units, user, example config
#   bash deploy/install.sh --uninstall [--purge]     stop, disable and remove
# Options:
#   --enable         also `systemctl enable --now ggufd.service` (default: installed, not started,
#                    because the example config names a model that is not there yet)
#   --socket         also enable ggufd.socket (socket activation; implies --enable)
#   --binary FILE    the ggufd binary to install (default: ${CARGO_TARGET_DIR:-target}/release/ggufd,
#                    built with `cargo build --release --locked` if missing)
#   --prefix DIR     install the binary to DIR/bin (default: $PREFIX or /usr/local)
#   --root DIR       install into DIR as a root filesystem (a scratch root or an image): nothing
#                    is started, units are enabled offline (systemctl --root)
#   --purge          with --uninstall: also remove /etc/ggufd/ggufd.toml, and /etc/ggufd and
#                    /var/lib/ggufd/models if empty (models, keys and tokens are kept)
# What goes where: $PREFIX/bin/ggufd; /etc/systemd/system/ggufd.{service,socket} (ExecStart
# pointed at the binary); /etc/sysusers.d/ggufd.conf and the system user ggufd (systemd-sysusers,
# or useradd without it); /etc/ggufd/ggufd.toml (only if absent: an edited config is kept);
# /var/lib/ggufd/models (root-owned, read-only to the service). The user is never removed.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr/local}
ROOT=""
BINARY=""
ENABLE=0
SOCKET=0
UNINSTALL=0
PURGE=0
die() { echo "install.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --enable) ENABLE=1 ;;
    --socket) SOCKET=1; ENABLE=1 ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    --binary) BINARY=${2:?--binary needs a file}; shift ;;
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift ;;
    --root) ROOT=${2:?--root needs a directory}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || die "run as root"
[ $PURGE = 0 ] || [ $UNINSTALL = 1 ] || die "--purge goes with --uninstall"
if [ -n "$ROOT" ]; then
  [ -d "$ROOT" ] || die "--root $ROOT: no such directory"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || ROOT=""
fi
R=$ROOT                                   # prefix of every installed path; empty for /
UNITS=$R/etc/systemd/system
LIVE=0                                    # a running systemd to talk to
[ -z "$R" ] && [ -d /run/systemd/system ] && LIVE=1
if [ -z "$R" ] && dpkg-query -W -f='${Status}' ggufd 2>/dev/null | grep -q 'ok installed'; then
  die "the Debian package ggufd is installed: use apt/dpkg (README \"Running as a service\")"
fi
units=(ggufd.service)
[ $SOCKET = 0 ] || units=(ggufd.socket ggufd.service)

if [ $UNINSTALL = 1 ]; then
  if [ $LIVE = 1 ]; then
    systemctl disable --now ggufd.service ggufd.socket 2>/dev/null || true
  elif command -v systemctl >/dev/null; then
    systemctl ${R:+--root="$R"} disable ggufd.service ggufd.socket >/dev/null 2>&1 || true
  fi
  # The binary the unit runs (a different --prefix may have installed it).
  bin=$PREFIX/bin/ggufd
  if [ -f "$UNITS/ggufd.service" ]; then
    bin=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$UNITS/ggufd.service")
  fi
  rm -f "$UNITS/ggufd.service" "$UNITS/ggufd.socket" "$R$bin" "$R/etc/sysusers.d/ggufd.conf"
  [ $LIVE = 0 ] || systemctl daemon-reload
  if [ $PURGE = 1 ]; then
    rm -f "$R/etc/ggufd/ggufd.toml"
    for dir in /etc/ggufd /var/lib/ggufd/models /var/lib/ggufd; do
      rmdir --ignore-fail-on-non-empty "$R$dir" 2>/dev/null || true
      [ ! -d "$R$dir" ] || echo "install.sh: $dir is not empty and was kept"
    done
  else
    echo "install.sh: /etc/ggufd and /var/lib/ggufd are kept (--purge removes the config)"
  fi
  echo "install.sh: ggufd removed; the system user ggufd is kept (userdel ggufd removes it)"
  exit 0
fi

if [ -z "$BINARY" ]; then
  BINARY=${CARGO_TARGET_DIR:-target}/release/ggufd
  if [ ! -x "$BINARY" ]; then
    command -v cargo >/dev/null || die "no $BINARY and no cargo: build it first (cargo build --release) or pass --binary"
    cargo build --release --locked
  fi
fi
[ -x "$BINARY" ] || die "$BINARY: not an executable"

install -Dm0755 "$BINARY" "$R$PREFIX/bin/ggufd"
install -d -m0755 "$UNITS"
sed "s#^ExecStart=/usr/bin/ggufd #ExecStart=$PREFIX/bin/ggufd #" deploy/ggufd.service > "$UNITS/ggufd.service"
chmod 0644 "$UNITS/ggufd.service"
grep -q "^ExecStart=$PREFIX/bin/ggufd " "$UNITS/ggufd.service" || die "could not point ExecStart at $PREFIX/bin/ggufd"
install -m0644 deploy/ggufd.socket "$UNITS/ggufd.socket"

# The system user and group ggufd, from the same sysusers.d line as the Debian package.
install -Dm0644 deploy/debian/ggufd.sysusers "$R/etc/sysusers.d/ggufd.conf"
if command -v systemd-sysusers >/dev/null; then
  install -d -m0755 "$R/etc"
  systemd-sysusers ${R:+--root="$R"} ggufd.conf
elif ! grep -q '^ggufd:' "$R/etc/passwd" 2>/dev/null; then
  useradd ${R:+--prefix "$R"} --system --user-group --no-create-home --home-dir /var/lib/ggufd \
    --shell /usr/sbin/nologin --comment "ggufd LLM daemon" ggufd
fi
grep -q '^ggufd:' "$R/etc/passwd" || die "the user ggufd was not created in $R/etc/passwd"

install -d -m0755 "$R/etc/ggufd" "$R/var/lib/ggufd" "$R/var/lib/ggufd/models"
if [ -f "$R/etc/ggufd/ggufd.toml" ]; then
  echo "install.sh: keeping the existing /etc/ggufd/ggufd.toml (the example is deploy/ggufd.toml)"
else
  install -m0644 deploy/ggufd.toml "$R/etc/ggufd/ggufd.toml"
fi

if [ $LIVE = 1 ]; then
  systemctl daemon-reload
  systemctl try-restart ggufd.service   # a re-install restarts a running daemon on the new binary
  if [ $ENABLE = 1 ]; then
    systemctl enable --now "${units[@]}"
    systemctl --no-pager status ggufd.service || true
  fi
elif [ $ENABLE = 1 ]; then
  systemctl ${R:+--root="$R"} enable "${units[@]}"
fi
if [ $ENABLE = 0 ]; then
  echo "install.sh: ggufd installed, not started. Put a model in /var/lib/ggufd/models, name it in"
  echo "  /etc/ggufd/ggufd.toml, then: systemctl enable --now ggufd"
fi
