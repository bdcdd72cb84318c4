# nginx is healthy when /provisioning-health on its address and port answers "ok".
conf="$PROV_DIR/nginx.conf"
[ -f "$conf" ] || { echo "nginx is not installed for $PROV_WORKSPACE/$PROV_SERVER"; exit 2; }
listen=$(sed -n 's/^ *listen \(.*\);$/\1/p' "$conf" | head -n 1)
addr=${listen%:*}
port=${listen##*:}
[ "$addr" = 0.0.0.0 ] && addr=127.0.0.1
out=$(curl -fsS --max-time 3 "http://$addr:$port/provisioning-health" 2>&1) || { echo "no answer on $addr:$port: $out"; exit 1; }
[ "$out" = ok ] || { echo "/provisioning-health on $addr:$port answered: $out"; exit 1; }
