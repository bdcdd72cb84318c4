# nginx: the OS package's binary with this instance's own nginx.conf in PROV_DIR. Without
# `upstream` it answers every path with a line naming the server; with `upstream` (host:port,
# several separated by commas) it proxies to them. /provisioning-health always answers "ok".
# Idempotent: the same config leaves a running instance alone; a changed one reloads it.
prov_require_os debian-12 ubuntu-24
mkdir -p "$PROV_DIR/logs" "$PROV_DIR/tmp"
prov_apt_install nginx curl
prov_check_version nginx
port=${PROV_CFG_PORT:-80}
case $port in ''|*[!0-9]*) prov_fail "config port must be a number, got '$port'" ;; esac
upstream=${PROV_CFG_UPSTREAM:-}
conf="$PROV_DIR/nginx.conf"
{
  printf 'daemon off;\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/logs/error.log;\n' "$PROV_DIR" "$PROV_DIR"
  printf 'events { worker_connections 256; }\nhttp {\n'
  printf '  access_log %s/logs/access.log;\n' "$PROV_DIR"
  for t in client_body proxy fastcgi uwsgi scgi; do printf '  %s_temp_path %s/tmp/%s;\n' "$t" "$PROV_DIR" "$t"; done
  if [ -n "$upstream" ]; then
    printf '  upstream backends {\n'
    old_ifs=$IFS; IFS=,
    for b in $upstream; do
      case $b in *[!A-Za-z0-9.:_-]*|'') prov_fail "config upstream: '$b' is not host:port" ;; esac
      printf '    server %s;\n' "$b"
    done
    IFS=$old_ifs
    printf '  }\n'
  fi
  printf '  server {\n    listen %s:%s;\n' "$PROV_BIND" "$port"
  printf '    location = /provisioning-health { default_type text/plain; return 200 "ok\\n"; }\n'
  if [ -n "$upstream" ]; then
    printf '    location / { proxy_pass http://backends; }\n'
  else
    printf '    location / { default_type text/plain; return 200 "nginx for %s/%s\\n"; }\n' "$PROV_WORKSPACE" "$PROV_SERVER"
  fi
  printf '  }\n}\n'
} > "$conf.new"
nginx -t -q -c "$conf.new" -p "$PROV_DIR" >&2 || prov_fail "the generated nginx.conf does not pass nginx -t"
if [ -f "$conf" ] && cmp -s "$conf" "$conf.new"; then
  rm -f "$conf.new"
else
  mv "$conf.new" "$conf"
  if prov_running; then nginx -s reload -c "$conf" -p "$PROV_DIR" >&2 || prov_stop; fi
fi
prov_start "$(command -v nginx)" -c "$conf" -p "$PROV_DIR"
prov_wait_healthy 30
prov_output address "$PROV_BIND"
prov_output port "$port"
