# haproxy: the OS package's haproxy, run in the foreground (-db) as this instance's own service
# with its own haproxy.cfg in PROV_DIR: one HTTP frontend on PROV_BIND and config `port` (default
# 80), balancing round-robin over config `backends` ("host:port,host:port", each health-checked).
# No backends: the frontend answers 503. Idempotent: a running instance with the same config is
# left alone; a changed config is checked with `haproxy -c` first, then restarts it.
prov_require_os debian-12 ubuntu-24
prov_check_version haproxy
port=${PROV_CFG_PORT:-80}
case $port in ''|*[!0-9]*|0*|??????*) prov_fail "config port must be a number 1-65535, got '$port'" ;; esac
[ "$port" -le 65535 ] || prov_fail "config port must be a number 1-65535, got '$port'"
servers=""
n=0
list=$(printf '%s\n' "${PROV_CFG_BACKENDS:-}" | tr ',' ' ')
set -f
for b in $list; do
  bport=${b##*:}
  bhost=${b%:*}
  case $bport in ''|*[!0-9]*|0*|??????*) prov_fail "config backends: '$b' is not host:port" ;; esac
  case $bhost in ''|*[!]A-Za-z0-9.:_[-]*|"$b") prov_fail "config backends: '$b' is not host:port" ;; esac
  n=$((n + 1))
  servers="$servers    server backend$n $bhost:$bport check
"
done
set +f
case $PROV_BIND in *:*) listen="[$PROV_BIND]:$port" ;; *) listen="$PROV_BIND:$port" ;; esac

mkdir -p "$PROV_DIR"
prov_apt_install haproxy

# haproxy is in /usr/sbin, which an SSH account other than root may not have on its PATH.
haproxy=$(command -v haproxy || true)
[ -n "$haproxy" ] || haproxy=/usr/sbin/haproxy
[ -x "$haproxy" ] || prov_fail "the haproxy package is installed but $haproxy is not"
conf="$PROV_DIR/haproxy.cfg"
{
  printf '# haproxy for %s/%s, written by the provisioning haproxy taskserv: edits are replaced.\n' "$PROV_WORKSPACE" "$PROV_SERVER"
  printf 'global\n    log stdout format raw local0 notice\n    maxconn 4096\n'
  # Started as root (systemd unit, or root over SSH): drop to the package's user once bound.
  if id haproxy >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || prov_has_systemd; }; then
    printf '    user haproxy\n    group haproxy\n'
  fi
  printf '\ndefaults\n    mode http\n    log global\n    option dontlognull\n'
  printf '    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n'
  # health.sh asks haproxy itself at the monitor URI: 200 without reaching any backend.
  printf '\nfrontend main\n    bind %s\n    monitor-uri /.provisioning-health\n    default_backend app\n' "$listen"
  # A backend name that does not resolve yet disables that server instead of failing the start.
  printf '\nbackend app\n    balance roundrobin\n    default-server init-addr libc,none\n%s' "$servers"
} > "$conf.new"
if [ -f "$conf" ] && cmp -s "$conf" "$conf.new"; then
  rm -f "$conf.new"
else
  out=$("$haproxy" -c -f "$conf.new" 2>&1) || { rm -f "$conf.new"; prov_fail "haproxy rejects the generated config: $out"; }
  mv "$conf.new" "$conf"
  prov_stop
fi
prov_start "$haproxy" -db -f "$conf"
prov_wait_healthy 30
prov_output address "$PROV_BIND"
prov_output port "$port"
