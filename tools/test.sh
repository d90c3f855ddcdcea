#!/usr/bin/env bash
# The project's test command (README "Testing"): prepares the test data, idempotently, then runs
# the whole test suite. Extra arguments go to `cargo test`.
#   - Python packages the shared conformance tools need (pinned: the F32 masters are rebuilt
#     bit-exactly and checked against the manifest's sha256) and the gRPC tests' Python client,
#   - the conformance F32 masters, rebuilt into .cache/f32masters,
#   - the three real models, fetched into .cache/models (tools/fetch-models.sh),
#   - cargo-deb for the Debian package test (tools/package-deb.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${GGUFD_SHARED:-../shared}
CACHE=.cache
[ -f "$SHARED/conformance/manifest.json" ] || { echo "test.sh: no conformance corpus at $SHARED/conformance" >&2; exit 1; }

py_has() { python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null; }
if ! py_has numpy 2.4.6 || ! py_has gguf 0.19.0; then
  python3 -m pip install --quiet --disable-pip-version-check numpy==2.4.6 gguf==0.19.0
fi
# tests/grpc_python.rs: a gRPC client driven by server reflection alone.
if ! py_has grpcio 1.85.3 || ! py_has grpcio-reflection 1.85.1 || ! py_has protobuf 7.36.2; then
  python3 -m pip install --quiet --disable-pip-version-check grpcio==1.85.3 grpcio-reflection==1.85.1 protobuf==7.36.2
fi

if [ ! -f "$CACHE/f32masters/.complete" ]; then
  rm -rf "$CACHE/f32masters"
  python3 "$SHARED/tools/make_tiny_models.py" --from-manifest "$SHARED/conformance" --out "$CACHE/f32masters"
  touch "$CACHE/f32masters/.complete"
fi

bash tools/fetch-models.sh "$CACHE/models"

# tests/package_deb.rs: cargo-deb (pinned), installed here rather than by the test itself, so a
# three-minute build does not run beside the timing-sensitive tests.
bash tools/package-deb.sh --tools-only --check-only

export GGUFD_SHARED="$SHARED"
cargo test --release "$@"
