# Stops this instance and deletes its data directory and its folder (and the server's and
# workspace's folders when that leaves them empty); purges mariadb-server only if this instance
# installed it and no other instance on the host remains.
[ -d "$PROV_DIR" ] || exit 0
prov_stop
if [ -f "$PROV_DIR/datadir" ]; then
  data=$(cat "$PROV_DIR/datadir")
  case $data in /var/lib/provisioning/mariadb-*) rm -rf "$data" ;; esac
fi
prov_apt_remove
rm -rf "$PROV_DIR"
rmdir "${PROV_DIR%/*}" "${PROV_DIR%/*/*}" 2>/dev/null || true
