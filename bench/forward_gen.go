package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The forwarding benchmark's sources. Source k (0 <= k < maxSources) is the
// subscriber MAC 02:11:k3:k2:k1:k0 (k's four bytes) with the address
// 100.80.0.0 + k (inside 100.80.0.0/12, which no lab subscriber uses) at ISP
// k mod ISPs. ispmux gets every source as a static [[subscriber]], the
// kernel's nftables map every (MAC . address) pair, and the generator sends
// from exactly these pairs, so the three agree by construction.
const (
	maxSources  = 1 << 20
	sourceNet   = "100.80.0.0/12"
	sourceMAC0  = 0x02
	sourceMAC1  = 0x11
	sourceBase4 = 100<<24 | 80<<16
)

// forwardSource returns source k's MAC and IPv4 address.
func forwardSource(k int) (mac [6]byte, ip [4]byte) {
	mac[0], mac[1] = sourceMAC0, sourceMAC1
	binary.BigEndian.PutUint32(mac[2:], uint32(k))
	binary.BigEndian.PutUint32(ip[:], sourceBase4+uint32(k))
	return mac, ip
}

// sourceStride is the step of the generator's walk over n sources: odd,
// near n times the golden ratio and coprime with n, so that packet i comes
// from source (i·stride) mod n — every source once per n packets, in an
// order that has no locality in any table.
func sourceStride(n int) int {
	if n <= 2 {
		return 1
	}
	s := int(float64(n)*0.6180339887) | 1
	for gcd(s, n) != 1 {
		s += 2
	}
	return s % n
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// genFrame writes the 60-byte benchmark frame (UDP 1024 → 9, 18 zero bytes
// of payload, UDP checksum 0) from source k to dst into f.
func genFrame(f []byte, dstMAC [6]byte, dstIP [4]byte, k int) {
	mac, ip := forwardSource(k)
	copy(f[0:6], dstMAC[:])
	copy(f[6:12], mac[:])
	f[12], f[13] = 0x08, 0x00
	h := f[14:34]
	h[0], h[1] = 0x45, 0
	binary.BigEndian.PutUint16(h[2:], 46)
	binary.BigEndian.PutUint16(h[4:], 0)
	binary.BigEndian.PutUint16(h[6:], 0x4000)
	h[8], h[9] = 64, 17
	h[10], h[11] = 0, 0
	copy(h[12:16], ip[:])
	copy(h[16:20], dstIP[:])
	binary.BigEndian.PutUint16(h[10:], ipChecksum(h))
	u := f[34:42]
	binary.BigEndian.PutUint16(u[0:], 1024)
	binary.BigEndian.PutUint16(u[2:], 9)
	binary.BigEndian.PutUint16(u[4:], 26)
	binary.BigEndian.PutUint16(u[6:], 0)
	clear(f[42:60])
}

// ipChecksum is the IPv4 header checksum of h (its checksum field zero).
func ipChecksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// genStats is the generator's shared counters file: the benchmark maps it
// too and reads the counters at the edges of its windows.
//
//	word 0  frames attempted (handed to sendmmsg, or refused by it)
//	word 1  frames the kernel accepted
//	word 2  frames refused (the device or the peer's ring was full)
//	word 3  1 while sending, 2 when done
const genStatsWords = 4

type genCounters struct{ attempted, sent, refused uint64 }

// readGenStats reads the generator's counters file.
func readGenStats(path string) (genCounters, bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return genCounters{}, false, err
	}
	if len(b) < 8*genStatsWords {
		return genCounters{}, false, fmt.Errorf("generator stats %s: %d bytes", path, len(b))
	}
	le := binary.LittleEndian
	return genCounters{le.Uint64(b[0:]), le.Uint64(b[8:]), le.Uint64(b[16:])}, le.Uint64(b[24:]) == 2, nil
}

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// forwardGen runs `ispmux bench forward-gen` (hidden): the forwarding
// benchmark's traffic generator. One AF_PACKET socket (qdisc bypassed) on
// --dev sends 60-byte UDP frames from the --sources benchmark sources to
// --dst-mac/--dst-ip with sendmmsg(2), paced to --rate frames per second
// (0: as fast as it can) in bursts due every --tick, for --duration, and
// keeps its counters in the --stats file.
func forwardGen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench forward-gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dev := fs.String("dev", "eth0", "interface")
	dst := fs.String("dst-mac", "", "destination MAC")
	dstIP := fs.String("dst-ip", benchDstIP, "destination IPv4 address")
	sources := fs.Int("sources", 256, "distinct sources")
	rate := fs.Float64("rate", 0, "frames per second (0: as fast as possible)")
	dur := fs.Duration("duration", 10*time.Second, "how long to send")
	tick := fs.Duration("tick", 100*time.Microsecond, "pacing period")
	burst := fs.Int("burst", 64, "most frames per sendmmsg call")
	stats := fs.String("stats", "", "counters file (created)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dmac, err := net.ParseMAC(*dst)
	dip := net.ParseIP(*dstIP).To4()
	switch {
	case err != nil || len(dmac) != 6:
		return fmt.Errorf("forward-gen: --dst-mac %q: want a 48-bit MAC", *dst)
	case dip == nil:
		return fmt.Errorf("forward-gen: --dst-ip %q: want IPv4", *dstIP)
	case *sources < 1 || *sources > maxSources:
		return fmt.Errorf("forward-gen: --sources %d: want 1..%d", *sources, maxSources)
	case *rate < 0 || *burst < 1 || *burst > 1024 || *tick <= 0 || *stats == "":
		return errors.New("forward-gen: bad --rate, --burst, --tick or no --stats")
	}
	ifi, err := net.InterfaceByName(*dev)
	if err != nil {
		return fmt.Errorf("forward-gen: %w", err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("forward-gen: socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		return fmt.Errorf("forward-gen: bind %s: %w", *dev, err)
	}
	// Straight to the driver: a full veth ring is a refused frame, not a
	// "virtual device asks to queue" warning per frame.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
		return fmt.Errorf("forward-gen: PACKET_QDISC_BYPASS: %w", err)
	}
	sf, err := os.OpenFile(*stats, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer sf.Close()
	if err := sf.Truncate(8 * genStatsWords); err != nil {
		return err
	}
	mem, err := unix.Mmap(int(sf.Fd()), 0, 8*genStatsWords, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("forward-gen: mmap %s: %w", *stats, err)
	}
	defer unix.Munmap(mem)
	ctr := (*[genStatsWords]uint64)(unsafe.Pointer(&mem[0]))
	atomic.StoreUint64(&ctr[3], 1)
	defer atomic.StoreUint64(&ctr[3], 2)

	var dm [6]byte
	var di [4]byte
	copy(dm[:], dmac)
	copy(di[:], dip)
	n := *burst
	buf := make([]byte, n*64)
	iov := make([]unix.Iovec, n)
	msgs := make([]mmsghdr, n)
	for i := range msgs {
		iov[i].Base = &buf[i*64]
		iov[i].SetLen(60)
		msgs[i].hdr.Iov = &iov[i]
		msgs[i].hdr.SetIovlen(1)
	}
	stride := sourceStride(*sources)
	k := 0
	var sched, attempted, sent, refused uint64
	start := time.Now()
	// A generator that falls behind catches up by at most this many
	// frames: after a long stall it does not flood the forwarder.
	maxDebt := max(uint64(*rate/20), uint64(n))
	for ctx.Err() == nil {
		el := time.Since(start)
		if el >= *dur {
			break
		}
		want := n
		if *rate > 0 {
			due := uint64(*rate * el.Seconds())
			if due > sched+maxDebt {
				sched = due - maxDebt // behind: those frames are never offered
			}
			if due <= sched {
				ts := unix.NsecToTimespec(tick.Nanoseconds())
				_ = unix.Nanosleep(&ts, nil)
				continue
			}
			want = int(min(due-sched, uint64(n)))
		}
		for i := range want {
			genFrame(buf[i*64:i*64+60], dm, di, k)
			if k += stride; k >= *sources {
				k -= *sources
			}
		}
		for off := 0; off < want; {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[off])), uintptr(want-off), 0, 0, 0)
			if e != 0 {
				if e == unix.EINTR {
					continue
				}
				if e != unix.ENOBUFS && e != unix.EAGAIN && e != unix.ENETDOWN && e != unix.ENXIO {
					return fmt.Errorf("forward-gen: sendmmsg: %w", e)
				}
				refused++ // the first frame was refused: skip it
				off++
				continue
			}
			sent += uint64(r)
			off += int(r)
		}
		sched += uint64(want)
		attempted += uint64(want)
		atomic.StoreUint64(&ctr[0], attempted)
		atomic.StoreUint64(&ctr[1], sent)
		atomic.StoreUint64(&ctr[2], refused)
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(stdout, "forward-gen: %d frames attempted in %.2fs (%.0f/s), %d sent, %d refused\n", attempted, el, float64(attempted)/el, sent, refused)
	return nil
}
