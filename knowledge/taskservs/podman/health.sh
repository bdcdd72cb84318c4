# podman is healthy when `podman info` works (storage, runtime and network are usable) and, with
# the API service, when `podman --remote` answers on this instance's socket.
state="$PROV_DIR/podman.state"
[ -f "$state" ] || { echo "podman is not installed for $PROV_WORKSPACE/$PROV_SERVER"; exit 2; }
command -v podman >/dev/null 2>&1 || { echo "podman is not on PATH"; exit 1; }
out=$(prov_as_root podman info --format '{{.Host.OCIRuntime.Name}}' 2>&1) || { echo "podman info failed: $(printf '%s\n' "$out" | tail -n 1)"; exit 1; }
if grep -qx 'api=true' "$state"; then
  sock="$PROV_DIR/podman.sock"
  out=$(prov_as_root podman --remote --url "unix://$sock" version --format '{{.Server.Version}}' 2>&1) \
    || { echo "no podman API answer on $sock: $(printf '%s\n' "$out" | tail -n 1)"; exit 1; }
fi
