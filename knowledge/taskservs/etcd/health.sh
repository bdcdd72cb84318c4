# etcd is healthy when `etcdctl endpoint health` on its client address and port commits a
# proposal (the member serves and has a quorum).
conf="$PROV_DIR/etcd.yml"
[ -f "$conf" ] || { echo "etcd is not installed for $PROV_WORKSPACE/$PROV_SERVER"; exit 2; }
endpoint=$(sed -n 's/^listen-client-urls: //p' "$conf")
case $endpoint in
  *//0.0.0.0:*) endpoint="http://127.0.0.1:${endpoint##*:}" ;;
  *//\[::\]:*) endpoint="http://[::1]:${endpoint##*:}" ;;
esac
command -v etcdctl >/dev/null 2>&1 || { echo "etcdctl is not on PATH (package etcd-client)"; exit 1; }
out=$(ETCDCTL_API=3 etcdctl --endpoints="$endpoint" --dial-timeout=3s --command-timeout=5s endpoint health 2>&1) \
  || { echo "etcd on $endpoint: $(printf '%s\n' "$out" | tail -n 1)"; exit 1; }
