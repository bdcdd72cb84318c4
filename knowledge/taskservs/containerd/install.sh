# containerd: the OS package's containerd, a host-wide container runtime (the package and its
# runc serve the whole host), run as this instance's own daemon with its own config.toml, root
# (images, snapshots), state and gRPC socket in PROV_DIR, so it never shares them with the
# distribution's containerd.service or another instance. config `cri` (default true) keeps the
# Kubernetes CRI plugin; `systemd-cgroup` (default: true where the host runs systemd) makes runc
# use systemd cgroups, as the kubelet expects there. Needs root. Idempotent: a running instance
# with the same config is left alone; a changed config restarts it.
prov_require_os debian-12
prov_check_version containerd
cri=${PROV_CFG_CRI:-true}
case $cri in true|false) ;; *) prov_fail "config cri must be true or false, got '$cri'" ;; esac
if prov_has_systemd; then sdcg=${PROV_CFG_SYSTEMD_CGROUP:-true}; else sdcg=${PROV_CFG_SYSTEMD_CGROUP:-false}; fi
case $sdcg in true|false) ;; *) prov_fail "config systemd-cgroup must be true or false, got '$sdcg'" ;; esac
sock="$PROV_DIR/containerd.sock"
# A unix socket path holds at most 107 bytes (and ".ttrpc" is appended to this one).
[ "${#sock}" -le 100 ] || prov_unsupported "the socket path $sock is too long for a unix socket: use a shorter host root"

# Without systemd the daemon runs as the SSH account (start-stop-daemon), and containerd needs root.
if [ "$(id -u)" -ne 0 ] && ! prov_has_systemd; then
  prov_unsupported "containerd needs root: on a host without systemd, connect as root"
fi

mkdir -p "$PROV_DIR"
prov_apt_install containerd

conf="$PROV_DIR/config.toml"
{
  printf '# containerd for %s/%s, written by the provisioning containerd taskserv: edits are replaced.\n' "$PROV_WORKSPACE" "$PROV_SERVER"
  printf 'version = 2\nroot = "%s/root"\nstate = "%s/state"\n' "$PROV_DIR" "$PROV_DIR"
  [ "$cri" = false ] && printf 'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
  printf '\n[grpc]\n  address = "%s"\n\n[ttrpc]\n  address = "%s.ttrpc"\n' "$sock" "$sock"
  printf '\n[plugins]\n  [plugins."io.containerd.internal.v1.opt"]\n    path = "%s/opt"\n' "$PROV_DIR"
  if [ "$cri" = true ]; then
    printf '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n    runtime_type = "io.containerd.runc.v2"\n'
    printf '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n    SystemdCgroup = %s\n' "$sdcg"
  fi
} > "$conf.new"
if [ -f "$conf" ] && cmp -s "$conf" "$conf.new"; then
  rm -f "$conf.new"
else
  mv "$conf.new" "$conf"
  prov_stop
fi
prov_start "$(command -v containerd)" --config "$conf"
prov_wait_healthy 60
prov_output socket "$sock"
