# Stops this instance and deletes its folder; purges nginx only if this instance installed it
# and no other instance on the host remains.
[ -d "$PROV_DIR" ] || exit 0
prov_stop
prov_apt_remove
rm -rf "$PROV_DIR"
