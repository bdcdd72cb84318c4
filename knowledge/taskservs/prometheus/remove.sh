# Stops this instance and deletes its directory with its data (and the server's and workspace's
# folders when that leaves them empty); purges prometheus only if this instance installed it and
# no other instance on the host remains.
[ -d "$PROV_DIR" ] || exit 0
prov_stop
prov_apt_remove
rm -rf "$PROV_DIR"
rmdir "${PROV_DIR%/*}" "${PROV_DIR%/*/*}" 2>/dev/null || true
