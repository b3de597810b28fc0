// Package tenants is the tenant model of ispmux and its single writer: ISPs
// (from the configuration) own customers (a customer ID that is the Option
// 82 subscriber-id, an argon2id password hash, a status and a device
// limit); devices (subscriber MACs) are attached to one customer, from the
// configuration, the API or a claim with the customer's credentials.
//
// Every change goes through a Service method: validated, written to the
// store in one durable transaction with its event (actor and request id
// included), published to the in-memory registry the DHCP path reads
// (before the method returns, so a change is visible to DHCP before the API
// answers), and, when it takes service away (suspend, delete, block, move,
// detach), the subscriber's live binding is ended through the DHCP proxy's
// intents (a RELEASE to the old ISP on the subscriber's behalf).
//
// The HTTP API (package api) is a thin layer over Service: it maps
// principals to scopes and errors to problem details.
package tenants

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ispmux/ispmux/registry"
)

// ActorKind says who made a change.
type ActorKind string

// Actor kinds.
const (
	ActorOperator ActorKind = "operator" // the operator's token or the control socket
	ActorISP      ActorKind = "isp"      // an ISP's token (its own tenant only)
	ActorClaim    ActorKind = "claim"    // a claim-scoped token (installer)
	ActorConfig   ActorKind = "config"   // the configuration file ([[subscriber]])
	// ActorPortal is the captive portal acting for the subscriber on its
	// own line (the portal identified the device by its address): its
	// claim may take the device from another ISP's customer (a move the
	// subscriber makes, with the new ISP's credentials). Never an API
	// token's kind.
	ActorPortal ActorKind = "portal"
)

// Actor is who made a change: recorded with its event.
type Actor struct {
	Kind ActorKind
	// Name is the token's name (never the token), "socket" or "config".
	Name string
	// ISP is the tenant of an ActorISP (its scope).
	ISP string
	// RequestID ties the change to one API request.
	RequestID string
}

// Status is a customer's status.
type Status string

// Customer statuses.
const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended"
)

// Device sources (registry's: the DHCP proxy reads them too).
const (
	SourceConfig = registry.SourceConfig
	SourceAPI    = registry.SourceAPI
	SourceClaim  = registry.SourceClaim
)

// Customer is an ISP's customer as the API shows it (never its password).
type Customer struct {
	ISP         string    `json:"isp"`
	ID          string    `json:"customer_id"`
	Status      Status    `json:"status"`
	DeviceLimit int       `json:"device_limit"`
	Devices     int       `json:"devices"`
	Source      string    `json:"source"` // "api" or "config"
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
}

// CustomerInput creates or upserts a customer. Exactly one of Password
// (plaintext, hashed with argon2id) and PasswordHash (an argon2id or
// bcrypt PHC string) may be set; neither leaves a customer that cannot
// be claimed (devices attached by the ISP or the operator only).
type CustomerInput struct {
	ID           string `json:"customer_id"`
	Password     string `json:"password,omitempty"`
	PasswordHash string `json:"password_hash,omitempty"`
	Status       Status `json:"status,omitempty"`       // "" = active
	DeviceLimit  int    `json:"device_limit,omitempty"` // 0 = 1
	// PasswordGiven: the JSON it was read from had a password key, so
	// an empty one is an error (as a PATCH's), not "no password".
	PasswordGiven bool `json:"-"`
	// PasswordHashGiven: the same for password_hash (an empty one was
	// taken for none: a customer created without a password, a trial).
	PasswordHashGiven bool `json:"-"`
}

// UnmarshalJSON reads a CustomerInput, noting whether it gave a password
// or a password hash (PasswordGiven, PasswordHashGiven).
func (in *CustomerInput) UnmarshalJSON(b []byte) error {
	type plain CustomerInput
	var x struct {
		plain
		Password     *string `json:"password,omitempty"`
		PasswordHash *string `json:"password_hash,omitempty"`
	}
	if err := json.Unmarshal(b, &x); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			// The field as the caller wrote it, not through x.
			te.Field = strings.TrimPrefix(te.Field, "plain.")
		}
		return err
	}
	*in = CustomerInput(x.plain)
	if x.Password != nil {
		in.Password, in.PasswordGiven = *x.Password, true
	}
	if x.PasswordHash != nil {
		in.PasswordHash, in.PasswordHashGiven = *x.PasswordHash, true
	}
	return nil
}

// CustomerPatch changes a customer; nil fields are left alone. The
// customer ID never changes (it is what the ISP's DHCP server sees).
type CustomerPatch struct {
	Password     *string `json:"password,omitempty"`
	PasswordHash *string `json:"password_hash,omitempty"`
	Status       *Status `json:"status,omitempty"`
	DeviceLimit  *int    `json:"device_limit,omitempty"`
}

