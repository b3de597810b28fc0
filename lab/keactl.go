package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// Kea's control channel in the DHCP lab. Every ISP's kea-dhcp4 listens on a
// unix control socket of its own (ISP.KeaSocket, in the lab's state
// directory, so Down removes it) and loads the lease_cmds hook, which
// Debian's Kea 2.2 ships (kea-common). The socket is a file, not a network
// endpoint: it is reached from any namespace, and Go talks to it directly
// (no kea-ctrl-agent): one JSON command per connection, one JSON answer,
// then Kea closes the connection.

// LeaseCmdsHook is the file name of Kea's lease_cmds hook library.
const LeaseCmdsHook = "libdhcp_lease_cmds.so"

// keaHookDirs are where Kea's hook libraries are looked for: Debian's
// multiarch directories first, then upstream's default prefixes.
var keaHookDirs = []string{
	"/usr/lib/x86_64-linux-gnu/kea/hooks",
	"/usr/lib/aarch64-linux-gnu/kea/hooks",
	"/usr/lib/arm-linux-gnueabihf/kea/hooks",
	"/usr/lib/i386-linux-gnu/kea/hooks",
	"/usr/lib64/kea/hooks",
	"/usr/lib/kea/hooks",
	"/usr/local/lib/kea/hooks",
	"/usr/local/lib64/kea/hooks",
}

// KeaHookPath returns the path of Kea's hook library name (such as
// LeaseCmdsHook), or "" when it is not installed.
func KeaHookPath(name string) string {
	for _, d := range keaHookDirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	if m, _ := filepath.Glob(filepath.Join("/usr/lib/*/kea/hooks", name)); len(m) > 0 {
		return m[0]
	}
	return ""
}

// maxSocketPath is the longest path a unix socket address can hold
// (sun_path is 108 bytes with its terminating NUL).
const maxSocketPath = 107

