// Package e2e holds ispmux's end-to-end tests: the real binary, run in the
// netns lab (package lab) on real AF_XDP sockets, with real peers (ping,
// iperf3, the kernel's ARP and routing in the ISP namespaces). They need
// root; CI runs as root and fails if they cannot run.
package e2e
