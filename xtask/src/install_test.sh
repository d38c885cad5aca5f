#!/bin/bash
# The install test's half inside the clean Debian 12 root (run by xtask/src/install_test.rs
# through chroot): install the three packages with apt, use them, check what they installed,
# purge them and check what is left. Every check prints `ok: …`; the first failure stops the
# test with `FAIL: …`.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin

VERSION="$1"
DEBS=/tmp/mynalink-debs
SERVER_LOG=/tmp/mynalink-server.log

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# mode, owner and group of a path, e.g. `0755 root root`.
stat_is() {
    local path="$1" want="$2" got
    got="$(stat -c '%04a %U %G' "$path" 2>/dev/null)" || fail "$path is missing"
    [ "$got" = "$want" ] || fail "$path is $got, not $want"
    ok "$path $want"
}

echo "== installing with apt"
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    "$DEBS/mynalink_${VERSION}_"*.deb \
    "$DEBS/mynalink-kiosk_${VERSION}_all.deb" \
    "$DEBS/mynalink-server_${VERSION}_"*.deb >/tmp/apt-install.log 2>&1 \
    || { tail -40 /tmp/apt-install.log >&2; fail "apt-get install"; }
for p in mynalink mynalink-kiosk mynalink-server; do
    [ "$(dpkg-query -W -f='${Status} ${Version}' "$p")" = "install ok installed $VERSION" ] \
        || fail "$p is not installed at $VERSION"
done
ok "the three packages installed, their dependencies from Debian"

echo "== the client"
out="$(mynalink --version)"
[ "$out" = "mynalink $VERSION" ] || fail "mynalink --version printed: $out"
ok "mynalink --version: $out"
# Without a display, `demo` runs in the terminal; --headless says so explicitly.
out="$(cd /tmp && env -u DISPLAY -u WAYLAND_DISPLAY HOME=/tmp/staff-home mynalink demo --headless 2>&1)" \
    || { echo "$out" >&2; fail "mynalink demo --headless"; }
echo "$out" | grep -q 'linked' || { echo "$out" >&2; fail "the demo did not link"; }
ok "mynalink demo --headless links the demo record"
for page in mynalink mynalink-headless mynalink-kiosk mynalink-outbox-flush mynalink-doctor; do
    [ -s "/usr/share/man/man1/$page.1.gz" ] || fail "man page $page.1.gz"
done
ok "man pages"
[ -s /usr/share/bash-completion/completions/mynalink ] || fail "bash completion"
[ -s /usr/share/zsh/vendor-completions/_mynalink ] || fail "zsh completion"
[ -s /usr/share/fish/vendor_completions.d/mynalink.fish ] || fail "fish completion"
ok "bash, zsh and fish completions"
[ -s /usr/share/icons/hicolor/scalable/apps/mynalink.svg ] || fail "the SVG icon"
[ -s /usr/share/icons/hicolor/48x48/apps/mynalink.png ] || fail "the 48x48 icon"
grep -qx 'Icon=mynalink' /usr/share/applications/mynalink.desktop || fail "desktop entry icon"
ok "desktop entry and icons"

echo "== the server"
out="$(mynalink-server --version)"
[ "$out" = "mynalink-server $VERSION" ] || fail "mynalink-server --version printed: $out"
ok "mynalink-server --version: $out"
getent passwd mynalink-server | grep -q ':/var/lib/mynalink-server:/usr/sbin/nologin$' \
    || fail "system user mynalink-server: $(getent passwd mynalink-server)"
[ "$(id -u mynalink-server)" -lt 1000 ] || fail "mynalink-server is not a system user"
ok "system user mynalink-server"
# Start the server as mynalink-server.service would: its user, umask, state directory, and
# ExecStart with the packaged options (the port made 0: the host may use 8443).
unit=/lib/systemd/system/mynalink-server.service
exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
[ "$exec_start" = '/usr/bin/mynalink-server serve $MYNALINK_SERVER_OPTIONS' ] \
    || fail "unexpected ExecStart: $exec_start"
