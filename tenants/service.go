package tenants

import (
	"context"
	"time"
)

// Service is the tenant model's operations, as the API calls them. Scope
// is the caller's business: the API passes an ISP actor's own ISP as isp
// and "" for the operator where a method allows all ISPs. Objects of
// another ISP than the one asked for are ErrNotFound (a tenant never
// learns that another tenant's object exists).
type Service interface {
	// ISPs lists the configured ISPs with their counts.
	ISPs(ctx context.Context) ([]ISPInfo, error)
	// HasISP reports whether name is a configured ISP.
	HasISP(name string) bool

	CreateCustomer(ctx context.Context, a Actor, isp string, in CustomerInput) (Customer, error)
	// ImportCustomer upserts one line of a bulk import (reruns are
	// safe: an identical line is "unchanged").
	ImportCustomer(ctx context.Context, a Actor, isp string, line int, in CustomerInput) ImportResult
	// ImportCustomers upserts a batch of lines (first: the line number
	// of ins[0]) in one transaction; one result per line, in order. A
	// customer twice in one batch is refused on its later line, the
	// error naming both lines.
	ImportCustomers(ctx context.Context, a Actor, isp string, first int, ins []CustomerInput) []ImportResult
	Customer(ctx context.Context, isp, id string) (Customer, error)
	Customers(ctx context.Context, isp string, o ListOptions) (Page[Customer], error)
	UpdateCustomer(ctx context.Context, a Actor, isp, id string, p CustomerPatch) (Customer, error)
	// DeleteCustomer ends its devices' bindings (RELEASE to the ISP),
	// detaches them and removes the customer.
	DeleteCustomer(ctx context.Context, a Actor, isp, id string) error

	// Devices lists devices: of isp ("" = all ISPs), of one customer if
	// customerID is set.
	Devices(ctx context.Context, isp, customerID string, o ListOptions) (Page[Device], error)
	// Device returns one device; isp "" = any ISP.
	Device(ctx context.Context, isp, mac string) (Device, error)
	// AttachDevice attaches a MAC to a customer of isp (ISP or operator;
	// the MAC must be unattached or already this ISP's: another ISP's is
	// ErrDeviceTaken, naming its holder to the operator only).
	AttachDevice(ctx context.Context, a Actor, isp string, in DeviceInput) (Device, error)
	// ImportDevices attaches a batch of devices (first: the line number
	// of ins[0]) in one transaction, each line as AttachDevice takes
	// it; one result per line, in order.
	ImportDevices(ctx context.Context, a Actor, isp string, first int, ins []DeviceInput) []DeviceImportResult
	// UpdateDevice changes a device of isp ("" = any ISP, operator): its
	// access pin. A binding on another access than the new pin ends (a
	// RELEASE to the ISP); a device of the configuration is read-only.
	UpdateDevice(ctx context.Context, a Actor, isp, mac string, p DevicePatch) (Device, error)
	// DetachDevice ends the device's binding and detaches it; isp "" =
	// any ISP (operator).
	DetachDevice(ctx context.Context, a Actor, isp, mac string) error
	// Claim attaches a MAC with the customer's credentials (another
	// ISP's MAC: ErrDeviceTaken, except for the portal, which moves it).
	Claim(ctx context.Context, a Actor, r ClaimRequest) (Device, error)
	// Block blocks or unblocks a MAC (operator): a blocked MAC's binding
	// ends and it gets no DHCP answer.
	Block(ctx context.Context, a Actor, mac string, blocked bool) (Device, error)
	// Move moves a device to another customer, of any ISP (operator).
	Move(ctx context.Context, a Actor, mac string, to MoveRequest) (Device, error)
	// PurgeISP removes every customer and device of an ISP the
	// configuration no longer has (operator).
	PurgeISP(ctx context.Context, a Actor, isp string) (PurgeResult, error)

	// Bindings lists DHCP bindings of isp ("" = all).
	Bindings(ctx context.Context, isp string, o ListOptions) (Page[Binding], error)
	// BindingsOf returns a MAC's DHCP bindings (isp's only, unless "").
	BindingsOf(ctx context.Context, isp, mac string) ([]Binding, error)

	// Events returns up to limit events of isp ("" = all) after seq:
	// for an ISP, its own sequence (Event.Seq).
	Events(ctx context.Context, isp string, after uint64, limit int) (EventPage, error)
	// EventsOfMAC returns up to limit events of the device mac: isp's
	// only, in its own sequence, unless isp is "" (every event of mac,
	// in the box's sequence); those after sequence *after, or with
	// after nil the newest limit, however far back in the log. Oldest
	// and Newest are Events' (the log's, or isp's). A MAC that does not
	// parse is ErrInvalid.
	EventsOfMAC(ctx context.Context, isp, mac string, after *uint64, limit int) (EventPage, error)
	// WaitEvents returns when an event of isp ("" = any) newer than
	// after (in the same sequence as Events) may exist, or ctx is done
	// (for streams).
	WaitEvents(ctx context.Context, isp string, after uint64) error

	Stats(ctx context.Context) (Stats, error)
}

// Event is one stored event as the API shows it. Seq is its number in
// the sequence of its reader: the event log's (subscribers.Event.Seq, one
// for the whole box) for the operator, the ISP's own
// (subscribers.Event.ISPSeq) for an ISP's events, its webhooks and the
// operator reading one ISP's events, so that an ISP never sees how many
// events the other ISPs had.
type Event struct {
	Seq uint64 `json:"seq"`
	// ISPSeq, in the operator's view only (EventView), is the event's
	// number in its ISP's own sequence: the seq its ISP's reads, stream
	// and webhooks show (0, left out, for an event with no ISP).
	ISPSeq     uint64    `json:"isp_seq,omitempty"`
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`
	MAC        string    `json:"mac,omitempty"`
	ISP        string    `json:"isp,omitempty"`
	CustomerID string    `json:"customer_id,omitempty"`
	Access     string    `json:"access,omitempty"`
	IP         string    `json:"ip,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	// LeaseEnd is the end of the lease the ISP's server granted (bound,
	// renewed); the client's own lease from ispmux may end sooner.
	LeaseEnd  *time.Time `json:"lease_end,omitempty"`
	Actor     string     `json:"actor,omitempty"`
	RequestID string     `json:"request_id,omitempty"`
}

// EventPage is a slice of the event log and the range the log holds:
// Oldest is the oldest kept sequence (a reader resuming after a sequence
// below Oldest-1 missed some), Newest the newest; for one ISP's events,
// in its own sequence (Event).
type EventPage struct {
	Events []Event `json:"events"`
	Oldest uint64  `json:"oldest"`
	Newest uint64  `json:"newest"`
}

// Stats is the box's counts.
type Stats struct {
	ISPs      int `json:"isps"`
	Customers int `json:"customers"`
	Devices   int `json:"devices"`
	Bindings  int `json:"bindings"`
}
