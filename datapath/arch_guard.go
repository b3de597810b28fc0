//go:build !amd64

package datapath

// The AF_XDP rings are shared with the kernel: the producer and consumer
// indexes need acquire/release ordering. github.com/asavie/xdp (v0.3.3,
// the only AF_XDP library ispmux uses, contained in xsk.go) reads and
// writes them with plain loads and stores, which is correct on amd64's
// memory model (TSO) and not on weakly ordered CPUs (arm64, ppc64le,
// riscv64), where frames could be read before the kernel finished writing
// them. Until the ring access is fixed, ispmux builds for amd64 only: this
// file, compiled on every other architecture, names an identifier that
// does not exist, so the build fails with the reason as the error.
const _ = ispmux_builds_for_amd64_only__asavie_xdp_ring_access_is_plain_loads_and_stores_correct_on_amd64_only
