# mariadb: the OS package's MariaDB server, run as this instance's own server with its own data
# directory (mariadb-install-db), socket and settings, none read from /etc/mysql (--no-defaults).
# It listens on PROV_BIND and config `port` (3306); config `max-connections` and
# `innodb-buffer-pool-size` (such as 256M) are passed on when set. As root the data directory is
# /var/lib/provisioning/mariadb-<id>, owned by `mysql` and named in PROV_DIR/datadir (PROV_DIR may
# sit in a home that account cannot enter), and the server drops to `mysql`; otherwise it is
# PROV_DIR/data and the server runs as the SSH account. The database account `root` (and, not as
# root, the SSH account) logs in only through the socket as the same system account: no password
# exists anywhere. Idempotent: a running server with the same settings is left alone; changed
# settings restart it; existing data is never initialised again.
prov_require_os debian-12 ubuntu-24
prov_check_version mariadb-server
port=${PROV_CFG_PORT:-3306}
case $port in ''|*[!0-9]*|0*|??????*) prov_fail "config port must be a number 1-65535, got '$port'" ;; esac
[ "$port" -le 65535 ] || prov_fail "config port must be a number 1-65535, got '$port'"
maxconn=${PROV_CFG_MAX_CONNECTIONS:-}
case $maxconn in *[!0-9]*) prov_fail "config max-connections must be a number, got '$maxconn'" ;; esac
pool=${PROV_CFG_INNODB_BUFFER_POOL_SIZE:-}
case $pool in ''|[0-9]|[0-9]*[0-9KMGkmg]) ;; *) prov_fail "config innodb-buffer-pool-size must be a size such as 256M, got '$pool'" ;; esac
case ${pool%[KMGkmg]} in *[!0-9]*) prov_fail "config innodb-buffer-pool-size must be a size such as 256M, got '$pool'" ;; esac

mkdir -p "$PROV_DIR"
prov_apt_install mariadb-server

server=""
for b in /usr/sbin/mariadbd /usr/sbin/mysqld; do [ -x "$b" ] && { server=$b; break; }; done
[ -n "$server" ] || prov_fail "mariadb-server is installed but neither /usr/sbin/mariadbd nor /usr/sbin/mysqld exists"
if [ "$(id -u)" -eq 0 ]; then
  id mysql >/dev/null 2>&1 || prov_fail "mariadb-server is installed but the mysql account is missing"
  id=$(printf '%s' "$PROV_DIR" | sha256sum | cut -c1-16)
  data="/var/lib/provisioning/mariadb-$id"
  mkdir -p /var/lib/provisioning
  printf '%s\n' "$data" > "$PROV_DIR/datadir"
  run_as="--user=mysql"
else
  data="$PROV_DIR/data"
  run_as=""
fi
sock="$data/mysqld.sock"
[ "${#sock}" -le 107 ] || prov_unsupported "the socket path $sock is too long for a unix socket: use a shorter host root"
if [ ! -d "$data/mysql" ]; then
  rm -rf "$data"
  mkdir -p "$data"
  chmod 700 "$data"
  if [ -n "$run_as" ]; then
    chown mysql:mysql "$data"
    mariadb-install-db --no-defaults --basedir=/usr --datadir="$data" --user=mysql \
      --auth-root-authentication-method=socket --skip-test-db --skip-name-resolve >&2
  else
    mariadb-install-db --no-defaults --basedir=/usr --datadir="$data" \
      --auth-root-authentication-method=socket --auth-root-socket-user="$(id -un)" \
      --skip-test-db --skip-name-resolve >&2
  fi
fi

set -- --no-defaults "--datadir=$data" "--socket=$sock" "--pid-file=$data/mysqld.pid" \
  "--port=$port" "--bind-address=$PROV_BIND" --skip-name-resolve
[ -n "$run_as" ] && set -- "$@" "$run_as"
[ -n "$maxconn" ] && set -- "$@" "--max-connections=$maxconn"
[ -n "$pool" ] && set -- "$@" "--innodb-buffer-pool-size=$pool"
args="$PROV_DIR/mariadb.args"
printf '%s\n' "$@" > "$args.new"
if [ -f "$args" ] && cmp -s "$args" "$args.new"; then
  rm -f "$args.new"
else
  mv "$args.new" "$args"
  prov_stop
fi
prov_start "$server" "$@"
prov_wait_healthy 90
prov_output address "$PROV_BIND"
prov_output port "$port"
prov_output socket "$sock"
