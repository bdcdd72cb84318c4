# etcd: the OS package's etcd-server, run as this instance's own member with its own etcd.yml and
# data directory in PROV_DIR. It listens on PROV_BIND, clients on config `client-port` (2379) and
# peers on `peer-port` (2380), and advertises config `advertise` (default: the bind address, or
# the host's first address when bound to all). A single-member cluster unless config
# `initial-cluster` ("name=http://host:2380,...", this server's name included) names the others.
# Idempotent: a running member with the same config is left alone; a changed config restarts it
# (a member that already has data keeps its cluster: initial-* settings apply only the first time).
prov_require_os debian-12
prov_check_version etcd-server
client=${PROV_CFG_CLIENT_PORT:-2379}
peer=${PROV_CFG_PEER_PORT:-2380}
for p in "$client" "$peer"; do
  case $p in ''|*[!0-9]*|0*|??????*) prov_fail "config client-port and peer-port must be numbers 1-65535, got '$p'" ;; esac
  [ "$p" -le 65535 ] || prov_fail "config client-port and peer-port must be numbers 1-65535, got '$p'"
done
[ "$client" != "$peer" ] || prov_fail "config client-port and peer-port must differ (both $client)"
adv=${PROV_CFG_ADVERTISE:-$PROV_BIND}
case $adv in
  0.0.0.0|::|'') adv=$(hostname -I 2>/dev/null | awk '{ print $1 }')
    [ -n "$adv" ] || prov_fail "cannot tell which address to advertise: set config advertise" ;;
esac
case $adv in *[!A-Za-z0-9.:_-]*) prov_fail "config advertise: '$adv' is not a host name or address" ;; esac
url() { case $1 in *:*) printf 'http://[%s]:%s' "$1" "$2" ;; *) printf 'http://%s:%s' "$1" "$2" ;; esac; }
name=$PROV_SERVER
cluster=${PROV_CFG_INITIAL_CLUSTER:-$name=$(url "$adv" "$peer")}
case ",$cluster" in *",$name=http"*) ;; *) prov_fail "config initial-cluster must name this member ($name=http://...), got '$cluster'" ;; esac
case $cluster in *[!]A-Za-z0-9.:/_=,[-]*) prov_fail "config initial-cluster: '$cluster' is not name=url,name=url" ;; esac
case $(uname -m) in
  x86_64|ppc64le) arch_env="" ;;
  # etcd 3.4 runs on arm64 only when told so (upstream qualified arm64 in 3.5).
  aarch64) arch_env=arm64 ;;
  *) prov_unsupported "etcd $PROV_VERSION runs on amd64, ppc64le and arm64, not $(uname -m)" ;;
esac

mkdir -p "$PROV_DIR/data"
chmod 700 "$PROV_DIR/data"
prov_apt_install etcd-server etcd-client

conf="$PROV_DIR/etcd.yml"
{
  printf '# etcd for %s/%s, written by the provisioning etcd taskserv: edits are replaced.\n' "$PROV_WORKSPACE" "$PROV_SERVER"
  printf 'name: %s\ndata-dir: %s/data\n' "$name" "$PROV_DIR"
  printf 'listen-client-urls: %s\nadvertise-client-urls: %s\n' "$(url "$PROV_BIND" "$client")" "$(url "$adv" "$client")"
  printf 'listen-peer-urls: %s\ninitial-advertise-peer-urls: %s\n' "$(url "$PROV_BIND" "$peer")" "$(url "$adv" "$peer")"
  printf 'initial-cluster: %s\ninitial-cluster-state: new\n' "$cluster"
  printf 'initial-cluster-token: %s-%s\n' "$PROV_WORKSPACE" "$PROV_SERVER"
} > "$conf.new"
if [ -f "$conf" ] && cmp -s "$conf" "$conf.new"; then
  rm -f "$conf.new"
else
  mv "$conf.new" "$conf"
  prov_stop
fi
etcd=$(command -v etcd) || prov_fail "etcd-server is installed but no etcd is on PATH"
if [ -n "$arch_env" ]; then
  prov_start "$(command -v env)" "ETCD_UNSUPPORTED_ARCH=$arch_env" "$etcd" --config-file "$conf"
else
  prov_start "$etcd" --config-file "$conf"
fi
prov_wait_healthy 60
prov_output address "$adv"
prov_output port "$client"
prov_output peer_port "$peer"
prov_output endpoint "$(url "$adv" "$client")"
