#!/usr/bin/env bash
# make deb: a Debian package of the daemon with plain dpkg-deb (no packaging tools to build).
#
#   scripts/build-deb.sh [--bin PATH] [--out DIR] [--compress xz|gzip|zstd|none]
#
# Holds /usr/bin/kube-ldap-webhook (stripped), the systemd unit, the sysusers.d file and
# the example config as a conffile (/etc/kube-ldap-webhook/config.toml: dpkg keeps an
# operator's edits on upgrade and asks before replacing them). Prints the .deb's path.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/kube-ldap-webhook
OUT=$ROOT/target/debian
COMPRESS=xz
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --compress) COMPRESS=$2; shift 2 ;;
        *) echo "build-deb: unknown argument $1" >&2; exit 2 ;;
    esac
done

NAME=kube-ldap-webhook
CONFIG=$ROOT/etc/kube-ldap-webhook/config.toml
UNIT=$ROOT/systemd/$NAME.service
SYSUSERS=$ROOT/systemd/$NAME.sysusers
[ -x "$BIN" ] || { echo "build-deb: $BIN is missing (make release)" >&2; exit 1; }
for f in "$CONFIG" "$UNIT" "$SYSUSERS"; do
    [ -f "$f" ] || { echo "build-deb: $f is missing" >&2; exit 1; }
done
for tool in dpkg-deb dpkg readelf strip; do
    command -v "$tool" >/dev/null || { echo "build-deb: $tool not found (apt-get install dpkg binutils)" >&2; exit 1; }
done

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)
ARCH=$(dpkg --print-architecture)
DESCRIPTION=$(sed -n 's/^description = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)

# Depends: the packages that own the shared libraries the binary links, with the newest
# glibc symbol version it uses as libc6's lower bound.
depends=()
while read -r lib; do
    # No early exit in awk: with pipefail, ldconfig dying of SIGPIPE would fail the script.
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && !found { print $NF; found = 1 }')
    [ -n "$path" ] || { echo "build-deb: $BIN needs $lib, which ldconfig does not know" >&2; exit 1; }
    pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | sed -n '1s/:.*//p') \
        || pkg=$(dpkg -S "$path" 2>/dev/null | sed -n '1s/:.*//p') || true
    [ -n "$pkg" ] || { echo "build-deb: no package owns $path ($lib)" >&2; exit 1; }
    if [ "$pkg" = libc6 ]; then
        glibc=$(readelf --dyn-syms --wide "$BIN" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
        pkg="libc6 (>= $glibc)"
    fi
    case " ${depends[*]-} " in *" ${pkg%% *} "*) ;; *) depends+=("$pkg") ;; esac
done < <(readelf -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
DEPENDS=$(IFS=,; echo "${depends[*]}" | sed 's/,/, /g')

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
R=$STAGE/root
install -d -m 0755 "$R/DEBIAN" "$R/usr/bin" "$R/usr/lib/systemd/system" "$R/usr/lib/sysusers.d" \
    "$R/etc/$NAME" "$R/usr/share/doc/$NAME"
strip --strip-unneeded -o "$R/usr/bin/$NAME" "$BIN"
chmod 0755 "$R/usr/bin/$NAME"
install -m 0644 "$UNIT" "$R/usr/lib/systemd/system/$NAME.service"
install -m 0644 "$SYSUSERS" "$R/usr/lib/sysusers.d/$NAME.conf"
install -m 0644 "$CONFIG" "$R/etc/$NAME/config.toml"
[ -f "$ROOT/README.md" ] && gzip -9n <"$ROOT/README.md" >"$R/usr/share/doc/$NAME/README.md.gz"
cat >"$R/usr/share/doc/$NAME/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $NAME

Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
EOF

echo "/etc/$NAME/config.toml" >"$R/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$R" | cut -f1)
cat >"$R/DEBIAN/control" <<EOF
Package: $NAME
Version: $VERSION
Architecture: $ARCH
Maintainer: kube-ldap-webhook maintainers <root@localhost>
Installed-Size: $SIZE
Depends: $DEPENDS
Recommends: systemd
Section: admin
Priority: optional
Description: $DESCRIPTION
 A kube-apiserver authentication webhook: answers TokenReviews for tokens of the form
 base64(username:password) by binding to LDAP or Active Directory as that user, and
 returns the user's groups. Runs as the systemd service $NAME.service;
 configure /etc/$NAME/config.toml, then: systemctl enable --now $NAME
EOF

cat >"$R/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
NAME=kube-ldap-webhook
if [ "$1" = configure ]; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers /usr/lib/sysusers.d/$NAME.conf
    elif ! getent passwd $NAME >/dev/null; then
        useradd --system --user-group --no-create-home --home-dir / \
            --shell /usr/sbin/nologin --comment "Kubernetes LDAP token webhook" $NAME
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        # An upgrade restarts a running service; a first install starts nothing until the
        # operator has written the config and certificates and enabled it.
        if [ -n "$2" ]; then
            systemctl try-restart $NAME.service || true
        fi
    fi
fi
exit 0
EOF

cat >"$R/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
NAME=kube-ldap-webhook
if [ "$1" = remove ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop $NAME.service || true
    fi
    if command -v systemctl >/dev/null 2>&1; then
        systemctl --quiet disable $NAME.service 2>/dev/null || true
    fi
fi
exit 0
EOF

cat >"$R/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
# The system user stays (Debian keeps system users: files may still carry its uid), and
# so do the certificates and bind password the operator put in /etc/kube-ldap-webhook;
# purge removes the config file.
if [ "$1" = remove ] || [ "$1" = purge ]; then
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
fi
exit 0
EOF
chmod 0755 "$R/DEBIAN/postinst" "$R/DEBIAN/prerm" "$R/DEBIAN/postrm"

mkdir -p "$OUT"
DEB=$OUT/${NAME}_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Z"$COMPRESS" --build "$R" "$DEB" >/dev/null
echo "$DEB"
