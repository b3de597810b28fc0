package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/tenants"
)

// The ctl commands of the tenant model: customers, devices, claims,
// blocking and moves (over the control socket's API).

func ctlCustomers(e *ctlEnv, args []string) error {
	isp := args[0]
	return runList(e, listCmd[tenants.Customer]{
		columns: customerColumns,
		page: func(c *client.Client, o tenants.ListOptions) (tenants.Page[tenants.Customer], error) {
			return c.Customers(e.ctx, isp, o)
		},
		more: []string{isp},
	})
}

func ctlCustomer(e *ctlEnv, args []string) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	cu, err := c.Customer(e.ctx, args[0], args[1])
	if err != nil {
		return err
	}
	return e.showCustomer(cu)
}

func (e *ctlEnv) showCustomer(cu tenants.Customer) error {
	if e.g.json {
		return e.printJSON(cu)
	}
	return writeCustomer(e.stdout, cu)
}

func ctlCustomerAdd(e *ctlEnv, args []string) error {
	in := tenants.CustomerInput{ID: args[1], PasswordHash: e.o.passwordHash, DeviceLimit: e.o.deviceLimit}
	if e.o.passwordStdin && e.set["password-hash"] {
		return e.h.usage("--password-stdin and --password-hash are alternatives: give one")
	}
	if e.set["device-limit"] && e.o.deviceLimit < 1 {
		return e.h.usage("--device-limit must be at least 1, got %d", e.o.deviceLimit)
	}
	if e.o.suspended {
		in.Status = tenants.StatusSuspended
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	if e.o.passwordStdin {
		if in.Password, err = readPassword(e.ctx, e.stdin, e.stderr, "password for "+args[1]+": "); err != nil {
			return err
		}
	}
	cu, err := c.CreateCustomer(e.ctx, args[0], in)
	if err != nil {
		return err
	}
	return e.showCustomer(cu)
}

func ctlCustomerSet(e *ctlEnv, args []string) error {
	var p tenants.CustomerPatch
	if e.set["status"] {
		st := tenants.Status(e.o.status)
		if st != tenants.StatusActive && st != tenants.StatusSuspended {
			return e.h.usage("--status must be active or suspended, got %q", e.o.status)
		}
		p.Status = &st
	}
	if e.set["device-limit"] {
		if e.o.deviceLimit < 1 {
			return e.h.usage("--device-limit must be at least 1, got %d", e.o.deviceLimit)
		}
		p.DeviceLimit = &e.o.deviceLimit
	}
	if p.Status == nil && p.DeviceLimit == nil && !e.o.passwordStdin {
		return e.h.usage("nothing to change: give --status, --device-limit or --password-stdin")
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	if e.o.passwordStdin {
		pw, err := readPassword(e.ctx, e.stdin, e.stderr, "new password for "+args[1]+": ")
		if err != nil {
			return err
		}
		p.Password = &pw
	}
	cu, err := c.UpdateCustomer(e.ctx, args[0], args[1], p)
	if err != nil {
		return err
	}
	return e.showCustomer(cu)
}

func ctlCustomerDel(e *ctlEnv, args []string) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	if err := c.DeleteCustomer(e.ctx, args[0], args[1]); err != nil {
		return err
	}
	if e.g.json {
		// The API answers 204, no body: --json still prints one object.
		return json.NewEncoder(e.stdout).Encode(map[string]any{"isp": args[0], "customer_id": args[1], "deleted": true})
	}
	fmt.Fprintf(e.stdout, "deleted customer %s of %s\n", args[1], args[0])
	return nil
}

func ctlImport(e *ctlEnv, args []string) error {
	return runImport(e, args, func(c *client.Client, in io.Reader, fn func(tenants.ImportResult) error) error {
		return c.Import(e.ctx, args[0], in, fn)
	}, customerImportColumns, func(r tenants.ImportResult) (int, []string, string, string, string) {
		return r.Line, []string{r.CustomerID}, r.Result, r.Error, r.RequestID
	},
		[]string{"created", "updated", "unchanged"})
}

func ctlDeviceImport(e *ctlEnv, args []string) error {
	var taken int
	var first tenants.DeviceImportResult
	err := runImport(e, args, func(c *client.Client, in io.Reader, fn func(tenants.DeviceImportResult) error) error {
		return c.ImportDevices(e.ctx, args[0], in, fn)
	}, deviceImportColumns, func(r tenants.DeviceImportResult) (int, []string, string, string, string) {
		if r.Result == "error" && strings.Contains(r.Error, movedWith) {
			if taken++; taken == 1 {
				first = r
			}
		}
		return r.Line, []string{r.MAC, r.CustomerID}, r.Result, r.Error, r.RequestID
	}, []string{"attached", "moved", "unchanged"})
	if taken > 0 {
		// The operator's refusal of another ISP's device names the API
		// route that moves it, line by line; attach and claim add the
		// ctl command (moveHint), and so does the import, once.
		lines := "1 line names a device"
		if taken > 1 {
			lines = fmt.Sprintf("%d lines name devices", taken)
		}
		e.notice("%s another ISP has: `%s` moves line %d's (the old ISP serves it until its next renewal; --immediate ends that at once)",
			lines, e.again("move", first.MAC, args[0], first.CustomerID), first.Line)
	}
	return err
}

// movedWith is in the error of an operator's attach of another ISP's device
// (tenants' refusal names the route that moves it).
const movedWith = ": move it with POST /v1/devices/"

// importColumn is a column of an import's table that names what a line
// is about, and its width.
type importColumn struct {
	header string
	width  int
}

// The import tables print each line's result as it comes (an import may
// have a million lines: no table is buffered), so their columns have a
// fixed width, wide enough for the usual values: a MAC, a customer ID of
// up to 16 characters (24 where it is the only one); a longer cell is
// never cut, it pushes the rest of its own row to the right. The device
// import printed "MAC CUSTOMER" in one 24-wide DEVICE column: a MAC and a
// customer ID of 7 characters or more overflowed it, and RESULT and
// ERROR were out of line on every such row (a field trial).
var (
	customerImportColumns = []importColumn{{"CUSTOMER", 24}}
	deviceImportColumns   = []importColumn{{"MAC", 17}, {"CUSTOMER", 16}}
)

// importLine is one row of an import's table: LINE, the cells of cols,
// RESULT, ERROR.
func importLine(cols []importColumn, line string, who []string, result, errText string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%7s", line)
	for i, c := range cols {
		fmt.Fprintf(&b, "  %-*s", c.width, printable(orDash(who[i])))
	}
	fmt.Fprintf(&b, "  %-9s  %s", printable(result), printable(errText))
	return strings.TrimRight(b.String(), " ")
}

// runImport sends the NDJSON file args[1] ("-": stdin) to an import
// (send) and prints each line's result (fields: its line number, the
// cells of cols (what the line names), its result, its error, and the
// request id an error line carries), then the counts of each of kinds
// and of the failures; it fails if any line did.
func runImport[Res any](e *ctlEnv, args []string, send func(*client.Client, io.Reader, func(Res) error) error,
	cols []importColumn, fields func(Res) (line int, who []string, result, errText, requestID string), kinds []string) error {
	var in io.Reader = e.stdin
	if args[1] != "-" {
		f, err := os.Open(args[1])
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return fmt.Errorf("import: %s is a directory: give an NDJSON file (or - for stdin)", args[1])
		}
		in = f
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	var n, failed int
	counts := map[string]int{}
	enc := json.NewEncoder(e.stdout)
	header, requestID := false, ""
	err = send(c, in, func(r Res) error {
		n++
		line, who, result, errText, id := fields(r)
		counts[result]++
		if result == "error" {
			failed++
			requestID = id
		}
		if e.o.errorsOnly && result != "error" {
			return nil
		}
		if e.g.json {
			return enc.Encode(r)
		}
		// The header comes with the first row printed: an import
		// refused as a whole prints only its error (on stderr), and
		// --errors with none failed nothing.
		if !header {
			header = true
			heads := make([]string, len(cols))
			for i, c := range cols {
				heads[i] = c.header
			}
			fmt.Fprintln(e.stdout, importLine(cols, "LINE", heads, "RESULT", "ERROR"))
		}
		_, err := fmt.Fprintln(e.stdout, importLine(cols, strconv.Itoa(line), who, result, errText))
		return err
	})
	if err != nil {
		return err
	}
	summary := fmt.Sprintf("import: %d %s:", n, plural(n, "line", "lines"))
	for _, k := range kinds {
		summary += fmt.Sprintf(" %d %s,", counts[k], k)
	}
	e.notice("%s %d failed", summary, failed)
	if failed > 0 && requestID != "" {
		// An error may ask to quote it (another ISP's device).
		return fmt.Errorf("import: %d of %d %s failed (request id %s)", failed, n, plural(n, "line", "lines"), requestID)
	}
	if failed > 0 {
		return fmt.Errorf("import: %d of %d %s failed", failed, n, plural(n, "line", "lines"))
	}
	return nil
}

func ctlDevices(e *ctlEnv, args []string) error {
	isp, customer := optionalISP(args), e.o.customer
	more := []string{isp}
	if customer != "" {
		more = append(more, "--customer "+customer)
	}
	return runList(e, listCmd[tenants.Device]{
		columns: deviceColumns,
		page: func(c *client.Client, o tenants.ListOptions) (tenants.Page[tenants.Device], error) {
			return c.Devices(e.ctx, isp, customer, o)
		},
		more: more,
	})
}

func (e *ctlEnv) showDevice(d tenants.Device) error {
	if e.g.json {
		return e.printJSON(d)
	}
	return writeDevice(e.stdout, d)
}

func ctlDeviceAdd(e *ctlEnv, args []string) error {
	if err := e.checkMAC("MAC", args[1]); err != nil {
		return err
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	d, err := c.AttachDevice(e.ctx, args[0], tenants.DeviceInput{MAC: args[1], CustomerID: args[2], Access: e.o.access})
	if err != nil {
		return e.moveHint(err, args[1], args[0], args[2])
	}
	return e.showDevice(d)
}

func ctlDeviceSet(e *ctlEnv, args []string) error {
	if err := e.checkMAC("MAC", args[1]); err != nil {
		return err
	}
	var p tenants.DevicePatch
	n := 0
	if e.set["access"] {
		if e.o.access == "" {
			return e.h.usage("--access needs an access name (--any-access clears the pin)")
		}
		p.Access = &e.o.access
		n++
	}
	if e.o.anyAccess {
		none := ""
		p.Access = &none
		n++
	}
	if e.o.pinBound {
		p.PinToBinding = true
		n++
	}
	if n != 1 {
		return e.h.usage("give one of --access NAME, --bound and --any-access")
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	d, err := c.UpdateDevice(e.ctx, args[0], args[1], p)
	if err != nil {
		return err
	}
	return e.showDevice(d)
}

func ctlDeviceDel(e *ctlEnv, args []string) error {
	if err := e.checkMAC("MAC", args[1]); err != nil {
		return err
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	if err := c.DetachDevice(e.ctx, args[0], args[1]); err != nil {
		return err
	}
	if e.g.json {
		return json.NewEncoder(e.stdout).Encode(map[string]any{"isp": args[0], "mac": args[1], "detached": true})
	}
	fmt.Fprintf(e.stdout, "detached %s from %s\n", args[1], args[0])
	return nil
}

func ctlClaim(e *ctlEnv, args []string) error {
	if err := e.checkMAC("MAC", args[2]); err != nil {
		return err
	}
	if e.o.replace != "" {
		if err := e.checkMAC("--replace", e.o.replace); err != nil {
			return err
		}
	}
	if !e.o.passwordStdin && !isTerminal(e.stdin) {
		return e.h.usage("the customer's password: pipe it with --password-stdin (stdin is not a terminal to prompt on)")
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	pw, err := readPassword(e.ctx, e.stdin, e.stderr, "password of "+args[1]+": ")
	if err != nil {
		return err
	}
	d, err := c.Claim(e.ctx, tenants.ClaimRequest{ISP: args[0], CustomerID: args[1], Password: pw, MAC: args[2],
		Replace: e.o.replace, Access: e.o.access})
	if err != nil {
		return e.replaceHint(e.moveHint(err, args[2], args[0], args[1]))
	}
	return e.showDevice(d)
}

// replaceHint is err, a claim's; when it is the customer's device limit,
// it names claim's --replace (report names the customer's devices).
func (e *ctlEnv) replaceHint(err error) error {
	var p *client.Error
	if !errors.As(err, &p) || len(p.Devices) == 0 {
		return err
	}
	return hinted{err, "or claim again with --replace one of them"}
}

// moveHint is err, an attach or claim of mac to isp's customer, with
// the ctl commands that do what the operator's refusal names by its API
// routes: for another ISP's device (POST /v1/devices/MAC/move: an ISP's
// refusal names none, nor the one of a device of the configuration, which
// a move refuses) the move; for a device the operator blocked while no
// ISP had it (POST /v1/devices/MAC/unblock, or the move, still blocked)
// the unblock and the move.
func (e *ctlEnv) moveHint(err error, mac, isp, customer string) error {
	var p *client.Error
	if !errors.As(err, &p) || !strings.Contains(p.Detail, "/move") {
		return err
	}
	switch p.Slug() {
	case "device-unavailable":
		return hinted{err, fmt.Sprintf("`%s` moves it (the old ISP serves it until its next renewal; --immediate ends that at once, and the device is without service until its next DHCP message, within half client_lease_max)",
			e.again("move", mac, isp, customer))}
	case "device-blocked":
		return hinted{err, fmt.Sprintf("`%s` lifts the block (then attach it again), or `%s` attaches it, still blocked",
			e.again("unblock", mac), e.again("move", mac, isp, customer))}
	}
	return err
}

func ctlPurgeISP(e *ctlEnv, args []string) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	res, err := c.PurgeISP(e.ctx, args[0])
	if err != nil {
		return err
	}
	if e.g.json {
		return json.NewEncoder(e.stdout).Encode(res)
	}
	fmt.Fprintf(e.stdout, "purged ISP %s: %d customers, %d devices\n", res.ISP, res.Customers, res.Devices)
	return nil
}

func ctlBlock(e *ctlEnv, args []string) error   { return e.block(args[0], true) }
func ctlUnblock(e *ctlEnv, args []string) error { return e.block(args[0], false) }

func (e *ctlEnv) block(mac string, blocked bool) error {
	if err := e.checkMAC("MAC", mac); err != nil {
		return err
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	var d tenants.Device
	if blocked {
		d, err = c.Block(e.ctx, mac)
	} else {
		d, err = c.Unblock(e.ctx, mac)
	}
	if err != nil {
		return err
	}
	if !blocked && d.ISP == "" && !e.g.json {
		// The operator's block of a MAC no ISP had: its unblock
		// removed the device.
		fmt.Fprintf(e.stdout, "unblocked %s: no ISP has it, so its device is removed (the MAC is unknown again)\n", d.MAC)
		return nil
	}
	return e.showDevice(d)
}

func ctlMove(e *ctlEnv, args []string) error {
	if err := e.checkMAC("MAC", args[0]); err != nil {
		return err
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	from := ""
	if old, err := c.Device(e.ctx, "", args[0]); err == nil {
		from = old.ISP
	}
	d, err := c.Move(e.ctx, args[0], tenants.MoveRequest{ISP: args[1], CustomerID: args[2], Immediate: e.o.immediate})
	if err != nil {
		return err
	}
	if from != args[1] { // another customer of the same ISP keeps its binding
		e.warnUnreachable(args[1])
	}
	return e.showDevice(d)
}

// warnUnreachable says so when isp, which a device was just moved to, has
// its router unresolved: the device is without service from its NAK (its
// next renewal; at once with --immediate) until the router answers (a
// switching trial's move to such an ISP was accepted without a word). Over
// the control socket only: the API has no next hops.
func (e *ctlEnv) warnUnreachable(isp string) {
	if e.set["api"] {
		return
	}
	st, err := fetchStatus(e)
	if err != nil {
		return
	}
	for _, i := range st.ISPs {
		if i.Name == isp && i.State == "incomplete" {
			when := "from its next renewal"
			if e.o.immediate {
				when = "from now"
			}
			e.notice("warning: %s's router %s is not resolved (ctl status, next hops): the device is without service %s until it answers", isp, i.NextHop, when)
		}
	}
}

// plural is one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
