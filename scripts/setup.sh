#!/usr/bin/env bash
# Everything `make demo` and `make test` need, on a fresh Debian/Ubuntu machine that has
# only Python and git. Safe to run again: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev}

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
is_root() { [[ $(id -u) -eq 0 ]]; }

apt_ready=
apt_update() {
    if [[ -z $apt_ready ]]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        apt_ready=1
    fi
}
apt_install() {
    is_root || return 1
    command -v apt-get >/dev/null || return 1
    apt_update
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. A virtual environment. Debian splits `venv` into python3-venv.
if [[ ! -x $VENV/bin/python ]]; then
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        pyver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        apt_install "python${pyver}-venv" || apt_install python3-venv \
            || die "cannot create a virtual environment: install the Debian package python3-venv"
        "$PYTHON" -m venv "$VENV"
    fi
fi

# 2. The project and its tools, at the versions pinned in constraints.txt (the ones the
#    container image installs too; scripts/freeze-constraints.sh regenerates it). The bench
#    extra resolves against the same pins; its own packages (Evidently, pandas) are not in the
#    file and follow pyproject.toml's ranges. The stamp skips a reinstall when nothing changed.
stamp=$VENV/.installed-$EXTRAS
if [[ ! -f $stamp || pyproject.toml -nt $stamp || constraints.txt -nt $stamp ]]; then
    say "installing undertow[$EXTRAS] into $VENV (pinned by constraints.txt)"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[$EXTRAS]"
    touch "$stamp"
fi

# 3. A redis-server binary: the workers' state store and the test fixtures need one,
#    unless the user points UNDERTOW_REDIS_URL at a Redis they run themselves.
if ! command -v redis-server >/dev/null; then
    if [[ -n ${UNDERTOW_REDIS_URL:-} ]]; then
        say "no redis-server binary; using UNDERTOW_REDIS_URL=${UNDERTOW_REDIS_URL%%@*}"
    elif ! apt_install redis-server; then
        die "redis-server is missing. Install the Debian package 'redis-server' (sudo apt-get install redis-server), or set UNDERTOW_REDIS_URL=redis://host:port/0 to use an existing Redis."
    fi
    # Debian's package starts a system-wide Redis on 6379; undertow starts its own on a
    # free port and never needs that one.
fi
# 4. promtool, amtool and alertmanager for the alert-rule and routing tests (tests/deploy).
#    Debian ships them in `prometheus` and `prometheus-alertmanager` (the server binary is
#    named prometheus-alertmanager there). Without them those tests skip, and fail on CI.
prom_pkgs=()
command -v promtool >/dev/null || prom_pkgs+=(prometheus)
if ! command -v amtool >/dev/null \
    || ! { command -v alertmanager >/dev/null || command -v prometheus-alertmanager >/dev/null; }; then
    prom_pkgs+=(prometheus-alertmanager)
fi
if (( ${#prom_pkgs[@]} )); then
    if apt_install "${prom_pkgs[@]}"; then
        # Both packages enable a system service (Prometheus on :9090, Alertmanager on :9093);
        # the tests start their own on free loopback ports and never need those.
        if [[ -d /run/systemd/system ]]; then
            systemctl disable --now prometheus.service prometheus-alertmanager.service \
                >/dev/null 2>&1 || true
        fi
    else
        say "warning: cannot install ${prom_pkgs[*]} (apt-get as root); the Prometheus and Alertmanager tests will be skipped (and fail on CI)"
    fi
fi
# 5. kubectl, which renders k8s/ in the deployment tests (`kubectl kustomize`, needs kustomize
#    v4+: kubectl 1.21 or later). Only when there is none on PATH, and only from Debian's
#    kubernetes-client when its version is new enough: Debian 12's is 1.20 (kustomize
#    v2.0.3, which reads neither `patches` nor directories under `resources`), so there the
#    tests skip instead (and fail on CI) until a newer kubectl is installed.
if ! command -v kubectl >/dev/null; then
    candidate=
    if is_root && command -v apt-cache >/dev/null; then
        apt_update
        candidate=$(apt-cache policy kubernetes-client 2>/dev/null | awk '/Candidate:/ {print $2}')
    fi
    if [[ -n $candidate && $candidate != "(none)" ]] \
        && dpkg --compare-versions "${candidate#*really}" ge 1.21; then
        apt_install kubernetes-client
    else
        say "warning: no kubectl 1.21+ (Debian offers ${candidate:-none}); the k8s/ rendering tests will be skipped (and fail on CI): install kubectl 1.21 or later"
    fi
fi
say "ready"
