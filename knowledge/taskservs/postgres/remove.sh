# Stops this instance, deletes its cluster and its folder; purges postgresql only if this
# instance installed it and no other instance on the host remains.
[ -d "$PROV_DIR" ] || exit 0
prov_stop
if [ -f "$PROV_DIR/datadir" ]; then
  data=$(cat "$PROV_DIR/datadir")
  case $data in /var/lib/provisioning/postgres-*) rm -rf "$data" ;; esac
fi
prov_apt_remove
rm -rf "$PROV_DIR"
