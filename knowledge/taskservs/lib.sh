# Shared functions of the taskserv scripts. The SSH runner sends, in one `sh -s` over one SSH
# connection: `set -eu`, the PROV_* variables below, this file, the taskserv's health.sh (as the
# function `prov_health`) and the script to run (install.sh, health.sh or remove.sh).
#
# Variables set by the runner (values are data, single-quoted by the runner):
#   PROV_TASKSERV   taskserv name (redis)
#   PROV_VERSION    version asked for (a version the catalog lists)
#   PROV_WORKSPACE  workspace of the config
#   PROV_SERVER     server name in the config
#   PROV_DIR        this taskserv's own directory on the host (config, data, pid, log):
#                   <host root>/<workspace>/<server>/<taskserv>; several "hosts" on one machine,
#                   and several workspaces on one host, never share one
#   PROV_CFG_<KEY>  each `config` entry of the taskserv, KEY upper-cased, `-` and `.` as `_`
#   PROV_BIND       address to listen on (config `bind`, default 127.0.0.1)
#   PROV_RUN_USER   (set by a script, optional) the account prov_start runs the service as
#
# Exit codes: 0 done; 3 not supported here (this OS, this version): the step fails at once with
# the message; 75 transient (retried); anything else a failure (the step fails with the output).
# health.sh: 0 healthy, 2 not installed, anything else unhealthy (last line says why).
# A line `PROV_OUTPUT key=value` on standard output is a fact recorded for the taskserv (its
# address, its port) and handed to the taskservs that depend on it. A line `PROV_SECRET
# key=value` (prov_secret) is a generated credential: the provider keeps the value as a secret
# (never in state, logs or the workflow's output) and records the fact as a reference to it; a
# taskserv whose config names the fact gets the value.

prov_say() { printf '%s\n' "provisioning: $*" >&2; }
prov_fail() { prov_say "$*"; exit 1; }
prov_unsupported() { prov_say "$*"; exit 3; }
prov_output() { printf 'PROV_OUTPUT %s=%s\n' "$1" "$2"; }
prov_secret() { printf 'PROV_SECRET %s=%s\n' "$1" "$2"; }

# The OS as ID-MAJOR (debian-12, ubuntu-24), from /etc/os-release.
prov_os() {
  [ -r /etc/os-release ] || { echo unknown; return; }
  # shellcheck disable=SC1091
  ( . /etc/os-release; printf '%s-%s\n' "${ID:-unknown}" "${VERSION_ID%%.*}" )
}

# prov_require_os OS...: exit 3 unless this host is one of them.
prov_require_os() {
  os=$(prov_os)
  for want in "$@"; do [ "$os" = "$want" ] && return 0; done
  prov_unsupported "$PROV_TASKSERV is not supported on $os (supported: $*)"
}

prov_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
  else prov_fail "installing needs root or password-less sudo for: $*"
  fi
}

prov_pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Upstream version of a package (installed, else the candidate): epoch and Debian revision cut.
prov_pkg_version() {
  v=$(dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true)
  if ! prov_pkg_installed "$1"; then
    v=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p')
  fi
  v=${v#*:}
  printf '%s\n' "${v%%[-+~]*}"
}

# prov_check_version PKG: the package's upstream version must be PROV_VERSION or start with
# "PROV_VERSION." (7.0 matches 7.0.15); versions are pinned by what the OS packages.
prov_check_version() {
  have=$(prov_pkg_version "$1")
  if [ -z "$have" ] || [ "$have" = "(none)" ]; then
    prov_unsupported "package $1 is not available on $(prov_os)"
  fi
  case "$have" in
    "$PROV_VERSION"|"$PROV_VERSION".*) return 0 ;;
  esac
  prov_unsupported "$PROV_TASKSERV $PROV_VERSION is not what $(prov_os) packages ($1 $have); use version ${have%.*}"
}

# prov_apt_install PKG...: installs what is missing, recording what this taskserv installed
# (remove.sh purges only those, and only when no other instance on the host uses them). The
# packages' own services are not started (a policy-rc.d that says no, for the install) and, on
# systemd hosts, not enabled: this instance runs its own, and the distribution's would take its
# default port. Package lists are fetched first when a package has no candidate (a fresh image).
prov_apt_install() {
  missing=""
  for p in "$@"; do prov_pkg_installed "$p" || missing="$missing $p"; done
  [ -z "$missing" ] && return 0
  command -v apt-get >/dev/null 2>&1 || prov_unsupported "no apt-get on $(prov_os)"
  for p in $missing; do
    if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      prov_as_root apt-get update -q >&2 || { prov_say "apt-get update failed"; exit 75; }
      break
    fi
  done
  denied=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > "$PROV_DIR/policy-rc.d"
    chmod 755 "$PROV_DIR/policy-rc.d"
    prov_as_root cp "$PROV_DIR/policy-rc.d" /usr/sbin/policy-rc.d && denied=yes
  fi
  failed=""
  # shellcheck disable=SC2086 # a list of package names
  if ! prov_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2; then
    failed=yes
  fi
  [ -n "$denied" ] && prov_as_root rm -f /usr/sbin/policy-rc.d
  rm -f "$PROV_DIR/policy-rc.d"
  if [ -n "$failed" ]; then prov_say "apt-get install failed for:$missing"; exit 75; fi
  for p in $missing; do
    printf '%s\n' "$p" >> "$PROV_DIR/installed-packages"
    if prov_has_systemd; then
      for unit in $(dpkg -L "$p" 2>/dev/null | sed -n 's|.*/systemd/system/\([^/]*\.service\)$|\1|p'); do
        prov_as_root systemctl disable --now "$unit" >&2 2>/dev/null || true
      done
    else
      for script in $(dpkg -L "$p" 2>/dev/null | sed -n 's|^/etc/init.d/\([^/]*\)$|\1|p'); do
        prov_as_root "/etc/init.d/$script" stop >&2 2>/dev/null || true
        prov_as_root update-rc.d "$script" disable >/dev/null 2>&1 || true
      done
    fi
  done
}

