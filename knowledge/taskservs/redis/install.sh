# redis: the OS package's redis-server, run as this instance's own service with its own config
# and data in PROV_DIR. Idempotent: a running instance with the same config is left alone; a
# changed config restarts it.
prov_require_os debian-12 ubuntu-24
mkdir -p "$PROV_DIR"
prov_apt_install redis-server
prov_check_version redis-server
port=${PROV_CFG_PORT:-6379}
case $port in ''|*[!0-9]*) prov_fail "config port must be a number, got '$port'" ;; esac
conf="$PROV_DIR/redis.conf"
{
  printf 'bind %s\nport %s\ndir %s\ndaemonize no\nprotected-mode no\n' "$PROV_BIND" "$port" "$PROV_DIR"
  [ -n "${PROV_CFG_MAXMEMORY:-}" ] && printf 'maxmemory %s\n' "$PROV_CFG_MAXMEMORY"
  [ -n "${PROV_CFG_MAXMEMORY_POLICY:-}" ] && printf 'maxmemory-policy %s\n' "$PROV_CFG_MAXMEMORY_POLICY"
  [ -n "${PROV_CFG_APPENDONLY:-}" ] && printf 'appendonly %s\n' "$PROV_CFG_APPENDONLY"
  true
} > "$conf.new"
if [ -f "$conf" ] && cmp -s "$conf" "$conf.new"; then
  rm -f "$conf.new"
else
  mv "$conf.new" "$conf"
  prov_stop
fi
prov_start "$(command -v redis-server)" "$conf"
prov_wait_healthy 30
prov_output address "$PROV_BIND"
prov_output port "$port"
