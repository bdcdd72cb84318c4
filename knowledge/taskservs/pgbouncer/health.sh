# pgbouncer is healthy when a query through it reaches postgres: `select 1` as the configured
# user, with the password from this instance's own file (given to psql in its environment).
[ -f "$PROV_DIR/listen" ] || { echo "pgbouncer is not installed for $PROV_WORKSPACE/$PROV_SERVER"; exit 2; }
run=$PROV_DIR
[ -f "$PROV_DIR/datadir" ] && run=$(cat "$PROV_DIR/datadir")
read -r host port < "$PROV_DIR/listen"
case $host in 0.0.0.0|'*'|'') host=127.0.0.1 ;; '::') host=::1 ;; esac
prov_running || { echo "pgbouncer is not running (see $PROV_DIR/service.log)"; exit 1; }
user=$(sed -n 's/^"\([^"]*\)" ".*"$/\1/p' "$run/userlist.txt")
pass=$(sed -n 's/^"[^"]*" "\(.*\)"$/\1/p' "$run/userlist.txt")
out=$(PGPASSWORD=$pass PGCONNECT_TIMEOUT=5 psql -h "$host" -p "$port" -U "$user" -d postgres -tAc 'select 1' 2>&1) || {
  echo "no query through pgbouncer on $host:$port: $(printf '%s' "$out" | tail -n 1)"
  exit 1
}
[ "$out" = 1 ] || { echo "pgbouncer on $host:$port answered: $out"; exit 1; }