// Device is a subscriber MAC attached to a customer.
type Device struct {
	MAC        string    `json:"mac"`
	ISP        string    `json:"isp"`
	CustomerID string    `json:"customer_id"`
	Access     string    `json:"access,omitempty"` // pinned to this access entry ("" = any)
	Source     string    `json:"source"`           // config, api, claim
	Blocked    bool      `json:"blocked"`
	Updated    time.Time `json:"updated"`
	// StaticIP is the address a [[subscriber]] entry of the
	// configuration gives it (bound at start, no DHCP; no Binding is
	// listed for it); absent otherwise.
	StaticIP netip.Addr `json:"static_ip,omitzero"`
	// Unchanged is set by AttachDevice when the device was attached to
	// that customer already (nothing changed: the API answers 200, not
	// 201). Not part of the JSON.
	Unchanged bool `json:"-"`
}

// Binding is a DHCP lease a device holds.
type Binding struct {
	MAC        string     `json:"mac"`
	ISP        string     `json:"isp"`
	CustomerID string     `json:"customer_id,omitempty"`
	Access     string     `json:"access"`
	VLAN       uint16     `json:"vlan,omitempty"`
	IP         netip.Addr `json:"ip"`
	// Expires is the end of the lease the ISP's server granted; the
	// client's own lease from ispmux ([dhcp] client_lease_max at most)
	// may end sooner.
	Expires time.Time `json:"expires"`
	// ClientLeaseEnd is when the device's own lease from ispmux runs
	// out (it renews before): absent when not known (no lease given
	// since ispmux's start; a static subscriber). A device that stops
	// renewing keeps its binding, and its ISP lease, until Expires.
	ClientLeaseEnd time.Time `json:"client_lease_end,omitzero"`
	// Since is when the device bound at this ISP with this client
	// identifier, kept through its renewals, restarts and backups:
	// absent for a binding stored before ispmux kept it (record format
	// 6) and renewed only since.
	Since time.Time `json:"since,omitzero"`
}

// ISPInfo is one ISP with its counts.
type ISPInfo struct {
	Name      string `json:"name"`
	Customers int    `json:"customers"`
	Devices   int    `json:"devices"`
	Bindings  int    `json:"bindings"` // DHCP bindings
	Static    int    `json:"static"`   // static subscribers of the configuration (no DHCP binding)
}

// Page is one page of a list: Next is the cursor of the next page ("" at
// the end), passed back as After.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// ListOptions selects a page: After is a cursor from a previous Page
// ("" = from the start), Limit the page size (0 = DefaultLimit, at most
// MaxLimit).
type ListOptions struct {
	After string
	Limit int
}

// Page sizes.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// ClaimRequest attaches MAC to the customer (ISP, CustomerID) given its
// password. Replace, if set, names a device of that customer to detach in
// the same step (at the device limit).
//
// Circuit is, for the portal's claims, the circuit the device's frames
// come in on (its access port and VLAN: portal.Subscriber.Circuit): the
// claim limits count the device, and the new claimants a guesser makes
// up there, against it (ClaimLimits). It is never read from JSON, and
// other actors' is ignored: the API's claims are counted by their token,
// and a caller naming its circuit would choose whose tokens it spends.
type ClaimRequest struct {
	ISP        string `json:"isp"`
	CustomerID string `json:"customer_id"`
	Password   string `json:"password"`
	MAC        string `json:"mac"`
	Replace    string `json:"replace,omitempty"`
	Access     string `json:"access,omitempty"`
	Circuit    string `json:"-"`
}

// DeviceInput attaches a device to a customer (ISP or operator).
type DeviceInput struct {
	MAC        string `json:"mac"`
	CustomerID string `json:"customer_id"`
	Access     string `json:"access,omitempty"`
}

// DevicePatch changes a device (ISP or operator); nil fields are left
// alone. Access pins the device to that access entry (its DHCP on any
// other is refused), "" clears the pin (any access). PinToBinding pins it
// to the access it holds its DHCP binding on now, instead of naming one
// (not with Access).
type DevicePatch struct {
	Access       *string `json:"access,omitempty"`
	PinToBinding bool    `json:"pin_to_binding,omitempty"`
}

// MoveRequest moves a device to another customer, possibly of another ISP
// (operator only).
type MoveRequest struct {
	ISP        string `json:"isp"`
	CustomerID string `json:"customer_id"`
	// Immediate cuts the old ISP's service at once (its binding ended, a
	// RELEASE sent). Without it the move is make-before-break: the old
	// binding keeps forwarding until the device's next renewal, which
	// ispmux NAKs so that it starts over at the new ISP (at most half the
	// client lease later).
	Immediate bool `json:"immediate,omitempty"`
}

