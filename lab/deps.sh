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
need dhcpd isc-dhcp-server
if [ -z "$missing" ]; then
	echo "lab deps: all present"
	exit 0
fi
echo "lab deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $missing
