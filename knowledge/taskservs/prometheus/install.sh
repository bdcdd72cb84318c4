# prometheus: the OS package's prometheus, run as this instance's own server with its own
# prometheus.yml and data directory in PROV_DIR, listening on PROV_BIND and config `port` (9090).
# It scrapes itself and config `targets` ("host:port,host:port", job `targets`) every config
# `scrape-interval` (15s) and keeps config `retention` (15d) of data. The config is checked with
# promtool first. Idempotent: a running server with the same config is left alone; a changed
# config restarts it.
prov_require_os debian-12
prov_check_version prometheus
port=${PROV_CFG_PORT:-9090}
case $port in ''|*[!0-9]*|0*|??????*) prov_fail "config port must be a number 1-65535, got '$port'" ;; esac
[ "$port" -le 65535 ] || prov_fail "config port must be a number 1-65535, got '$port'"
interval=${PROV_CFG_SCRAPE_INTERVAL:-15s}
retention=${PROV_CFG_RETENTION:-15d}
for d in "$interval" "$retention"; do
  case $d in [0-9]*[smhdwy]) ;; *) prov_fail "config scrape-interval and retention are durations such as 15s or 30d, got '$d'" ;; esac
  case ${d%?} in *[!0-9]*) prov_fail "config scrape-interval and retention are durations such as 15s or 30d, got '$d'" ;; esac
done
targets=""
list=$(printf '%s\n' "${PROV_CFG_TARGETS:-}" | tr ',' ' ')
set -f
for t in $list; do
  case ${t##*:} in ''|*[!0-9]*) prov_fail "config targets: '$t' is not host:port" ;; esac
  case ${t%:*} in ''|*[!]A-Za-z0-9.:_[-]*|"$t") prov_fail "config targets: '$t' is not host:port" ;; esac
  targets="$targets${targets:+, }'$t'"
done
set +f
case $PROV_BIND in *:*) listen="[$PROV_BIND]:$port" ;; *) listen="$PROV_BIND:$port" ;; esac
case $PROV_BIND in 0.0.0.0) self="127.0.0.1:$port" ;; ::) self="[::1]:$port" ;; *) self=$listen ;; esac

mkdir -p "$PROV_DIR/data"
prov_apt_install prometheus

conf="$PROV_DIR/prometheus.yml"
{
  printf '# prometheus for %s/%s, written by the provisioning prometheus taskserv: edits are replaced.\n' "$PROV_WORKSPACE" "$PROV_SERVER"
  printf '# listen: %s\n# retention: %s\n' "$listen" "$retention"
  printf 'global:\n  scrape_interval: %s\n  external_labels:\n    workspace: "%s"\n    server: "%s"\n' "$interval" "$PROV_WORKSPACE" "$PROV_SERVER"
  printf 'scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: [%s]\n' "'$self'"
  [ -n "$targets" ] && printf '  - job_name: targets\n    static_configs:\n      - targets: [%s]\n' "$targets"
  true
} > "$conf.new"
out=$(promtool check config "$conf.new" 2>&1) || { rm -f "$conf.new"; prov_fail "promtool rejects the generated config: $out"; }
if [ -f "$conf" ] && cmp -s "$conf" "$conf.new"; then
  rm -f "$conf.new"
else
  mv "$conf.new" "$conf"
  prov_stop
fi
prov_start "$(command -v prometheus)" --config.file="$conf" --storage.tsdb.path="$PROV_DIR/data" \
  --storage.tsdb.retention.time="$retention" --web.listen-address="$listen"
prov_wait_healthy 60
prov_output address "$PROV_BIND"
prov_output port "$port"