// ImportResult is the outcome of one line of a bulk import.
type ImportResult struct {
	Line       int    `json:"line"`
	CustomerID string `json:"customer_id,omitempty"`
	Result     string `json:"result"` // created, updated, unchanged, error
	Error      string `json:"error,omitempty"`
	// RequestID is the import request's id, on an error line (the API
	// sets it: an error may ask to quote it).
	RequestID string `json:"request_id,omitempty"`
}

// Errors, for errors.Is; the API maps them to HTTP statuses.
var (
	ErrNotFound       = errors.New("not found")               // 404 (also for another tenant's objects)
	ErrConflict       = errors.New("conflict")                // 409 (exists; config-sourced, read-only)
	ErrInvalid        = errors.New("invalid")                 // 400/422
	ErrForbidden      = errors.New("forbidden")               // 403
	ErrBadCredentials = errors.New("invalid credentials")     // 403 on claim (the API and the portal): one generic message
	ErrRateLimited    = errors.New("too many attempts")       // 429 with Retry-After
	ErrDeviceLimit    = errors.New("customer's device limit") // 409, with the devices (DeviceLimitError)
	// ErrDeviceTaken: the MAC is attached to another ISP's customer (an
	// ISP's attach, a claim token's claim); a conflict (409). The
	// operator's error names that ISP and customer; anyone else's names
	// neither, nor how the device was attached.
	ErrDeviceTaken = fmt.Errorf("%w: device registered with another provider", ErrConflict)
	// ErrSuspended: a portal claim with a suspended customer's right
	// password (its device would get no service); a conflict (409).
	ErrSuspended = fmt.Errorf("%w: customer suspended", ErrConflict)
	// ErrBlocked: an attach or claim of a MAC the operator blocked while
	// no ISP had it (409; the portal's generic conflict page).
	ErrBlocked = fmt.Errorf("%w: device blocked by the operator", ErrConflict)
	// ErrNoRoom: an attach or claim of a device new to the box refused
	// for want of a place (the box's maximum, or the ISP's share of it
	// with several ISPs: noRoom); a conflict (409). The portal tells the
	// subscriber so, where its generic conflict page spoke of moving a
	// device that was not being moved.
	ErrNoRoom = errors.New("no room for another device")
)

// noRoomError is an ErrNoRoom refusal, worded by its caller: errors.Is
// finds ErrNoRoom and ErrConflict in it, and its text is msg alone.
type noRoomError struct{ msg string }

func (e noRoomError) Error() string { return e.msg }

func (e noRoomError) Is(target error) bool { return target == ErrNoRoom || target == ErrConflict }

// noRoom returns the ErrNoRoom refusal: "conflict: " and the formatted
// text, as a fmt.Errorf of ErrConflict words it.
func noRoom(format string, args ...any) error {
	return noRoomError{ErrConflict.Error() + ": " + fmt.Sprintf(format, args...)}
}

// RateLimitError says when to try again. Busy: not for attempts made,
// another claim for the customer was being checked (a second or less).
type RateLimitError struct {
	RetryAfter time.Duration
	Busy       bool
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("%v: retry after %s", ErrRateLimited, e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// DeviceLimitError names the customer's devices, so the caller can offer
// "replace device X".
type DeviceLimitError struct {
	Limit   int
	Devices []string // MACs
	// Replaceable are the Devices a claim may replace: not the
	// configuration's (read-only).
	Replaceable []string
	// Claim: the refused call was a claim, the one call with a replace
	// field; an attach or a move is told to detach one instead.
	Claim bool
}

func (e *DeviceLimitError) Error() string {
	what := "detach one of them first (or raise the customer's device_limit)"
	switch {
	case e.Claim && len(e.Replaceable) == len(e.Devices):
		what = "claim again with replace set to one of them"
	case e.Claim && len(e.Replaceable) > 0:
		what = fmt.Sprintf("claim again with replace set to one of %v (the others are the configuration's)", e.Replaceable)
	case e.Claim:
		what = "none can be replaced (the configuration's): ask the operator, or raise the customer's device_limit"
	}
	// "reached" leads, its figure after: ctl drops what repeats the
	// problem's title ("Customer's device limit reached"), which a
	// trial read twice.
	return fmt.Sprintf("%v reached: limit %d, attached %v; %s", ErrDeviceLimit, e.Limit, e.Devices, what)
}

// Is makes errors.Is(err, ErrDeviceLimit) true.
func (e *DeviceLimitError) Is(target error) bool { return target == ErrDeviceLimit }
