# mariadb is healthy when `mariadb-admin ping` over TCP on its address and port gets an answer
# from the server. A refused login is an answer too (the server runs and checks logins): over TCP
# nobody may log in without a password, so the answer is usually "Host ... is not allowed to
# connect" or "Access denied"; "Can't connect" or a timeout is not.
args="$PROV_DIR/mariadb.args"
[ -f "$args" ] || { echo "mariadb is not installed for $PROV_WORKSPACE/$PROV_SERVER"; exit 2; }
port=$(sed -n 's/^--port=//p' "$args")
addr=$(sed -n 's/^--bind-address=//p' "$args")
case $addr in 0.0.0.0|'*'|'') addr=127.0.0.1 ;; ::) addr=::1 ;; esac
admin=$(command -v mariadb-admin || command -v mysqladmin || true)
[ -n "$admin" ] || { echo "neither mariadb-admin nor mysqladmin is on PATH (package mariadb-client)"; exit 1; }
out=$("$admin" --no-defaults --protocol=tcp --host="$addr" --port="$port" --connect-timeout=3 ping 2>&1) || {
  case $out in
    *'is not allowed to connect'*|*'Access denied'*) ;;
    *) echo "mariadb on $addr:$port: $(printf '%s\n' "$out" | grep -v '^Check that' | tail -n 1)"; exit 1 ;;
  esac
}
