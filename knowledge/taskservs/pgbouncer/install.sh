# pgbouncer: the OS package's pgbouncer as this instance's own service, pooling connections to
# one postgres (config `db_address`, `db_port` default 5432, `db_user` default postgres,
# `db_password`), listening on PROV_BIND and config `port` (default 6432). Clients sign in as
# `db_user` with the same password (SCRAM); pgbouncer signs in to postgres with it. The password
# is written only to files of this instance readable by its account (0600), never to arguments.
# Run as `postgres` when installed as root (pgbouncer refuses to run as root).
prov_require_os debian-12 ubuntu-24
prov_check_version pgbouncer
port=${PROV_CFG_PORT:-6432}
case $port in ''|*[!0-9]*|0*|??????*) prov_fail "config port must be a number 1-65535, got '$port'" ;; esac
[ "$port" -le 65535 ] || prov_fail "config port must be a number 1-65535, got '$port'"
db_address=${PROV_CFG_DB_ADDRESS:-}
db_port=${PROV_CFG_DB_PORT:-5432}
db_user=${PROV_CFG_DB_USER:-postgres}
db_password=${PROV_CFG_DB_PASSWORD:-}
case $db_address in ''|*[!A-Za-z0-9.:_-]*) prov_fail "config db_address must be a host name or address, got '$db_address'" ;; esac
case $db_port in ''|*[!0-9]*|0*|??????*) prov_fail "config db_port must be a number 1-65535, got '$db_port'" ;; esac
case $db_user in ''|*[!a-z0-9_]*) prov_fail "config db_user must be lowercase letters, digits and _, got '$db_user'" ;; esac
[ -n "$db_password" ] || prov_fail "config db_password is empty (give the postgres taskserv's password fact, e.g. {{db/postgres.password}})"
case $db_password in *[\ \'\"\\]*) prov_fail "config db_password must not contain spaces, quotes or backslashes" ;; esac

mkdir -p "$PROV_DIR"
prov_apt_install pgbouncer postgresql-client
pgbouncer=$(command -v pgbouncer || true)
[ -n "$pgbouncer" ] || pgbouncer=/usr/sbin/pgbouncer
[ -x "$pgbouncer" ] || prov_fail "the pgbouncer package is installed but $pgbouncer is not"

if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || prov_fail "no postgres account to run pgbouncer as (the pgbouncer package should have made it)"
  export PROV_RUN_USER=postgres
  # The service's files live where that account can read them.
  id=$(printf '%s' "$PROV_DIR" | sha256sum | cut -c1-16)
  run="/var/lib/provisioning/pgbouncer-$id"
  mkdir -p "$run"
  chown postgres "$run"
  chmod 700 "$run"
  printf '%s\n' "$run" > "$PROV_DIR/datadir"
else
  run="$PROV_DIR"
fi
conf="$run/pgbouncer.ini"
(
  umask 077
  printf '"%s" "%s"\n' "$db_user" "$db_password" > "$run/userlist.txt.new"
  {
    printf '; pgbouncer for %s/%s, written by the provisioning pgbouncer taskserv: edits are replaced.\n' "$PROV_WORKSPACE" "$PROV_SERVER"
    printf '[databases]\n* = host=%s port=%s user=%s password=%s\n\n' "$db_address" "$db_port" "$db_user" "$db_password"
    printf '[pgbouncer]\nlisten_addr = %s\nlisten_port = %s\nunix_socket_dir = %s\n' "$PROV_BIND" "$port" "$run"
    printf 'auth_type = scram-sha-256\nauth_file = %s/userlist.txt\n' "$run"
    printf 'pool_mode = session\nmax_client_conn = 200\ndefault_pool_size = 20\n'
  } > "$conf.new"
)
[ -n "${PROV_RUN_USER:-}" ] && chown "$PROV_RUN_USER" "$conf.new" "$run/userlist.txt.new"
printf '%s\n' "$PROV_BIND $port" > "$PROV_DIR/listen"
if [ -f "$conf" ] && cmp -s "$conf" "$conf.new" && cmp -s "$run/userlist.txt" "$run/userlist.txt.new"; then
  rm -f "$conf.new" "$run/userlist.txt.new"
else
  mv "$run/userlist.txt.new" "$run/userlist.txt"
  mv "$conf.new" "$conf"
  prov_stop
fi
prov_start "$pgbouncer" "$conf"
prov_wait_healthy 30
prov_output address "$PROV_BIND"
prov_output port "$port"
