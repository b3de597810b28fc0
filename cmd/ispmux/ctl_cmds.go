package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/tenants"
)

// printJSON writes v as indented JSON.
func (e *ctlEnv) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// checkLimit refuses a --limit out of 1..tenants.MaxLimit (0 only when
// not given: the default).
func (e *ctlEnv) checkLimit() error {
	if e.o.limit < 0 || e.o.limit > tenants.MaxLimit || e.o.limit == 0 && e.set["limit"] {
		return e.h.usage("--limit must be 1..%d, got %d", tenants.MaxLimit, e.o.limit)
	}
	return nil
}

// listCmd is what one paged list command (customers, devices, bindings)
// states; runList does the rest.
type listCmd[T any] struct {
	columns columns[T]
	// check refuses a bad combination of the command's own arguments and
	// flags (a usage error, after --limit's, before anything is dialled);
	// nil: none.
	check func() error
	// page fetches the page selected by --after and --limit.
	page func(c *client.Client, o tenants.ListOptions) (tenants.Page[T], error)
	// more are the arguments and flags the next page's hint repeats
	// after the command's name ("" left out).
	more []string
}

// runList runs a paged list command: --limit checked, one page fetched,
// printed as JSON (the page) or as a table followed, on stderr, by how to
// get the next page.
func runList[T any](e *ctlEnv, l listCmd[T]) error {
	if err := e.checkLimit(); err != nil {
		return err
	}
	if l.check != nil {
		if err := l.check(); err != nil {
			return err
		}
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	p, err := l.page(c, tenants.ListOptions{After: e.o.after, Limit: e.o.limit})
	if err != nil {
		return err
	}
	p.Items = nonNil(p.Items)
	if e.g.json {
		return e.printJSON(p)
	}
	if err := l.columns.write(e.stdout, p.Items); err != nil {
		return err
	}
	e.moreNotice(p.Next, l.more...)
	return nil
}

// optionalISP is the optional ISP argument of a list of one ISP or all.
func optionalISP(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	return ""
}

// moreNotice says how to get the next page of a list.
func (e *ctlEnv) moreNotice(next string, args ...string) {
	if next == "" {
		return
	}
	words := []string{e.cmd.name}
	for _, a := range args {
		if a != "" {
			words = append(words, a)
		}
	}
	if e.o.limit > 0 {
		words = append(words, "--limit", strconv.Itoa(e.o.limit))
	}
	e.notice("more: `%s` shows the next page", e.again(append(words, "--after", next)...))
}

// checkMAC refuses what is not a MAC address before any request.
func (e *ctlEnv) checkMAC(what, s string) error {
	if hw, err := net.ParseMAC(s); err != nil || len(hw) != 6 {
		return e.h.usage("%s: %q is not a MAC address (02:00:00:00:00:07)", what, s)
	}
	return nil
}

// statusTimeout bounds `ctl status` (the API client's default timeout; a
// variable for the tests).
var statusTimeout = 30 * time.Second

// fetchStatus reads the appliance's status over its control socket,
// bounded as the API client's calls are: a wedged daemon is an error, not
// a status that never comes.
func fetchStatus(e *ctlEnv) (*ctlsock.Status, error) {
	sock, err := e.socketPath()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(e.ctx, statusTimeout)
	defer cancel()
	return ctlsock.FetchStatus(ctx, sock)
}

func ctlStatus(e *ctlEnv, _ []string) error {
	st, err := fetchStatus(e)
	if err != nil {
		return err
	}
	if e.g.json {
		return e.printJSON(st)
	}
	return writeStatus(e.stdout, st)
}

// ctlReload has the appliance reload its configuration file and prints
// what the reload did; an error (exit 1) unless it applied the whole
// file. With SIGHUP alone (systemctl reload's kill -HUP) a refused reload
// succeeded: its error showed only in the log and in ctl status (a
// trial).
func ctlReload(e *ctlEnv, _ []string) error {
	sock, err := e.socketPath()
	if err != nil {
		return err
	}
	st, err := ctlsock.Reload(e.ctx, sock)
	if err != nil {
		return err
	}
	if e.g.json {
		if err := e.printJSON(st); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "reload: %s\nrestart pending: %s\n", lastReload(st), restartPending(st))
	}
	switch {
	case st.ReloadPartial:
		return errors.New("reload applied in part (see above)")
	case st.ReloadRefused != "":
		return errors.New("reload refused: the running configuration stays (see above)")
	}
	return nil
}

