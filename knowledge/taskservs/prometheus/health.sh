# prometheus is healthy when its /-/ready endpoint answers 200 on its address and port (the
# server has loaded its data and serves queries).
conf="$PROV_DIR/prometheus.yml"
[ -f "$conf" ] || { echo "prometheus is not installed for $PROV_WORKSPACE/$PROV_SERVER"; exit 2; }
listen=$(sed -n 's/^# listen: //p' "$conf")
port=${listen##*:}
host=${listen%:*}
case $host in 0.0.0.0) host=127.0.0.1 ;; '[::]') host='[::1]' ;; esac
url="http://$host:$port/-/ready"
if command -v curl >/dev/null 2>&1; then
  code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$url" 2>/dev/null || true)
  [ "$code" = 200 ] || { echo "prometheus on $host:$port is not ready (HTTP ${code:-000})"; exit 1; }
elif command -v wget >/dev/null 2>&1; then
  wget -q -O /dev/null -T 5 -t 1 "$url" 2>/dev/null || { echo "prometheus on $host:$port is not ready"; exit 1; }
else
  echo "cannot check prometheus on $host:$port: neither curl nor wget is installed (apt-get install curl)"
  exit 1
fi
