# postgres is healthy when pg_isready on its address and port says it accepts connections.
[ -f "$PROV_DIR/postgres.args" ] || { echo "postgres is not installed for $PROV_WORKSPACE/$PROV_SERVER"; exit 2; }
port=$(sed -n 's/^-p \([0-9]*\) .*/\1/p' "$PROV_DIR/postgres.args")
addr=$(sed -n 's/.*listen_addresses=\(.*\)$/\1/p' "$PROV_DIR/postgres.args")
[ "$addr" = '*' ] || [ "$addr" = 0.0.0.0 ] && addr=127.0.0.1
out=$(pg_isready -h "$addr" -p "$port" -t 3 2>&1) || { echo "postgres on $addr:$port: $out"; exit 1; }
