# containerd is healthy when its daemon answers `ctr version` on this instance's socket (the
# server half of the answer proves the daemon serves, not only the client).
conf="$PROV_DIR/config.toml"
[ -f "$conf" ] || { echo "containerd is not installed for $PROV_WORKSPACE/$PROV_SERVER"; exit 2; }
sock="$PROV_DIR/containerd.sock"
[ -S "$sock" ] || { echo "no containerd socket at $sock"; exit 1; }
out=$(prov_as_root ctr --address "$sock" --timeout 5s version 2>&1) || { echo "containerd on $sock: $out"; exit 1; }
printf '%s\n' "$out" | grep -q '^Server:' || { echo "containerd on $sock did not report a server version"; exit 1; }
