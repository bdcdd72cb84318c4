# postgres: a cluster of its own (initdb) run by the OS package's binaries. As root the cluster
# lives in /var/lib/provisioning/postgres-<id> owned by `postgres` (postgres refuses to run as
# root, and PROV_DIR may sit in a home the `postgres` account cannot enter), named in
# PROV_DIR/datadir; otherwise in PROV_DIR/data as the SSH account. The superuser's password is
# generated on the host (PROV_DIR/password, 0600) once and reported as a secret (prov_secret):
# the provider keeps it, state records only a reference, and a taskserv whose config names
# `{{SERVER/postgres.password}}` (pgbouncer, an app) is given the value.
prov_require_os debian-12 ubuntu-24
mkdir -p "$PROV_DIR"
prov_apt_install postgresql
prov_check_version postgresql
bindir="/usr/lib/postgresql/$PROV_VERSION/bin"
[ -x "$bindir/postgres" ] || prov_unsupported "no postgres $PROV_VERSION binaries in $bindir"
port=${PROV_CFG_PORT:-5432}
case $port in ''|*[!0-9]*) prov_fail "config port must be a number, got '$port'" ;; esac
# Server settings the config may give (as the local provider's postgres takes them).
settings=""
if [ -n "${PROV_CFG_MAX_CONNECTIONS:-}" ]; then
  case $PROV_CFG_MAX_CONNECTIONS in *[!0-9]*) prov_fail "config max_connections must be a number, got '$PROV_CFG_MAX_CONNECTIONS'" ;; esac
  settings="$settings -c max_connections=$PROV_CFG_MAX_CONNECTIONS"
fi
if [ -n "${PROV_CFG_SHARED_BUFFERS:-}" ]; then
  case $PROV_CFG_SHARED_BUFFERS in
    *[!0-9kMGTB]*|[!0-9]*) prov_fail "config shared_buffers must be a size such as 128MB or 2GB, got '$PROV_CFG_SHARED_BUFFERS'" ;;
  esac
  settings="$settings -c shared_buffers=$PROV_CFG_SHARED_BUFFERS"
fi
if [ "$(id -u)" -eq 0 ]; then
  export PROV_RUN_USER=postgres
  id=$(printf '%s' "$PROV_DIR" | sha256sum | cut -c1-16)
  data="/var/lib/provisioning/postgres-$id"
  mkdir -p /var/lib/provisioning
  printf '%s\n' "$data" > "$PROV_DIR/datadir"
  as_db() { runuser -u postgres -- "$@"; }
else
  data="$PROV_DIR/data"
  as_db() { "$@"; }
fi
if [ ! -f "$PROV_DIR/password" ]; then
  (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$PROV_DIR/password")
fi
if [ ! -f "$data/PG_VERSION" ]; then
  rm -rf "$data"
  mkdir -p "$data"
  [ -n "${PROV_RUN_USER:-}" ] && chown "$PROV_RUN_USER" "$data"
  chmod 700 "$data"
  pwfile="$data.pw"
  (umask 077; cp "$PROV_DIR/password" "$pwfile")
  [ -n "${PROV_RUN_USER:-}" ] && chown "$PROV_RUN_USER" "$pwfile"
  as_db "$bindir/initdb" -D "$data" -U postgres --pwfile="$pwfile" -A scram-sha-256 --auth-local=trust >&2
  rm -f "$pwfile"
fi
conf="$PROV_DIR/postgres.args"
printf '%s\n' "-p $port -k $data$settings -c listen_addresses=$PROV_BIND" > "$conf.new"
if [ -f "$conf" ] && cmp -s "$conf" "$conf.new"; then rm -f "$conf.new"; else mv "$conf.new" "$conf"; prov_stop; fi
# $settings holds only checked words (digits, sizes): split on purpose.
# shellcheck disable=SC2086
prov_start "$bindir/postgres" -D "$data" -p "$port" -k "$data" -c "listen_addresses=$PROV_BIND" $settings
prov_wait_healthy 60
prov_output address "$PROV_BIND"
prov_output port "$port"
prov_secret password "$(cat "$PROV_DIR/password")"
