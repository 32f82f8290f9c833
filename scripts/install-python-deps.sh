#!/usr/bin/env bash
# Creates the project's Python venv (.venv at the checkout root, or $HICACHE_VENV)
# with what the Python package's tests need: torch 2.13.0 (the CPU build lying
# on this machine's disk), numpy, pytest, SGLang 0.5.23 installed --no-deps,
# and exactly the packages SGLang's import chain needs to import
# sglang.srt.mem_cache.{hicache_storage,storage.backend_factory,pool_host,
# memory_pool}. Everything is pinned, and torch is constrained to 2.13.0 so
# nothing can pull a CUDA build of torch.
#
# Idempotent: a stamp file keyed by this script's hash skips all of it when
# the venv is already complete. Prints the venv's python path on the last line.
#
# Not installed on purpose: torchvision. PyPI has no CPU build for torch 2.13.0
# (its wheels link libtorch_cuda), so the tests put a stub on sys.path instead
# (tests/python/stubs, only when the real one cannot be imported).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${HICACHE_VENV:-$root/.venv}
python=${PYTHON:-python3}
script_hash=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
stamp=$venv/.hicache-python-deps-$script_hash

if [ -f "$stamp" ] && "$venv/bin/python" -c 'import pytest, numpy' 2>/dev/null; then
    echo "$venv/bin/python"
    exit 0
fi

base=(torch==2.13.0 numpy==2.4.6 pytest==9.2.0)
# What `import sglang.srt.mem_cache.pool_host` (and the storage modules) needs
# from SGLang 0.5.23's dependency list, found by importing it until it worked.
chain=(
    orjson==3.13.0 psutil==7.2.2 pybase64==1.5.1 requests==2.34.2 pillow==13.0.0
    starlette==1.10.0 msgspec==0.22.0 triton==3.8.0 pydantic==2.14.4 pyzmq==27.3.0
    tqdm==4.70.1 ipython==9.18.1 aiohttp==3.14.5 transformers==5.19.0
    tokenizers==0.23.2 dill==0.4.1 apache-tvm-ffi==0.1.11 sentencepiece==0.2.1
    compressed-tensors==0.18.0 gguf==0.19.0
)

if [ ! -x "$venv/bin/python" ]; then
    echo "install-python-deps: creating $venv" >&2
    "$python" -m venv "$venv"
fi
rm -f "$venv"/.hicache-python-deps-*

constraints=$(mktemp)
echo "torch==2.13.0" >"$constraints"

log=$(mktemp)
trap 'rm -f "$constraints" "$log"' EXIT
# pip's output goes to a log shown only on failure: with --no-deps SGLang, pip
# always reports SGLang's other (GPU serving) requirements as missing.
pip_install() {
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check "$@" >"$log" 2>&1; then
        cat "$log" >&2
        echo "install-python-deps: pip install $* failed" >&2
        exit 1
    fi
}
echo "install-python-deps: ${base[*]}" >&2
pip_install -c "$constraints" "${base[@]}"
echo "install-python-deps: sglang==0.5.23 (--no-deps)" >&2
pip_install --no-deps sglang==0.5.23
echo "install-python-deps: SGLang import chain: ${chain[*]}" >&2
pip_install -c "$constraints" "${chain[@]}"

# The chain must import (torchvision stub on the path when the real one is absent).
"$venv/bin/python" -W ignore - "$root" >&2 <<'EOF'
import sys
root = sys.argv[1]
try:
    import torchvision  # noqa: F401
except Exception:
    for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        del sys.modules[name]
    sys.path.append(root + "/tests/python/stubs")
import torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
import sglang.srt.mem_cache.hicache_storage  # noqa: F401
import sglang.srt.mem_cache.storage.backend_factory  # noqa: F401
import sglang.srt.mem_cache.pool_host.mha  # noqa: F401
import sglang.srt.mem_cache.pool_host.mla  # noqa: F401
import sglang.srt.mem_cache.memory_pool  # noqa: F401
print("install-python-deps: SGLang storage import chain OK (torch %s)" % torch.__version__)
EOF

touch "$stamp"
echo "$venv/bin/python"
