#!/usr/bin/env bash
# The files docker-compose.yml mounts as secrets, created once in ./secrets/ (gitignored):
#
#   grafana-admin-password   a random password for Grafana's admin user
#   slack-webhook-url        EMPTY: put your Slack incoming-webhook URL here
#   pagerduty-routing-key    EMPTY: put your PagerDuty Events API v2 routing key here
#
# Existing files are never overwritten, so running it again is safe. Alertmanager reads the
# receiver secrets when it sends a notification: while they are empty it starts and routes
# alerts, and only the delivery to Slack / PagerDuty fails (in its log).
#
# The files are mode 0644 inside a 0700 directory: compose bind-mounts each file as it is,
# and the containers read them as their own unprivileged users (Alertmanager: nobody,
# Grafana: 472), so the files must be world-readable; the directory keeps other users of
# this machine out.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=secrets
mkdir -p "$dir"
chmod 0700 "$dir"

make_file() {  # name, content
    local path=$dir/$1
    if [[ -e $path ]]; then
        printf 'compose-secrets: %s exists, kept\n' "$path" >&2
        return
    fi
    printf '%s' "$2" >"$path"
    chmod 0644 "$path"
    printf 'compose-secrets: wrote %s\n' "$path" >&2
}

make_file grafana-admin-password "$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
make_file slack-webhook-url ""
make_file pagerduty-routing-key ""
