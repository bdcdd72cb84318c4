# Stops this member and deletes its directory with its data (and the server's and workspace's
# folders when that leaves them empty); purges etcd-server and etcd-client only if this instance
# installed them and no other instance on the host remains. In a cluster of several members,
# remove the member from the cluster first (`etcdctl member remove`).
[ -d "$PROV_DIR" ] || exit 0
prov_stop
prov_apt_remove
rm -rf "$PROV_DIR"
rmdir "${PROV_DIR%/*}" "${PROV_DIR%/*/*}" 2>/dev/null || true
