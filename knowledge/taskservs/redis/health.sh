# redis is healthy when PING on its address and port answers PONG.
conf="$PROV_DIR/redis.conf"
[ -f "$conf" ] || { echo "redis is not installed for $PROV_WORKSPACE/$PROV_SERVER"; exit 2; }
port=$(sed -n 's/^port //p' "$conf")
bind=$(sed -n 's/^bind //p' "$conf")
[ "$bind" = 0.0.0.0 ] && bind=127.0.0.1
out=$(redis-cli -h "$bind" -p "$port" ping 2>&1) || { echo "no answer on $bind:$port: $out"; exit 1; }
[ "$out" = PONG ] || { echo "PING on $bind:$port answered: $out"; exit 1; }
