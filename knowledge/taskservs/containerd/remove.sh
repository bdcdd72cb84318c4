# Stops this instance's daemon and deletes its directory with its images, snapshots and
# containers (and the server's and workspace's folders when that leaves them empty); purges
# containerd only if this instance installed it and no other instance on the host remains.
[ -d "$PROV_DIR" ] || exit 0
# Containers outlive a stopped daemon (their shims keep running): kill and delete every task of
# every namespace first.
sock="$PROV_DIR/containerd.sock"
if prov_running && [ -S "$sock" ]; then
  for ns in $(prov_as_root ctr --address "$sock" --timeout 10s namespaces ls -q 2>/dev/null || true); do
    for id in $(prov_as_root ctr --address "$sock" --timeout 10s -n "$ns" tasks ls -q 2>/dev/null || true); do
      prov_as_root ctr --address "$sock" --timeout 20s -n "$ns" tasks delete -f "$id" >&2 || true
    done
  done
fi
prov_stop
# Mounts left by containers of this instance (snapshots, shm) would keep rm -rf from finishing.
if [ -r /proc/mounts ]; then
  awk -v d="$PROV_DIR/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    prov_as_root umount -l "$m" >&2 || true
  done
fi
prov_apt_remove
prov_as_root rm -rf "$PROV_DIR"
rmdir "${PROV_DIR%/*}" "${PROV_DIR%/*/*}" 2>/dev/null || true