# shellcheck disable=SC1091
. /etc/default/mynalink-server
options="${MYNALINK_SERVER_OPTIONS/--listen 127.0.0.1:8443/--listen 127.0.0.1:0}"
[ "$options" != "$MYNALINK_SERVER_OPTIONS" ] || fail "packaged options do not listen on 127.0.0.1:8443"
install -d -o mynalink-server -g mynalink-server -m 0700 /var/lib/mynalink-server
: >"$SERVER_LOG" # before the server's own shell opens it: read below at once
# shellcheck disable=SC2086
(umask 0077 && cd /var/lib/mynalink-server && exec setpriv --reuid=mynalink-server \
    --regid=mynalink-server --init-groups /usr/bin/mynalink-server serve $options) \
    >"$SERVER_LOG" 2>&1 &
server=$!
url=""
for _ in $(seq 200); do
    url="$(sed -n 's/^listening on //p' "$SERVER_LOG")"
    [ -n "$url" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$SERVER_LOG" >&2; fail "the server exited"; }
    sleep 0.1
done
[ -n "$url" ] || { cat "$SERVER_LOG" >&2; fail "no 'listening on' line in 20 s"; }
ok "mynalink-server serve with the packaged options: listening on $url"
port="${url##*:}"
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
status_line="$(head -n 1 <&3 | tr -d '\r')"
exec 3<&-
[ "$status_line" = "HTTP/1.1 200 OK" ] || fail "GET /healthz: $status_line"
ok "GET /healthz: $status_line"
kill -TERM "$server"
wait "$server" || { cat "$SERVER_LOG" >&2; fail "the server did not stop cleanly on SIGTERM"; }
ok "the server stops on SIGTERM with status 0"
stat_is /var/lib/mynalink-server/db.sqlite "0600 mynalink-server mynalink-server"

echo "== the kiosk under Debian's cage"
getent passwd mynalink-kiosk | grep -q ':/var/lib/mynalink-kiosk:/usr/sbin/nologin$' \
    || fail "system user mynalink-kiosk: $(getent passwd mynalink-kiosk)"
ok "system user mynalink-kiosk"
# mynalink-kiosk.service's command, user and environment, the packaged configuration, on
# wlroots' headless backend (no display, no GPU here): the kiosk must connect to cage and draw
# its first frame, and keep running.
unit=/lib/systemd/system/mynalink-kiosk.service
exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
[ "$exec_start" = "/usr/bin/cage -- /usr/bin/mynalink --config /etc/mynalink-kiosk/config.toml kiosk" ] \
    || fail "unexpected ExecStart: $exec_start"
environment="$(sed -n 's/^Environment=//p' "$unit")"
install -d -o mynalink-kiosk -g mynalink-kiosk -m 0700 /var/lib/mynalink-kiosk /tmp/kiosk-runtime
KIOSK_LOG=/tmp/mynalink-kiosk.log
: >"$KIOSK_LOG"
# The outer shell swallows bash's "Aborted" notice: Debian's cage 0.1.4 aborts in wlroots'
# teardown on SIGTERM with the headless backend (the kiosk is already gone by then).
# shellcheck disable=SC2086
( (umask 0077 && cd /var/lib/mynalink-kiosk && exec setpriv --reuid=mynalink-kiosk \
    --regid=mynalink-kiosk --init-groups env HOME=/var/lib/mynalink-kiosk $environment \
    XDG_RUNTIME_DIR=/tmp/kiosk-runtime WLR_BACKENDS=headless WLR_RENDERER=pixman \
    WLR_HEADLESS_OUTPUTS=1 WLR_LIBINPUT_NO_DEVICES=1 MYNALINK_STARTUP_LOG=1 $exec_start) \
    >"$KIOSK_LOG" 2>&1; exit 0) 2>/dev/null &
kiosk=$!
frame=""
for _ in $(seq 300); do
    frame="$(sed -n 's/^mynalink-startup first_frame_ms=\([0-9]*\) mode=kiosk$/\1/p' "$KIOSK_LOG")"
    [ -n "$frame" ] && break
    kill -0 "$kiosk" 2>/dev/null || { tail -20 "$KIOSK_LOG" >&2; fail "cage or the kiosk exited"; }
    sleep 0.1
done
[ -n "$frame" ] || { tail -20 "$KIOSK_LOG" >&2; fail "no first frame from the kiosk in 30 s"; }
sleep 1
kill -0 "$kiosk" 2>/dev/null || { tail -20 "$KIOSK_LOG" >&2; fail "the kiosk ended after its first frame"; }
# cage, Xwayland and the kiosk: every process of the kiosk's user (procps is not in minbase).
kiosk_pids() {
    for p in /proc/[0-9]*; do
        [ "$(stat -c %U "$p" 2>/dev/null)" = mynalink-kiosk ] && echo "${p#/proc/}"
    done
    return 0
}
# cage first, which ends its clients; then whatever is left.
for p in $(kiosk_pids); do
    if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = cage ]; then kill -TERM "$p" 2>/dev/null || true; fi