func ctlBackup(e *ctlEnv, args []string) error {
	sock, err := e.socketPath()
	if err != nil {
		return err
	}
	r, err := ctlsock.Backup(e.ctx, sock, args[0], e.o.force)
	if errors.Is(err, ctlsock.ErrBackupExists) {
		return fmt.Errorf("%w: give a new OUT, or --force to replace it", err)
	}
	if err != nil {
		return err
	}
	if e.g.json {
		return e.printJSON(r)
	}
	fmt.Fprintf(e.stdout, "%s: %d bytes, sha256 %s\n", r.File, r.Bytes, r.SHA256)
	return nil
}

func ctlISPs(e *ctlEnv, _ []string) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	isps, err := c.ISPs(e.ctx)
	if err != nil {
		return err
	}
	if e.g.json {
		return e.printJSON(tenants.Page[tenants.ISPInfo]{Items: nonNil(isps)})
	}
	return ispColumns.write(e.stdout, isps)
}

func ctlBindings(e *ctlEnv, args []string) error {
	isp := optionalISP(args)
	return runList(e, listCmd[tenants.Binding]{
		columns: bindingColumns,
		page: func(c *client.Client, o tenants.ListOptions) (tenants.Page[tenants.Binding], error) {
			return c.Bindings(e.ctx, isp, o)
		},
		more: []string{isp},
	})
}

func ctlWebhook(e *ctlEnv, args []string) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	st, err := c.Webhook(e.ctx, args[0])
	if err != nil {
		return err
	}
	if e.g.json {
		return e.printJSON(st)
	}
	return writeKV(e.stdout, [][2]string{
		{"isp", st.ISP}, {"url", st.URL}, {"cursor", strconv.FormatUint(st.Cursor, 10)}, {"lag", strconv.Itoa(st.Lag)},
		{"attempts", strconv.Itoa(st.Attempts)}, {"next attempt", timeString(st.NextAttempt)}, {"last success", timeString(st.LastSuccess)},
		{"last error", st.LastError}, {"last error at", timeString(st.LastErrorTime)},
		{"delivered", strconv.FormatUint(st.Delivered, 10)}, {"failures", strconv.FormatUint(st.Failures, 10)},
		{"lost", strconv.FormatUint(st.Lost, 10)},
	})
}

func ctlStats(e *ctlEnv, _ []string) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	st, err := c.Stats(e.ctx)
	if err != nil {
		return err
	}
	if e.g.json {
		return e.printJSON(st)
	}
	return writeKV(e.stdout, [][2]string{
		{"isps", strconv.Itoa(st.ISPs)}, {"customers", strconv.Itoa(st.Customers)},
		{"devices", strconv.Itoa(st.Devices)}, {"bindings", strconv.Itoa(st.Bindings)},
	})
}

// subscriberView is what `ctl subscriber MAC` shows.
type subscriberView struct {
	MAC     string           `json:"mac"`
	Device  *tenants.Device  `json:"device"`  // null: not attached
	Binding *tenants.Binding `json:"binding"` // null: no lease
	// Moving is set when the device is registered at another ISP than
	// its binding's: a move under way (make-before-break), its binding
	// at the old ISP until its next DHCP message.
	Moving *movingView `json:"moving,omitempty"`
	// Garden is its onboarding lease in the walled garden, Handover its
	// way to the ISP it chose (neither lease now), from the control
	// socket's status; both null over the API (GardenUnknown).
	Garden        *ctlsock.OnboardingStatus `json:"walled_garden"`
	Handover      *ctlsock.HandoverStatus   `json:"handover"`
	GardenUnknown bool                      `json:"walled_garden_unknown,omitempty"`
	// Drops are the ports' last drops this MAC caused (spoofed_source,
	// dhcp_flood, ...: a port keeps the last MAC per reason), from the
	// control socket's status.
	Drops  []portDrop      `json:"last_drops,omitempty"`
	Events []tenants.Event `json:"events"` // its recent events, oldest first
}

// movingView is where a device being moved goes.
type movingView struct {
	ISP        string `json:"isp"`
	CustomerID string `json:"customer_id"`
}

// portDrop is a port's last drop of a reason, caused by the subscriber.
type portDrop struct {
	Port string `json:"port"`
	ctlsock.LastDrop
}

// subscriberEvents is how many of a subscriber's events the view shows:
// its newest of all those the log keeps, read by MAC (GET …/events?mac=,
// the store's index). It looked among the log's newest 10,000 events,
// minutes of a box of 100k subscribers: a device's events of an hour ago
// showed as none.
const subscriberEvents = 20