# prov_apt_remove: purges the packages this instance installed when no other instance of the
# same taskserv remains on the host.
prov_apt_remove() {
  [ -f "$PROV_DIR/installed-packages" ] || return 0
  others=$(find "$(dirname "$(dirname "$(dirname "$PROV_DIR")")")" -mindepth 3 -maxdepth 3 -type d -name "$PROV_TASKSERV" 2>/dev/null | grep -vx "$PROV_DIR" || true)
  [ -n "$others" ] && return 0
  pkgs=$(tr '\n' ' ' < "$PROV_DIR/installed-packages")
  # shellcheck disable=SC2086 # a list of package names
  prov_as_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $pkgs >&2 || true
}

prov_has_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# One name per instance: several workspaces and servers on a host never share a unit.
prov_unit() { printf 'prov-%s-%s-%s\n' "$PROV_WORKSPACE" "$PROV_SERVER" "$PROV_TASKSERV"; }

# prov_start CMD ARGS...: runs CMD in the foreground as this instance's service: a systemd unit
# where the host has systemd (restarted on failure, started at boot), else start-stop-daemon
# with a pid file in PROV_DIR (containers, machines without systemd). A no-op when running.
prov_start() {
  prov_running && return 0
  if prov_has_systemd; then
    unit=$(prov_unit)
    {
      printf '[Unit]\nDescription=%s for %s/%s (provisioning)\nAfter=network.target\n\n' "$PROV_TASKSERV" "$PROV_WORKSPACE" "$PROV_SERVER"
      # Each argument quoted for systemd: `\`, `"`, `%` and `$` mean something in ExecStart.
      exec_start=""
      for a in "$@"; do
        q=$(printf '%s' "$a" | sed 's/\\/\\\\/g; s/"/\\"/g; s/%/%%/g; s/\$/$$/g')
        exec_start="$exec_start \"$q\""
      done
      # Another account may not enter PROV_DIR (a 0700 home): it starts in / instead.
      workdir=$PROV_DIR
      [ -n "${PROV_RUN_USER:-}" ] && workdir=/
      printf '[Service]\nWorkingDirectory=%s\nExecStart=%s\nRestart=on-failure\n' "$workdir" "${exec_start# }"
      [ -n "${PROV_RUN_USER:-}" ] && printf 'User=%s\n' "$PROV_RUN_USER"
      printf '\n[Install]\nWantedBy=multi-user.target\n'
    } > "$PROV_DIR/$unit.service"
    prov_as_root cp "$PROV_DIR/$unit.service" "/etc/systemd/system/$unit.service"
    prov_as_root systemctl daemon-reload
    prov_as_root systemctl enable --now "$unit.service" >&2
  else
    cmd=$1
    shift
    command -v start-stop-daemon >/dev/null 2>&1 || prov_unsupported "neither systemd nor start-stop-daemon on $(prov_os)"
    user_opt=""
    [ -n "${PROV_RUN_USER:-}" ] && user_opt="--chuid $PROV_RUN_USER"
    # shellcheck disable=SC2086
    start-stop-daemon --start --background --make-pidfile --pidfile "$PROV_DIR/run.pid" \
      --chdir "$PROV_DIR" --output "$PROV_DIR/service.log" $user_opt --exec "$cmd" -- "$@" >&2
  fi
  date -u +%Y-%m-%dT%H:%M:%SZ >> "$PROV_DIR/starts"
}

prov_running() {
  if prov_has_systemd && [ -f "/etc/systemd/system/$(prov_unit).service" ]; then
    systemctl is-active --quiet "$(prov_unit).service"
  else
    [ -f "$PROV_DIR/run.pid" ] || return 1
    start-stop-daemon --status --pidfile "$PROV_DIR/run.pid" >/dev/null 2>&1 || return 1
    # A process that died but was not reaped yet does not count.
    state=$(sed 's/.*) \(.\).*/\1/' "/proc/$(cat "$PROV_DIR/run.pid")/stat" 2>/dev/null || echo X)
    [ "$state" != Z ] && [ "$state" != X ]
  fi
}

prov_stop() {
  if prov_has_systemd && [ -f "/etc/systemd/system/$(prov_unit).service" ]; then
    prov_as_root systemctl disable --now "$(prov_unit).service" >&2 || true
    prov_as_root rm -f "/etc/systemd/system/$(prov_unit).service"
    prov_as_root systemctl daemon-reload
  elif [ -f "$PROV_DIR/run.pid" ]; then
    start-stop-daemon --stop --pidfile "$PROV_DIR/run.pid" --retry TERM/10/KILL/5 --oknodo --remove-pidfile >&2 || true
  fi
}

# prov_wait_healthy SECONDS: polls prov_health until it passes; fails with its last words.
prov_wait_healthy() {
  n=$(( $1 * 5 ))
  while [ "$n" -gt 0 ]; do
    if why=$(prov_health 2>&1); then return 0; fi
    sleep 0.2
    n=$((n - 1))
  done
  [ -f "$PROV_DIR/service.log" ] && tail -n 20 "$PROV_DIR/service.log" >&2
  prov_fail "$PROV_TASKSERV did not become healthy within $1 s: $why"
}
