# Stops this instance and deletes its files (the password with them); purges pgbouncer and the
# postgres client only if this instance installed them and no other instance on the host remains.
[ -d "$PROV_DIR" ] || exit 0
prov_stop
if [ -f "$PROV_DIR/datadir" ]; then
  run=$(cat "$PROV_DIR/datadir")
  case $run in /var/lib/provisioning/pgbouncer-*) rm -rf "$run" ;; esac
fi
prov_apt_remove
rm -rf "$PROV_DIR"
rmdir "${PROV_DIR%/*}" "${PROV_DIR%/*/*}" 2>/dev/null || true
