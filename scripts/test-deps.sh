#!/usr/bin/env bash
# Installs, from Debian's packages, what the tests, the demo and the benchmarks need
# and this machine lacks: a real OpenLDAP, a real Samba AD DC, a real 389-ds, systemd's analyzer,
# dpkg-deb, the Prometheus text parser.
# Does nothing when everything is there. Needs root to install.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have slapd || need+=(slapd)
have ldapsearch || need+=(ldap-utils)
have openssl || need+=(openssl)
if [ "${1:-}" != "--ldap-only" ]; then
    # 389 Directory Server (FreeIPA's directory) for tests/ds389.rs.
    have dscreate || need+=(389-ds-base)
    have samba || need+=(samba-ad-dc)
    [ -d /usr/share/samba/setup ] || need+=(samba-ad-provision)
    have wbinfo || need+=(winbind)
    have ldbadd || need+=(ldb-tools)
    have ip || need+=(iproute2)
    have systemd-analyze || need+=(systemd)
    [ -x /bin/kill ] || need+=(procps)
    have dpkg-deb || need+=(dpkg)
    have strip || need+=(binutils)
    # /metrics is checked with the Prometheus project's own parser (tests/it/ops.rs).
    /usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || need+=(python3-prometheus-client)
    have flock || need+=(util-linux)
fi
[ "${#need[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "missing packages: ${need[*]} (run as root or: sudo apt-get install -y ${need[*]})" >&2
    exit 1
fi
echo "installing ${need[*]}" >&2
# Keep the distribution's own slapd and samba services from starting on install:
# the tests start their own, on their own ports.
policy=/usr/sbin/policy-rc.d
created=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created=1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
[ "$created" = 1 ] && rm -f "$policy"
# Some images start slapd from the package's postinst regardless: stop it.
if pgrep -x slapd >/dev/null 2>&1 && [ -e /etc/init.d/slapd ]; then
    /etc/init.d/slapd stop >/dev/null 2>&1 || true
fi
exit 0
