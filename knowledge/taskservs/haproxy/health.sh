# haproxy is healthy when its process runs and its frontend answers 200 at the monitor URI
# (answered by haproxy itself, whether or not any backend is up) on its address and port.
conf="$PROV_DIR/haproxy.cfg"
[ -f "$conf" ] || { echo "haproxy is not installed for $PROV_WORKSPACE/$PROV_SERVER"; exit 2; }
prov_running || { echo "haproxy is not running (see $PROV_DIR/service.log)"; exit 1; }
listen=$(sed -n 's/^ *bind //p' "$conf")
port=${listen##*:}
host=${listen%:*}
case $host in 0.0.0.0|'*'|'') host=127.0.0.1 ;; '[::]') host='[::1]' ;; esac
url="http://$host:$port/.provisioning-health"
if command -v curl >/dev/null 2>&1; then
  code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$url" 2>/dev/null || true)
  [ "$code" = 200 ] || { echo "no haproxy answer on $host:$port (HTTP ${code:-000})"; exit 1; }
elif command -v wget >/dev/null 2>&1; then
  wget -q -O /dev/null -T 5 -t 1 "$url" 2>/dev/null || { echo "no haproxy answer on $host:$port"; exit 1; }
else
  echo "cannot check haproxy on $host:$port: neither curl nor wget is installed (apt-get install curl)"
  exit 1
fi