done
for _ in $(seq 30); do [ -z "$(kiosk_pids)" ] && break; sleep 0.1; done
# shellcheck disable=SC2046
kill -TERM $(kiosk_pids) 2>/dev/null || true
for _ in $(seq 50); do [ -z "$(kiosk_pids)" ] && break; sleep 0.1; done
# shellcheck disable=SC2046
[ -z "$(kiosk_pids)" ] || kill -KILL $(kiosk_pids) 2>/dev/null || true
wait "$kiosk" 2>/dev/null || true
ok "cage -- mynalink kiosk: first frame after $frame ms, still running 1 s later"

echo "== files, modes, conffiles, units"
stat_is /usr/bin/mynalink "0755 root root"
stat_is /usr/bin/mynalink-server "0755 root root"
stat_is /etc/mynalink/config.toml "0644 root root"
stat_is /etc/mynalink-kiosk "0750 root mynalink-kiosk"
stat_is /etc/mynalink-kiosk/config.toml "0644 root root"
stat_is /etc/mynalink-server "0750 root mynalink-server"
stat_is /etc/mynalink-server/server.toml "0644 root root"
stat_is /etc/default/mynalink-server "0644 root root"
stat_is /etc/pam.d/mynalink-kiosk "0644 root root"
stat_is /lib/systemd/system/mynalink-server.service "0644 root root"
stat_is /lib/systemd/system/mynalink-kiosk.service "0644 root root"
stat_is /lib/systemd/system/mynalink-server-recheck.service "0644 root root"
stat_is /lib/systemd/system/mynalink-server-recheck.timer "0644 root root"
# Every shipped file belongs to root; nothing is setuid, setgid or writable by others.
for p in mynalink mynalink-kiosk mynalink-server; do
    while IFS= read -r path; do
        [ -e "$path" ] && [ ! -d "$path" ] || continue
        [ "$(stat -c '%U:%G' "$path")" = "root:root" ] || fail "$path is not root's"
        [ -z "$(find "$path" -perm /6002)" ] || fail "$path: setuid, setgid or world-writable"
    done < <(dpkg-query -L "$p")
done
ok "every packaged file is root's, none setuid/setgid or world-writable"
conffiles_of() { dpkg-query -W -f='${Conffiles}\n' "$1" | awk 'NF { print $1 }' | sort | xargs; }
[ "$(conffiles_of mynalink)" = "/etc/mynalink/config.toml" ] \
    || fail "mynalink conffiles: $(conffiles_of mynalink)"
[ "$(conffiles_of mynalink-kiosk)" = "/etc/mynalink-kiosk/config.toml /etc/pam.d/mynalink-kiosk" ] \
    || fail "mynalink-kiosk conffiles: $(conffiles_of mynalink-kiosk)"
[ "$(conffiles_of mynalink-server)" = "/etc/default/mynalink-server /etc/mynalink-server/server.toml" ] \
    || fail "mynalink-server conffiles: $(conffiles_of mynalink-server)"
ok "conffiles registered"
# Each conffile as shipped (its md5sum as dpkg recorded it) and nothing set in the TOML ones.
for p in mynalink mynalink-kiosk mynalink-server; do
    dpkg-query -W -f='${Conffiles}\n' "$p" | awk 'NF { print $2 "  " $1 }' | md5sum --check --quiet \
        || fail "$p: a conffile differs from the package"
