#!/usr/bin/env bash
# Installs ggufd as a systemd service (run as root from the repository):
#   bash deploy/install.sh [--socket]     build, install binary + units + example config, enable
#   bash deploy/install.sh --uninstall     stop, disable and remove (config and models are kept)
# --socket also enables ggufd.socket (socket activation: systemd owns the listeners).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr}
UNITS=/etc/systemd/system

if [ "${1:-}" = "--uninstall" ]; then
  systemctl disable --now ggufd.service ggufd.socket 2>/dev/null || true
  rm -f "$UNITS/ggufd.service" "$UNITS/ggufd.socket" "$PREFIX/bin/ggufd"
  systemctl daemon-reload
  echo "ggufd removed; /etc/ggufd and /var/lib/ggufd are kept"
  exit 0
fi

[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }
if [ ! -x target/release/ggufd ]; then
  cargo build --release --locked
fi
install -Dm0755 target/release/ggufd "$PREFIX/bin/ggufd"
sed "s#/usr/bin/ggufd#$PREFIX/bin/ggufd#" deploy/ggufd.service > "$UNITS/ggufd.service"
install -Dm0644 deploy/ggufd.socket "$UNITS/ggufd.socket"
install -d -m0755 /etc/ggufd /var/lib/ggufd/models
[ -f /etc/ggufd/ggufd.toml ] || install -m0644 deploy/ggufd.toml /etc/ggufd/ggufd.toml
systemctl daemon-reload
if [ "${1:-}" = "--socket" ]; then
  systemctl enable --now ggufd.socket
fi
systemctl enable --now ggufd.service
systemctl --no-pager status ggufd.service || true