// KeaAnswer is Kea's answer to one control command.
type KeaAnswer struct {
	Result    int             `json:"result"` // 0 success, 1 error, 2 unsupported, 3 empty (nothing found)
	Text      string          `json:"text"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// Kea's control command results.
const (
	KeaSuccess     = 0
	KeaError       = 1
	KeaUnsupported = 2
	KeaEmpty       = 3
)

// KeaCommand sends one control command (with arguments, nil for none) to
// the ISP's kea-dhcp4 over its control socket and returns the answer. An
// answer with result 1 or 2 is returned together with an error; result 3
// ("nothing found") is not an error.
func (isp *ISP) KeaCommand(ctx context.Context, command string, arguments any) (*KeaAnswer, error) {
	if isp.KeaSocket == "" {
		return nil, fmt.Errorf("lab: ISP %s has no Kea control socket (not a DHCP lab)", isp.Name)
	}
	req := struct {
		Command   string `json:"command"`
		Arguments any    `json:"arguments,omitempty"`
	}{command, arguments}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("lab: kea %s: %w", command, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", isp.KeaSocket)
	if err != nil {
		return nil, fmt.Errorf("lab: kea %s at %s: %w", command, isp.Name, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(body); err != nil {
		return nil, fmt.Errorf("lab: kea %s at %s: %w", command, isp.Name, err)
	}
	// Kea answers with one JSON object and closes the connection; a
	// large answer arrives in several reads.
	raw, err := io.ReadAll(conn)
	if err != nil && len(raw) == 0 {
		return nil, fmt.Errorf("lab: kea %s at %s: %w", command, isp.Name, err)
	}
	var ans KeaAnswer
	if jerr := json.Unmarshal(raw, &ans); jerr != nil {
		// Kea wraps a command sent to the ctrl agent in a list; not
		// here, but accept it.
		var list []KeaAnswer
		if json.Unmarshal(raw, &list) != nil || len(list) != 1 {
			if err != nil {
				return nil, fmt.Errorf("lab: kea %s at %s: %w (%d bytes read)", command, isp.Name, err, len(raw))
			}
			return nil, fmt.Errorf("lab: kea %s at %s: answer %q: %w", command, isp.Name, truncate(raw, 200), jerr)
		}
		ans = list[0]
	}
	if ans.Result == KeaError || ans.Result == KeaUnsupported {
		return &ans, fmt.Errorf("lab: kea %s at %s: result %d: %s", command, isp.Name, ans.Result, ans.Text)
	}
	return &ans, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// keaLeaseJSON is one lease as lease_cmds returns it.
type keaLeaseJSON struct {
	IPAddress   string          `json:"ip-address"`
	HWAddress   string          `json:"hw-address"`
	ClientID    string          `json:"client-id"`
	ValidLft    int64           `json:"valid-lft"`
	CLTT        int64           `json:"cltt"`
	SubnetID    int             `json:"subnet-id"`
	Hostname    string          `json:"hostname"`
	State       int             `json:"state"`
	UserContext json.RawMessage `json:"user-context"`
}

// Leases returns every lease the ISP's Kea holds in its lease database
// (lease4-get-all through the lease_cmds hook), as Kea sees them now: the
// memfile is an append-only log, this is its current state. Released
// leases are gone (Kea 2.2 deletes them), declined ones have State 1,
// expired and reclaimed ones State 2 (until Kea flushes them); a lease
// expired but not yet reclaimed keeps State 0 with Expire in the past
// (see KeaLease.Active). Expire is cltt + valid-lft.
func (isp *ISP) Leases(ctx context.Context) ([]KeaLease, error) {
	ans, err := isp.KeaCommand(ctx, "lease4-get-all", nil)
	if err != nil {
		return nil, err
	}
	if ans.Result == KeaEmpty || len(ans.Arguments) == 0 {
		return nil, nil
	}
	return parseKeaLeaseList(ans.Arguments)
}

func parseKeaLeaseList(args json.RawMessage) ([]KeaLease, error) {
	var a struct {
		Leases []keaLeaseJSON `json:"leases"`
	}
	if err := json.Unmarshal(args, &a); err != nil {
		return nil, fmt.Errorf("lab: lease4-get-all: %w", err)
	}
	leases := make([]KeaLease, 0, len(a.Leases))
	for _, j := range a.Leases {
		addr, err := netip.ParseAddr(j.IPAddress)
		if err != nil {
			return nil, fmt.Errorf("lab: lease4-get-all: %w", err)
		}
		l := KeaLease{
			Address: addr, HWAddr: j.HWAddress, ClientID: j.ClientID, ValidLifetime: int(j.ValidLft),
			CLTT: time.Unix(j.CLTT, 0), Expire: time.Unix(j.CLTT+j.ValidLft, 0), SubnetID: j.SubnetID,
			Hostname: j.Hostname, State: j.State,
		}
		if len(j.UserContext) > 0 && string(j.UserContext) != "null" {
			l.UserContext = string(j.UserContext)
			if err := l.decodeRelayInfo(); err != nil {
				return nil, fmt.Errorf("lab: lease4-get-all: %s: %w", addr, err)
			}
		}
		leases = append(leases, l)
	}
	return leases, nil
}

// Lease states (KeaLease.State).
const (
	KeaStateDefault   = 0 // assigned (or expired, not yet reclaimed)
	KeaStateDeclined  = 1
	KeaStateReclaimed = 2 // expired and reclaimed
)

// Active reports whether the lease is in force at now: assigned (state 0),
// with a lifetime, not expired.
func (l KeaLease) Active(now time.Time) bool {
	return l.State == KeaStateDefault && l.ValidLifetime > 0 && l.Expire.After(now)
}

// ReclaimLeases makes the ISP's Kea reclaim its expired leases now
// (leases-reclaim, kept as state 2 rather than removed), instead of at its
// next reclamation timer.
func (isp *ISP) ReclaimLeases(ctx context.Context) error {
	_, err := isp.KeaCommand(ctx, "leases-reclaim", map[string]bool{"remove": false})
	return err
}

// waitKeaSocket waits until the ISP's Kea answers on its control socket.
func (isp *ISP) waitKeaSocket(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := isp.KeaCommand(cctx, "list-commands", nil)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: the Kea control socket %s: %w", isp.KeaSocket, err)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
