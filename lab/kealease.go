package lab

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Kea's leases as the lab reads them: its memfile lease file (KeaLeases)
// and the Option 82 it stored with a lease (the user context).

// KeaLease is one lease of an ISP's Kea: a record of its memfile lease file
// (KeaLeases) or one lease of its lease database as lease_cmds returns it
// (ISP.Leases). The file is a log: a later record for the same address
// supersedes an earlier one, and a released or deleted lease is written
// with ValidLifetime 0.
type KeaLease struct {
	Address       netip.Addr
	HWAddr        string    // "02:00:00:00:01:01"
	ClientID      string    // as stored (colon-separated hex), may be empty
	ValidLifetime int       // seconds
	CLTT          time.Time // client last transmission time (ISP.Leases only)
	Expire        time.Time
	SubnetID      int
	Hostname      string
	State         int    // 0 default, 1 declined, 2 expired-reclaimed
	UserContext   string // raw JSON, empty when none
	// From the relay agent information Kea stored in the user context
	// ("store-extended-info"): the Option 82 sub-options.
	RelayAgentInfo []byte // the whole option 82 payload
	CircuitID      []byte // sub-option 1
	RemoteID       []byte // sub-option 2
	LinkSelection  []byte // sub-option 5
	SubscriberID   []byte // sub-option 6
}

// ActiveKeaLeases returns, of records in file order (see KeaLeases), the last
// record per address when it is a lease in force at now: state 0, a
// non-zero lifetime and not expired.
func ActiveKeaLeases(records []KeaLease, now time.Time) []KeaLease {
	last := map[netip.Addr]int{}
	var order []netip.Addr
	for i, l := range records {
		if _, ok := last[l.Address]; !ok {
			order = append(order, l.Address)
		}
		last[l.Address] = i
	}
	var active []KeaLease
	for _, a := range order {
		l := records[last[a]]
		if l.State == 0 && l.ValidLifetime > 0 && l.Expire.After(now) {
			active = append(active, l)
		}
	}
	return active
}

// KeaLeases parses a Kea memfile lease file (CSV with a header line naming
// the columns) and returns its records in file order.
func KeaLeases(path string) ([]KeaLease, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseKeaLeases(f, path)
}

func parseKeaLeases(r io.Reader, name string) ([]KeaLease, error) {
	// Not RFC 4180 CSV: Kea never quotes, it escapes a comma inside a
	// field as "&#x2c" (user contexts are JSON with bare quotes).
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	if !sc.Scan() {
		return nil, sc.Err()
	}
	header := strings.Split(strings.TrimSpace(sc.Text()), ",")
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	for _, need := range []string{"address", "hwaddr", "expire"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("lab: %s: no %q column in header %q", name, need, header)
		}
	}
	var leases []KeaLease
	for line := 2; sc.Scan(); line++ {
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" {
			continue
		}
		rec := strings.Split(text, ",")
		get := func(c string) string {
			if i, ok := col[c]; ok && i < len(rec) {
				return keaUnescape.Replace(rec[i])
			}
			return ""
		}
		atoi := func(c string) (int64, error) {
			v := get(c)
			if v == "" {
				return 0, nil
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("lab: %s:%d: %s: %w", name, line, c, err)
			}
			return n, nil
		}
		var l KeaLease
		var err error
		if l.Address, err = netip.ParseAddr(get("address")); err != nil {
			return nil, fmt.Errorf("lab: %s:%d: %w", name, line, err)
		}
		l.HWAddr, l.ClientID, l.Hostname = get("hwaddr"), get("client_id"), get("hostname")
		var n int64
		if n, err = atoi("valid_lifetime"); err != nil {
			return nil, err
		}
		l.ValidLifetime = int(n)
		if n, err = atoi("expire"); err != nil {
			return nil, err
		}
		l.Expire = time.Unix(n, 0)
		if n, err = atoi("subnet_id"); err != nil {
			return nil, err
		}
		l.SubnetID = int(n)
		if n, err = atoi("state"); err != nil {
			return nil, err
		}
		l.State = int(n)
		l.UserContext = get("user_context")
		if l.UserContext != "" {
			if err := l.decodeRelayInfo(); err != nil {
				return nil, fmt.Errorf("lab: %s:%d: %w", name, line, err)
			}
		}
		leases = append(leases, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", name, err)
	}
	return leases, nil
}

// keaUnescape undoes Kea's CSV escaping ("&#x2c" for a comma, and so on).
var keaUnescape = strings.NewReplacer("&#x2c", ",", "&#x0d", "\r", "&#x0a", "\n", "&#x26", "&")

// decodeRelayInfo fills the Option 82 fields from the user context. Kea 2.2
// stores {"ISC": {"relay-agent-info": "0x<option 82 payload>"}}; Kea 2.4
// and later store {"ISC": {"relay-agent-info": {"sub-options": "0x...",
// ...}}}. Both are accepted.
func (l *KeaLease) decodeRelayInfo() error {
	var uc struct {
		ISC struct {
			RAI json.RawMessage `json:"relay-agent-info"`
		} `json:"ISC"`
	}
	if err := json.Unmarshal([]byte(l.UserContext), &uc); err != nil {
		return fmt.Errorf("user context %q: %w", l.UserContext, err)
	}
	if len(uc.ISC.RAI) == 0 {
		return nil
	}
	var s string
	if err := json.Unmarshal(uc.ISC.RAI, &s); err != nil {
		var obj struct {
			SubOptions string `json:"sub-options"`
		}
		if err := json.Unmarshal(uc.ISC.RAI, &obj); err != nil {
			return fmt.Errorf("relay-agent-info %s: %w", uc.ISC.RAI, err)
		}
		s = obj.SubOptions
	}
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	raw, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("relay-agent-info %q: %w", s, err)
	}
	l.RelayAgentInfo = raw
	for p := raw; len(p) > 0; {
		if len(p) < 2 || len(p) < 2+int(p[1]) {
			return fmt.Errorf("relay-agent-info %x: truncated sub-option", raw)
		}
		v := bytes.Clone(p[2 : 2+int(p[1])])
		switch p[0] {
		case 1:
			l.CircuitID = v
		case 2:
			l.RemoteID = v
		case 5:
			l.LinkSelection = v
		case 6:
			l.SubscriberID = v
		}
		p = p[2+int(p[1]):]
	}
	return nil
}
