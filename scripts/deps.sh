#!/bin/sh
# Make sure sockprobe's Debian packages are installed: install them when we
# are root with apt-get, otherwise say exactly what to install. Exit 0 only
# when everything needed is there, 2 (a set-up error, in the exit-status
# contract of make check and make test) otherwise.
set -u
# Extra packages a run needs (musl-tools, user-mode-linux, ...) come as
# arguments.
PKGS="gcc make libc6-dev libcmocka-dev python3 python3-pytest python3-pytest-xdist python3-pytest-timeout dnsmasq-base $*"

missing=""
if command -v dpkg-query >/dev/null 2>&1; then
	# One query for all packages (this runs before every make check).
	installed=$(dpkg-query -W -f='${Package} ${Status}\n' $PKGS 2>/dev/null |
		awk '$NF == "installed" { print $1 }')
	for p in $PKGS; do
		case " $(echo $installed) " in *" $p "*) ;; *) missing="$missing $p" ;; esac
	done
else
	# Not Debian: check for the things themselves.
	[ -f /usr/include/cmocka.h ] || missing="$missing cmocka(headers+library)"
	"$(dirname "$0")/find-python" >/dev/null 2>&1 || missing="$missing python3-with-pytest,pytest-xdist,pytest-timeout"
	if [ -n "$missing" ]; then
		echo "sockprobe: missing:$missing; install them with your package manager" >&2
		exit 2
	fi
	exit 0
fi
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "sockprobe: installing Debian packages:$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	if apt-get install -y -q $missing >/tmp/sockprobe-apt.log 2>&1 ||
	   { apt-get update -q >>/tmp/sockprobe-apt.log 2>&1 &&
	     apt-get install -y -q $missing >>/tmp/sockprobe-apt.log 2>&1; }; then
		exit 0
	fi
	echo "sockprobe: apt-get could not install$missing (log: /tmp/sockprobe-apt.log)" >&2
	exit 2
fi
# The hint names a way this system has: sudo where it is installed and we
# may use it, otherwise root's own shell.
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
	how="sudo apt-get install -y$missing"
else
	how="apt-get install -y$missing (as root)"
fi
echo "sockprobe: missing Debian packages:$missing; install them with: $how" >&2
exit 2