func ctlSubscriber(e *ctlEnv, args []string) error {
	if err := e.checkMAC("MAC", args[0]); err != nil {
		return err
	}
	hw, _ := net.ParseMAC(args[0])
	mac := hw.String()
	c, err := e.client()
	if err != nil {
		return err
	}
	v := subscriberView{MAC: mac, Events: []tenants.Event{}}
	isp := e.o.isp
	d, err := c.Device(e.ctx, isp, mac)
	switch {
	case err == nil:
		v.Device = &d
	case !errors.Is(err, tenants.ErrNotFound):
		return err
	}
	// Its bindings at any ISP (a moved device keeps its old ISP's until
	// it renews), one lookup per circuit.
	bs, err := c.BindingsOf(e.ctx, isp, mac)
	if err != nil {
		return err
	}
	for i := range bs {
		if v.Binding == nil || bs[i].Expires.After(v.Binding.Expires) {
			v.Binding = &bs[i]
		}
	}
	if v.Device != nil && v.Binding != nil && v.Device.ISP != v.Binding.ISP {
		// A switching trial saw device: beta, binding: alpha, and no
		// word of a move under way.
		v.Moving = &movingView{ISP: v.Device.ISP, CustomerID: v.Device.CustomerID}
	}
	evs, err := c.EventsOfMAC(e.ctx, isp, mac, -1, subscriberEvents)
	if err != nil {
		return err
	}
	v.Events = append(v.Events, evs.Items...)
	if err := subscriberGarden(e, &v); err != nil {
		return err
	}
	if v.Device == nil && v.Binding == nil && v.Garden == nil && v.Handover == nil && len(v.Events) == 0 && len(v.Drops) == 0 {
		if v.GardenUnknown {
			return fmt.Errorf("%s: no device, binding or recent event (a walled garden lease is not known over the API: ctl on the box, through the control socket, shows it)", mac)
		}
		return fmt.Errorf("%s: no device, binding, walled garden lease or recent event", mac)
	}
	if e.g.json {
		return e.printJSON(v)
	}
	return writeSubscriber(e.stdout, v)
}

// subscriberGarden fills v's walled garden lease and handover from the
// control socket's status (bounded: the onboarding leases, the handovers
// under way, and the bindings up to ctlsock.StatusBindingsMax); over the
// API, where there is no status, it says they are not known.
func subscriberGarden(e *ctlEnv, v *subscriberView) error {
	if e.set["api"] {
		v.GardenUnknown = true
		return nil
	}
	st, err := fetchStatus(e)
	if err != nil {
		return err
	}
	for i := range st.Onboarding {
		if strings.EqualFold(st.Onboarding[i].MAC, v.MAC) {
			v.Garden = &st.Onboarding[i]
		}
	}
	for i := range st.Handovers {
		if strings.EqualFold(st.Handovers[i].MAC, v.MAC) {
			v.Handover = &st.Handovers[i]
		}
	}
	for _, p := range st.Ports {
		for _, d := range p.LastDrops {
			if strings.EqualFold(d.MAC, v.MAC) {
				v.Drops = append(v.Drops, portDrop{p.Name, d})
			}
		}
	}
	return nil
}

func ctlToken(e *ctlEnv, _ []string) error {
	if e.o.force && e.o.file == "" {
		return e.h.usage("--force needs --file")
	}
	tok, line := auth.NewToken()
	if e.o.file != "" {
		if fi, err := os.Stat(e.o.file); err == nil && fi.IsDir() {
			return fmt.Errorf("token: %s is a directory: give the token file's name", e.o.file)
		}
		if _, err := os.Stat(filepath.Dir(e.o.file)); err != nil {
			return fmt.Errorf("token: cannot write %s: its directory: %w", e.o.file, err)
		}
		if _, err := os.Lstat(e.o.file); err == nil && !e.o.force {
			return fmt.Errorf("token: %s exists: replacing a live token file ends its token at the next SIGHUP or restart; "+
				"give a new FILE, or --force to replace it", e.o.file)
		}
		if err := writeFileAtomic(e.o.file, []byte(line+"\n"), 0o600); err != nil {
			return fmt.Errorf("token: %w", err)
		}
	}
	if e.g.json {
		v := struct {
			Token  string `json:"token"`
			SHA256 string `json:"sha256"`
			File   string `json:"file,omitempty"`
		}{tok, line, e.o.file}
		return e.printJSON(v)
	}
	if e.o.file != "" {
		fmt.Fprintln(e.stdout, tok)
		e.notice("wrote %s (name %q); the token above is the client's (%s or --token-file); SIGHUP makes the box read the file",
			e.o.file, auth.TokenName(e.o.file), tokenEnv)
		return nil
	}
	fmt.Fprintf(e.stdout, "%s\n%s\n", tok, line)
	return nil
}

// writeFileAtomic writes data to a temporary file next to path and
// renames it over path. A file replaced keeps its mode, owner and group
// (a token file the service reads as root:ispmux 0640, docs/DEPLOY.md);
// a new one gets mode.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
				f.Close()
				return fmt.Errorf("keep %s's owner and group: %w", path, err)
			}
		}
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
