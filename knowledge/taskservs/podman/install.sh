# podman: the OS package's podman, a host-wide, daemonless container engine: installing it serves
# every account on the host, and images and containers live in the host's usual storage, not in
# PROV_DIR. This instance records itself in PROV_DIR (podman.state); with config `api = true` it
# also runs `podman system service` as its own service, a Docker-compatible API on a socket in
# PROV_DIR. Idempotent: the same config leaves a running API service alone.
prov_require_os debian-12
prov_check_version podman
api=${PROV_CFG_API:-false}
case $api in true|false) ;; *) prov_fail "config api must be true or false, got '$api'" ;; esac
sock="$PROV_DIR/podman.sock"
[ "${#sock}" -le 107 ] || prov_unsupported "the socket path $sock is too long for a unix socket: use a shorter host root"

mkdir -p "$PROV_DIR"
prov_apt_install podman

state="$PROV_DIR/podman.state"
printf 'api=%s\n' "$api" > "$state.new"
if [ -f "$state" ] && cmp -s "$state" "$state.new"; then rm -f "$state.new"; else mv "$state.new" "$state"; prov_stop; fi
if [ "$api" = true ]; then
  prov_start "$(command -v podman)" system service --time=0 "unix://$sock"
fi
prov_wait_healthy 60
[ "$api" = true ] && prov_output socket "$sock"
true
