#!/bin/sh
# Install the Debian packages the ispmux lab needs, only when a binary is
# missing (same list as lab.Packages). Run as root.
set -eu
missing=""
need() { # binary package
	if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ] && [ ! -x "/sbin/$1" ]; then
		case " $missing " in *" $2 "*) ;; *) missing="$missing $2" ;; esac
	fi
}
need ip iproute2
need bridge iproute2
need ss iproute2
need trafgen netsniff-ng
need iperf3 iperf3
need ping iputils-ping
need tcpdump tcpdump
need ethtool ethtool
need kea-dhcp4 kea-dhcp4-server
need dhclient isc-dhcp-client
need busybox busybox
need perfdhcp kea-admin
need dhcrelay isc-dhcp-relay
need sysctl procps
need nft nftables
need chromium chromium
need certutil libnss3-tools
need dnsmasq dnsmasq-base
need dhcpcd dhcpcd-base
need networkctl systemd
need dhcpd isc-dhcp-server
need promtool prometheus
need node nodejs
need npm npm
need python3 python3
if [ -z "$missing" ]; then
	echo "lab deps: all present"
	exit 0
fi
echo "lab deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# The lab runs its DHCP servers by hand in its namespaces: the packages'
# own services (Kea's; isc-dhcp-server's, which with no interface
# configured fails to start; Prometheus's, whose promtool only the tests
# use) are not started at install (a policy-rc.d for the install, unless
# the machine has one), and isc-dhcp-server's and Prometheus's are not
# left enabled at boot either.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	policy=/usr/sbin/policy-rc.d
	printf '#!/bin/sh\n# ispmux lab/deps.sh: no service starts during its install\nexit 101\n' > "$policy"
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
apt-get update
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $missing
if [ -d /run/systemd/system ]; then
	for unit in isc-dhcp-server.service isc-dhcp-server6.service; do
		case "$missing" in *isc-dhcp-server*) systemctl disable --now "$unit" >/dev/null 2>&1 || true ;; esac
	done
	case "$missing" in *prometheus*) systemctl disable --now prometheus.service >/dev/null 2>&1 || true ;; esac
fi