done
for f in /etc/mynalink/config.toml /etc/mynalink-kiosk/config.toml /etc/mynalink-server/server.toml; do
    ! grep -vE '^(#|$)' "$f" >/dev/null || fail "$f sets something: $(grep -vE '^(#|$)' "$f")"
done
ok "conffiles unchanged, every key commented out"
[ -L /etc/systemd/system/multi-user.target.wants/mynalink-server.service ] \
    || fail "mynalink-server.service is not enabled"
[ -L /etc/systemd/system/graphical.target.wants/mynalink-kiosk.service ] \
    || fail "mynalink-kiosk.service is not enabled"
ok "both services enabled"
[ -z "$(find /etc/systemd/system -name 'mynalink-server-recheck*')" ] \
    || fail "the re-check timer is enabled: $(find /etc/systemd/system -name 'mynalink-server-recheck*')"
ok "the re-check timer installed, not enabled"
verify="$(systemd-analyze verify --man=no \
    /lib/systemd/system/mynalink-server.service /lib/systemd/system/mynalink-kiosk.service \
    /lib/systemd/system/mynalink-server-recheck.service \
    /lib/systemd/system/mynalink-server-recheck.timer 2>&1)" \
    || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"
ok "systemd-analyze verify accepts the units beside the real cage and binaries"
# An administrator enables the timer; purge must take that away too.
systemctl enable mynalink-server-recheck.timer 2>/dev/null \
    || fail "systemctl enable mynalink-server-recheck.timer"
[ -L /etc/systemd/system/timers.target.wants/mynalink-server-recheck.timer ] \
    || fail "systemctl enable made no timers.target.wants link"

echo "== purge"
apt-get purge -y -qq mynalink-kiosk mynalink-server mynalink >/tmp/apt-purge.log 2>&1 \
    || { cat /tmp/apt-purge.log >&2; fail "apt-get purge"; }
for p in mynalink mynalink-kiosk mynalink-server; do
    ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -qv 'not-installed' \
        || fail "$p is still known to dpkg: $(dpkg-query -W -f='${Status}' "$p")"
done
for path in /usr/bin/mynalink /usr/bin/mynalink-server /etc/mynalink /etc/mynalink-kiosk \
    /etc/default/mynalink-server /etc/pam.d/mynalink-kiosk /usr/share/doc/mynalink \
    /lib/systemd/system/mynalink-server.service /lib/systemd/system/mynalink-kiosk.service \
    /etc/systemd/system/multi-user.target.wants/mynalink-server.service \
    /etc/systemd/system/graphical.target.wants/mynalink-kiosk.service \
    /lib/systemd/system/mynalink-server-recheck.timer \
    /etc/systemd/system/timers.target.wants/mynalink-server-recheck.timer; do
    [ ! -e "$path" ] && [ ! -L "$path" ] || fail "$path is left after purge"
done
! getent passwd mynalink-server mynalink-kiosk >/dev/null || fail "a system user is left"
! getent group mynalink-server mynalink-kiosk >/dev/null || fail "a system group is left"
! dpkg-statoverride --list | grep -q mynalink || fail "a stat override is left"
! grep -rqs mynalink /var/lib/systemd/deb-systemd-helper-enabled \
    || fail "deb-systemd-helper still remembers a unit"
# /etc/mynalink-server had nothing but conffiles: gone. The database is kept, given to root.
[ ! -e /etc/mynalink-server ] || fail "/etc/mynalink-server is left: $(ls -la /etc/mynalink-server)"
stat_is /var/lib/mynalink-server "0700 root root"
[ -s /var/lib/mynalink-server/db.sqlite ] || fail "the database was not kept"
# The kiosk's state directory is kept the same way when the kiosk left anything in it.
if [ -e /var/lib/mynalink-kiosk ]; then
    stat_is /var/lib/mynalink-kiosk "0700 root root"
fi
left="$(find / -xdev -name '*mynalink*' -not -path '/tmp/*' -not -path '/proc/*' \
    -not -path '/var/lib/mynalink-server*' -not -path '/var/lib/mynalink-kiosk*' 2>/dev/null || true)"
[ -z "$left" ] || fail "left after purge: $left"
ok "purge leaves only the state directories with data in them (root's, 0700)"
echo "install test passed"
