package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/tenants"
)

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = printable(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// printable returns s with its control characters (C0, tab and newline
// included, DEL, C1) written as escapes (\n, \t, \x1b): a cell is one
// line of one column, and text from outside (an ISP's DHCPNAK message in
// an event's reason, a customer ID) must not add rows or columns, or reach
// the operator's terminal as a control sequence.
func printable(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case isControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 || r >= 0x7f && r <= 0x9f }

func (t *table) flush() error { return t.tw.Flush() }

// columns is how a list prints as a table: its header and each item's
// cells.
type columns[T any] struct {
	header []string
	cells  func(T) []string
}

// write writes items as a table (the header alone when there are none).
func (c columns[T]) write(w io.Writer, items []T) error {
	t := newTable(w, c.header...)
	for _, it := range items {
		t.row(c.cells(it)...)
	}
	return t.flush()
}

// writeKV writes "key:  value" lines, aligned.
func writeKV(w io.Writer, kv [][2]string) error {
	t := newTable(w)
	for _, p := range kv {
		t.row(p[0]+":", p[1])
	}
	return t.flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

var ispColumns = columns[tenants.ISPInfo]{
	header: []string{"ISP", "CUSTOMERS", "DEVICES", "BINDINGS", "STATIC"},
	cells: func(i tenants.ISPInfo) []string {
		return []string{i.Name, strconv.Itoa(i.Customers), strconv.Itoa(i.Devices), strconv.Itoa(i.Bindings), strconv.Itoa(i.Static)}
	},
}

var customerColumns = columns[tenants.Customer]{
	header: []string{"CUSTOMER", "STATUS", "DEVICES", "LIMIT", "SOURCE", "CREATED", "UPDATED"},
	cells: func(c tenants.Customer) []string {
		return []string{c.ID, string(c.Status), strconv.Itoa(c.Devices), strconv.Itoa(c.DeviceLimit), orDash(c.Source),
			timeString(c.Created), timeString(c.Updated)}
	},
}

func writeCustomer(w io.Writer, c tenants.Customer) error {
	return writeKV(w, [][2]string{
		{"isp", c.ISP}, {"customer", c.ID}, {"status", string(c.Status)},
		{"devices", fmt.Sprintf("%d of %d", c.Devices, c.DeviceLimit)}, {"source", orDash(c.Source)},
		{"created", timeString(c.Created)}, {"updated", timeString(c.Updated)},
	})
}

var deviceColumns = columns[tenants.Device]{
	header: []string{"MAC", "ISP", "CUSTOMER", "ACCESS", "SOURCE", "BLOCKED", "UPDATED"},
	cells: func(d tenants.Device) []string {
		return []string{d.MAC, orDash(d.ISP), orDash(d.CustomerID), accessOrAny(d.Access), orDash(d.Source), yesNo(d.Blocked), timeString(d.Updated)}
	},
}

// accessOrAny is a device's access pin, "any" for none.
func accessOrAny(access string) string {
	if access == "" {
		return "any"
	}
	return access
}

func deviceKV(d tenants.Device) [][2]string {
	kv := [][2]string{
		{"mac", d.MAC}, {"isp", orDash(d.ISP)}, {"customer", orDash(d.CustomerID)}, {"access", accessOrAny(d.Access)},
		{"source", orDash(d.Source)}, {"blocked", yesNo(d.Blocked)}, {"updated", timeString(d.Updated)},
	}
	if d.StaticIP.IsValid() {
		kv = append(kv, [2]string{"static ip", d.StaticIP.String()})
	}
	return kv
}

func writeDevice(w io.Writer, d tenants.Device) error { return writeKV(w, deviceKV(d)) }

func bindingVLAN(v uint16) string {
	if v == 0 {
		return "-"
	}
	return strconv.Itoa(int(v))
}

var bindingColumns = columns[tenants.Binding]{
	header: []string{"MAC", "ISP", "CUSTOMER", "ACCESS", "VLAN", "IP", "EXPIRES"},
	cells: func(b tenants.Binding) []string {
		return []string{b.MAC, b.ISP, orDash(b.CustomerID), orDash(b.Access), bindingVLAN(b.VLAN), b.IP.String(), timeString(b.Expires)}
	},
}

// Event columns: the tables use a tabwriter; a followed stream, whose
// rows come one at a time, a fixed width per column (but the last), wide
// enough for its usual values: every kind, a MAC, an IPv4 address, a
// reason of a few words, an actor "isp:NAME", a sequence number of a
// store created since event numbers start at the clock (microseconds
// since the Unix epoch: 16 digits until the year 2286, a restored
// copy's jump of 2^32 and a million a second included; a store from
// before that numbers from 1 and its restored copies reach 11 digits).
// A longer cell is never cut:
// it pushes the rest of its own row to the right. REQUEST is the API
// request that made the change (with its ACTOR): what a caller quotes,
// and what `ctl events --request-id` looks for.
var (
	eventHeader = []string{"SEQ", "TIME", "KIND", "MAC", "ISP", "CUSTOMER", "IP", "REASON", "ACTOR", "REQUEST"}
	eventWidths = []int{16, 20, 16, 17, 10, 14, 15, 32, 20, 0}
)

func eventCells(ev tenants.Event) []string {
	return []string{strconv.FormatUint(ev.Seq, 10), timeString(ev.Time), ev.Kind, orDash(ev.MAC), orDash(ev.ISP),
		orDash(ev.CustomerID), orDash(ev.IP), orDash(ev.Reason), orDash(ev.Actor), orDash(ev.RequestID)}
}

// eventLine is one row of fixed-width columns (eventWidths).
func eventLine(cells []string) string {
	var b strings.Builder
	for i, c := range cells {
		c = printable(c)
		if i > 0 {
			b.WriteString("  ")
		}
		if i < len(cells)-1 {
			fmt.Fprintf(&b, "%-*s", eventWidths[i], c)
		} else {
			b.WriteString(c)
		}
	}
	return strings.TrimRight(b.String(), " ")
}

var eventColumns = columns[tenants.Event]{header: eventHeader, cells: eventCells}

func writeSubscriber(w io.Writer, v subscriberView) error {
	fmt.Fprintf(w, "subscriber %s\n\ndevice:\n", v.MAC)
	if v.Device == nil {
		fmt.Fprintln(w, "  not attached to a customer")
	} else {
		t := newTable(w)
		for _, p := range deviceKV(*v.Device)[1:] {
			t.row("  "+p[0]+":", p[1])
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	fmt.Fprint(w, "\nbinding:\n")
	switch {
	case v.Binding == nil && v.Device != nil && v.Device.StaticIP.IsValid():
		fmt.Fprintf(w, "  static %s (a [[subscriber]] entry of the configuration: no DHCP lease)\n", v.Device.StaticIP)
	case v.Binding == nil:
		fmt.Fprintln(w, "  none")
	default:
		b := v.Binding
		t := newTable(w)
		t.row("  ip:", b.IP.String())
		t.row("  isp:", b.ISP)
		t.row("  customer:", orDash(b.CustomerID))
		t.row("  access:", orDash(b.Access))
		if b.VLAN != 0 {
			t.row("  vlan:", strconv.Itoa(int(b.VLAN)))
		}
		exp := timeString(b.Expires)
		if !b.Expires.IsZero() {
			exp += "  (the ISP's lease)"
		}
		t.row("  expires:", exp)
		if !b.Since.IsZero() {
			t.row("  bound since:", timeString(b.Since))
		}
		if !b.ClientLeaseEnd.IsZero() {
			// The device's own lease, which ends sooner: a trial's
			// operator read the ISP's 30 min for the device's 30 s.
			t.row("  device's lease:", timeString(b.ClientLeaseEnd)+"  (from ispmux; renewed before, or the device went quiet)")
		}
		if v.Moving != nil {
			t.row("  moving:", fmt.Sprintf("to %s (customer %s): this binding forwards until the device's next DHCP message, "+
				"which ispmux NAKs so that it starts over with %s (within half [dhcp] client_lease_max)", v.Moving.ISP, orDash(v.Moving.CustomerID), v.Moving.ISP))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	fmt.Fprint(w, "\nwalled garden:\n")
	switch {
	case v.GardenUnknown:
		fmt.Fprintln(w, "  not known over the API (ispmux ctl on the box, through the control socket, shows it)")
	case v.Garden == nil && v.Handover == nil:
		fmt.Fprintln(w, "  none")
	default:
		t := newTable(w)
		if g := v.Garden; g != nil {
			t.row("  onboarding lease:", fmt.Sprintf("%s on %s, until %s", g.IP, g.Access, stamp(g.Expires)))
			if g.Chosen != "" || g.Suspended != "" {
				t.row("  chosen:", onboardingChosen(*g))
			}
		}
		if h := v.Handover; h != nil {
			t.row("  handover:", fmt.Sprintf("to %s (customer %s) on %s: %s", h.ISP, orDash(h.CustomerID), h.Access, handoverState(*h)))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(v.Drops) > 0 {
		// A spoofer or a flooder: what its port last dropped of it.
		fmt.Fprint(w, "\nits frames dropped (each port keeps the last MAC per reason):\n")
		t := newTable(w)
		for _, d := range v.Drops {
			t.row("  "+d.Reason+":", fmt.Sprintf("on %s, last at %s", d.Port, stamp(d.At)))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nrecent events (its newest %d of those the log keeps):\n", subscriberEvents)
	if len(v.Events) == 0 {
		fmt.Fprintln(w, "  none")
		return nil
	}
	t := newTable(w)
	t.row("  SEQ", "TIME", "KIND", "ISP", "CUSTOMER", "IP", "REASON", "ACTOR", "REQUEST")
	for _, ev := range v.Events {
		c := eventCells(ev)
		t.row("  "+c[0], c[1], c[2], c[4], c[5], c[6], c[7], c[8], c[9])
	}
	return t.flush()
}

func writeStatus(w io.Writer, st *ctlsock.Status) error {
	if err := writeKV(w, [][2]string{
		{"uptime", st.Uptime},
		{"leases", strconv.Itoa(st.Leases)},
		{"pending intents", strconv.Itoa(st.PendingIntents) + "  (messages to ISPs recorded, not yet sent)"},
		{"control", fmt.Sprintf("arp sent %d, arp learned %d, punts unhandled %d", st.Control.ARPSent, st.Control.ARPLearned, st.Control.PuntUnhandled)},
		{"restart pending", restartPending(st)},
		{"last reload", lastReload(st)},
	}); err != nil {
		return err
	}
	fmt.Fprintln(w)
	t := newTable(w, "PORT", "RX FRAMES", "RX BYTES", "TX FRAMES", "TX BYTES", "UP", "DOWN", "ARP", "ECHO", "ICMP ERRORS", "PUNTS", "TX FULL", "NO FRAME", "ERRORS", "LINK", "DROPS")
	for _, p := range st.Ports {
		link := "up"
		if p.Down {
			link = "down"
		}
		if p.Link != "" {
			link = p.Link
		}
		if p.LinkFlaps > 0 {
			link += fmt.Sprintf(" (%d flaps, %d re-opens)", p.LinkFlaps, p.Reopens)
		}
		u := func(n uint64) string { return strconv.FormatUint(n, 10) }
		// Forwarded, and of those by the XDP fast path (in no RX/TX
		// count: they never reach the AF_XDP sockets).
		fwd := func(n, fast uint64) string {
			if fast == 0 {
				return u(n)
			}
			return fmt.Sprintf("%d (xdp %d)", n, fast)
		}
		// ICMP errors sent, and those its budgets refused, by budget.
		icmp := u(p.ICMPErrors)
		if l := counters(p.ICMPLimited); l != "-" {
			icmp += " (limited " + l + ")"
		}
		t.row(p.Name, u(p.RxFrames), u(p.RxBytes), u(p.TxFrames), u(p.TxBytes), fwd(p.FwdUp, p.FastUp), fwd(p.FwdDown, p.FastDown), u(p.ARPReplies), u(p.Echo),
			icmp, u(p.Punts), u(p.TxFull), u(p.NoFrame), u(p.Errors), link, counters(p.Drops))
	}
	if err := t.flush(); err != nil {
		return err
	}
	// Who: the source of each port's last drop a subscriber caused (a
	// trial's operator saw spoofed_source=3 and nothing naming the
	// device).
	var last []string
	for _, p := range st.Ports {
		for _, d := range p.LastDrops {
			last = append(last, fmt.Sprintf("%s %s from %s at %s", p.Name, d.Reason, d.MAC, stamp(d.At)))
		}
	}
	if len(last) > 0 {
		fmt.Fprintf(w, "\nlast drop by cause: %s\n", strings.Join(last, "; "))
	}
	fmt.Fprintln(w)
	t = newTable(w, "ISP", "NEXT HOP", "STATE", "MAC")
	for _, i := range st.ISPs {
		t.row(i.Name, i.NextHop, i.State, orDash(i.MAC))
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "dhcp: %s\n\n", wrapCounters(counters(st.DHCP), len("dhcp: "), 100))
	if p := st.Portal; p != nil {
		fmt.Fprintf(w, "portal: https://%s/ at %s, link %s; %s\n\n", p.Hostname, p.Address, p.NextHop, counters(p.Counters))
	}
	if st.BindingsOmitted {
		fmt.Fprintf(w, "bindings: %d (more than %d: not listed here; `ispmux ctl bindings` pages them)\n", st.BindingsTotal, ctlsock.StatusBindingsMax)
	}
	t = newTable(w, "MAC", "ACCESS", "VLAN", "ISP", "IP", "STATIC", "EXPIRES", "SERVER")
	for _, b := range st.Bindings {
		t.row(b.MAC, b.Access, bindingVLAN(b.VLAN), b.ISP, b.IP, yesNo(b.Static), stamp(b.Expires), orDash(b.ServerID))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(st.Handovers) > 0 {
		// Between the garden (or the old ISP) and the chosen ISP: in
		// no other list.
		fmt.Fprintf(w, "\nhandovers (on the way to the ISP chosen): %d\n", len(st.Handovers))
		t = newTable(w, "MAC", "ACCESS", "ISP", "CUSTOMER", "STATE", "HELD UNTIL")
		for _, h := range st.Handovers {
			t.row(h.MAC, h.Access, h.ISP, h.CustomerID, handoverState(h), stamp(h.HeldUntil))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(st.Onboarding) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nonboarding (walled garden): %d\n", len(st.Onboarding))
	t = newTable(w, "MAC", "ACCESS", "IP", "EXPIRES", "CHOSEN")
	for _, o := range st.Onboarding {
		t.row(o.MAC, o.Access, o.IP, stamp(o.Expires), onboardingChosen(o))
	}
	return t.flush()
}

// handoverState is where a device's handover to the ISP it chose stands.
func handoverState(h ctlsock.HandoverStatus) string {
	switch {
	case h.Failed != "":
		return h.Failed + ": back to the garden at its next DISCOVER"
	case h.SilentSince != "":
		return "its ISP silent since " + stamp(h.SilentSince)
	}
	return "asking its ISP"
}

// onboardingChosen is the ISP a device in the walled garden chose ("-":
// none yet), with its handover's failure or retry.
func onboardingChosen(o ctlsock.OnboardingStatus) string {
	if o.Suspended != "" {
		return "- (suspended at " + o.Suspended + ": here to choose another ISP)"
	}
	chosen := orDash(o.Chosen)
	switch {
	case o.HandoverFailed != "" && o.HandoverRetry != "":
		chosen += " (handover " + o.HandoverFailed + ", retry " + stamp(o.HandoverRetry) + ")"
	case o.HandoverFailed != "":
		chosen += " (handover " + o.HandoverFailed + ")"
	case o.HandoverRetry != "":
		chosen += " (retry asked, " + stamp(o.HandoverRetry) + ")"
	}
	return chosen
}

// restartPending is status's line on the configuration read by a reload
// that only a restart applies.
func restartPending(st *ctlsock.Status) string {
	if len(st.RestartPending) == 0 {
		return "no"
	}
	return fmt.Sprintf("%s (the file read by the reload at %s differs from what runs until a restart)",
		strings.Join(st.RestartPending, ", "), stamp(st.RestartPendingSince))
}

// lastReload says whether the last reload applied the file: a refused
// one showed only in the log (a trial: systemctl reload succeeds either
// way).
func lastReload(st *ctlsock.Status) string {
	switch {
	case st.ReloadRefused == "" && st.LastReloadAt == "":
		return "none since the start"
	case st.ReloadRefused == "":
		// A trial read "applied (or none since the start)" as a riddle.
		return "applied at " + stamp(st.LastReloadAt)
	}
	// Several errors come a line each: one line here, "; " between (the
	// status line prints a newline as \n: a field trial).
	why := strings.ReplaceAll(strings.TrimSpace(st.ReloadRefused), "\n", "; ")
	if st.ReloadPartial {
		return fmt.Sprintf("APPLIED IN PART at %s: %s (the rest of the file applied; what the error names was not)", stamp(st.ReloadRefusedAt), why)
	}
	return fmt.Sprintf("REFUSED at %s: %s (the running configuration is not the file's)", stamp(st.ReloadRefusedAt), why)
}

// stamp is an RFC 3339 time of the status (its JSON's form) as the
// tables print every time (timeString: "2026-12-05 22:38:32Z", as ctl
// events and ctl subscriber do); "-" when empty, and anything else as it
// is. Before, ctl status printed the RFC 3339 form beside the others'.
func stamp(s string) string {
	if s == "" {
		return "-"
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return timeString(t)
}

// counters is "k=v k=v" in key order ("-" when none).
// wrapCounters breaks counters' line (name=value pairs, one space
// apart) into lines of at most width columns where it can, each after the
// first indented by indent spaces, to sit under a label of that width.
func wrapCounters(line string, indent, width int) string {
	var b strings.Builder
	col := indent
	for i, f := range strings.Fields(line) {
		if i > 0 {
			if col+1+len(f) > width {
				b.WriteString("\n" + strings.Repeat(" ", indent))
				col = indent
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(f)
		col += len(f)
	}
	return b.String()
}

func counters(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v > 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "-"
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
