module github.com/asavie/xdp

go 1.13

require (
	github.com/cilium/ebpf v0.4.0
	github.com/google/gopacket v1.1.19
	github.com/miekg/dns v1.1.35
	github.com/vishvananda/netlink v1.1.0
	golang.org/x/sys v0.0.0-20210324051608-47abb6519492
)
