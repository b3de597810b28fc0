package portal

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
)

//go:embed templates/page.html templates/portal.css
var assets embed.FS

var (
	pageTemplate = template.Must(template.ParseFS(assets, "templates/page.html"))
	css          = must(assets.ReadFile("templates/portal.css"))
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// page is what the template shows.
type page struct {
	Title, Heading string
	Errors         []summaryError // the error summary (role=alert), each linked to its field
	Lead           []string       // paragraphs before the form
	Form           *form
	After          []string // paragraphs after the form
	Link           *link
	Refresh        bool // reload /done every 5 s (the handover's progress)
	Still          bool // a Refresh page asked not to reload (/done?reload=off): a link to check again
}

type summaryError struct{ Field, Text string }

type link struct{ Href, Text string }

type form struct {
	Action, Token string
	Hidden        []hidden
	ISPs          []ispChoice // none: not asked
	AskCustomerID bool
	CustomerID    string
	AskPassword   bool
	PasswordLabel string
	// Replace are the customer's devices (MACs) offered to be replaced
	// by this one, at its device limit (none: not asked).
	Replace []string
	Submit  string
	Msg     map[string]string // field (isp, customer_id, password) → its message
}

type hidden struct{ Name, Value string }

type ispChoice struct {
	ISP
	Checked bool
}

// fieldAnchor is the id an error summary entry links to.
func fieldAnchor(field string) string {
	if field == "isp" {
		return "isp-0"
	}
	return field
}

// render writes p with status and the page headers (set by secure).
func (s *Server) render(w http.ResponseWriter, status int, p page) {
	if p.Title == "" {
		p.Title = p.Heading
	}
	if _, ok := w.(noReload); ok && p.Refresh {
		p.Refresh, p.Still = false, true
	}
	if len(p.Errors) > 0 {
		p.Title = "Error: " + p.Title // announced first by screen readers
	}
	var b bytes.Buffer
	if err := s.tmpl.Execute(&b, p); err != nil {
		s.log.Error("portal: page template", "err", err)
		http.Error(w, "Something went wrong on our side. Try again in a minute.", http.StatusInternalServerError)
		return
	}
	s.st.pages.Add(1)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// message renders a page of sentences, with a link back to the form.
func (s *Server) message(w http.ResponseWriter, status int, heading string, lead ...string) {
	s.render(w, status, page{Heading: heading, Lead: lead, Link: &link{Href: "/", Text: "Open the page again"}})
}

// displayName is an ISP's name as shown.
func (s *Server) displayName(name string) string {
	if p, ok := s.isps[name]; ok {
		return p.DisplayName
	}
	return name
}

// about says a duration the way the page does.
func about(d time.Duration) string {
	if d < 2*time.Minute {
		return "about " + plural(int((d+time.Second-1)/time.Second), "second")
	}
	return "about " + plural(int((d+time.Minute-1)/time.Minute), "minute")
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// formInput is what a posted form said (the password never goes back into
// a page).
type formInput struct {
	ISP, CustomerID, Password string
	// Replace is the device (MAC) this one replaces at the customer's
	// device limit, chosen on the form ("" none).
	Replace string
}

// moveWait is how long the bound device sub takes to switch to another
// ISP: until the client lease it holds runs out (it renews before, and
// that renewal is where the move happens), plus a DORA's few seconds, when
// that is sooner than MoveHint (client_lease_max / 2 + 5 s, which a
// shorter lease, e.g. what is left of a short ISP lease, beats); else
// MoveHint.
func (s *Server) moveWait(sub Subscriber) time.Duration {
	w := s.cfg.MoveHint
	if s.cfg.MoveHintNow != nil {
		w = s.cfg.MoveHintNow()
	}
	if left := time.Until(sub.ClientLeaseEnd); !sub.ClientLeaseEnd.IsZero() && left > 0 {
		w = min(w, left+5*time.Second)
	}
	return w
}

// wait is how long sub takes to switch to the ISP it chose: moveWait for
// a bound device, the handover's hint from the garden.
func (s *Server) wait(sub Subscriber) time.Duration {
	if sub.ISP != "" {
		return s.moveWait(sub)
	}
	return s.cfg.HandoverHint
}

// choosePage is the claim form: for a device being onboarded (in the
// garden for its customer's suspension, if suspended names the ISP), or,
// when current is set (the ISP it is on), the first step of a move.
func (s *Server) choosePage(token, current, suspended string, in formInput, pr problems) page {
	f := &form{Action: "/claim", Token: token, ISPs: s.ispChoices(in.ISP), AskCustomerID: true, CustomerID: in.CustomerID, Msg: pr.Fields,
		PasswordLabel: "Password"}
	withReplace(f, in, pr.Replace)
	hint := about(s.cfg.HandoverHint)
	p := page{Form: f}
	if current == "" {
		p.Heading = "Choose your Internet provider"
		p.Lead = []string{
			"This device is not yet connected to an Internet provider. Choose yours and sign in with the customer ID and password it gave you.",
			"What happens next: this device switches to the provider you chose by itself, within " + hint + ". You do not need to do anything else.",
		}
		if suspended != "" {
			n := s.displayName(suspended)
			p.Heading = "Your service is suspended"
			p.Lead = []string{
				"Your service with " + n + " is suspended: " + n + " can tell you why, and restore it. To get service from another provider instead, choose it and sign in with the customer ID and password it gave you.",
				"What happens next: this device switches to the provider you chose by itself, within " + hint + ". Once " + n + " restores your service, this device goes back to it by itself.",
			}
		}
		f.AskPassword = true
		f.Submit = "Sign in and connect"
	} else {
		cur := s.displayName(current)
		p.Heading = "Move to another Internet provider"
		p.Lead = []string{
			"This device is connected to " + cur + ". To move it, choose the new provider and enter the customer ID it gave you.",
			"What happens next: the next page names both providers and asks for your password. Nothing changes before you confirm there.",
		}
		f.Submit = "Continue"
	}
	p.Errors = pr.Summary
	return p
}

// ispChoices are the ISPs offered, checked the one named checked.
func (s *Server) ispChoices(checked string) []ispChoice {
	out := make([]ispChoice, len(s.cfg.ISPs))
	for i, p := range s.cfg.ISPs {
		out[i] = ispChoice{ISP: p, Checked: p.Name == checked}
	}
	return out
}

// confirmPage asks the bound subscriber sub to confirm the move to
// in.ISP with its password. A switch it chose before and that has not
// happened yet (sub.Claimed) goes ahead if it cancels: the cancel link
// says so.
func (s *Server) confirmPage(token string, sub Subscriber, in formInput, pr problems) page {
	cur, next := s.displayName(sub.ISP), s.displayName(in.ISP)
	q := "You are on " + cur + ". Move this device to " + next + "?"
	then := "When you confirm, this device leaves " + cur + " and switches to " + next + " within " + about(s.moveWait(sub)) + "."
	if sub.ISP == in.ISP {
		// Maybe the customer it is on (to stay, calling a switch
		// chosen before off): the portal does not know which.
		q = "You are on " + cur + ". Attach this device to " + next + " customer ID " + in.CustomerID + "?"
		then = "When you confirm, this device is " + next + "'s under that customer ID (if it already is, nothing changes; a switch to another provider chosen before is called off)."
	}
	cancel := "Cancel and stay on " + cur
	if sub.Claimed != "" && sub.Claimed != sub.ISP {
		cancel = "Cancel (the switch to " + s.displayName(sub.Claimed) + " chosen before goes ahead)"
	}
	p := page{
		Heading: "Move to " + next + "?",
		Lead: []string{q,
			"Customer ID at " + next + ": " + in.CustomerID + ".",
			then,
		},
		Form: &form{Action: "/claim?confirm=1", Token: token,
			Hidden:      []hidden{{"isp", in.ISP}, {"customer_id", in.CustomerID}},
			AskPassword: true, PasswordLabel: "Password for " + next, Submit: "Move to " + next, Msg: pr.Fields},
		Link:   &link{Href: "/", Text: cancel},
		Errors: pr.Summary,
	}
	if sub.ISP == in.ISP {
		p.Heading = "Stay with " + next + "?"
		p.Form.Submit = "Confirm"
	}
	withReplace(p.Form, in, pr.Replace)
	return p
}

// withReplace has f offer replace, the customer in's devices, to replace
// by this one (none: nothing): with the ISP and customer ID they are of
// (replaceFor), so that a choice is not sent with another customer ID the
// user corrected meanwhile.
func withReplace(f *form, in formInput, replace []string) {
	if len(replace) == 0 {
		return
	}
	f.Replace = replace
	f.Hidden = append(f.Hidden, hidden{"replace_for", replaceFor(in)})
}

// replaceFor names the customer a replace choice was offered for.
func replaceFor(in formInput) string { return in.ISP + " " + in.CustomerID }

// problems are what a form page says went wrong: the summary at the top
// (role=alert) and the message next to each field concerned.
type problems struct {
	Summary []summaryError
	Fields  map[string]string // isp, customer_id, password → message
	// Replace are the customer's devices a claim at its device limit may
	// replace (the form asks which).
	Replace []string
}

// fieldProblems lists the field messages in the summary, in the form's
// order, each linked to its field.
func fieldProblems(fields map[string]string) problems {
	pr := problems{Fields: fields}
	for _, f := range []string{"isp", "customer_id", "password"} {
		if t := fields[f]; t != "" {
			pr.Summary = append(pr.Summary, summaryError{Field: fieldAnchor(f), Text: t})
		}
	}
	return pr
}

// sentence is a summary of one sentence, linked to the field anchor
// ("" = no link), with the fields' own messages.
func sentence(text, anchor string, fields map[string]string) problems {
	return problems{Summary: []summaryError{{Field: anchor, Text: text}}, Fields: fields}
}

// pendingPage says the device will switch to isp within wait (from
// another ISP, at its next renewal of a client lease: moveWait; from
// onboarding: HandoverHint, later if its retry is due later).
func (s *Server) pendingPage(isp, current string, wait time.Duration) page {
	n := s.displayName(isp)
	return page{
		Heading: "You chose " + n,
		Lead: []string{
			"You chose " + n + ". This device will switch to " + n + " within " + about(wait) +
				" (it renews its address by itself; if it does not, turn Wi-Fi or the network cable off and on). You can close this page.",
			// A portal trial: the reload in the switch's gap (no
			// address yet) ended on the browser's error page.
			"While it switches, this device may be without a connection for a little while, and this page may not load then: open it again a little later.",
		},
		Refresh: true,
		// Until the switch, the choice can still be corrected (another
		// ISP or customer ID; the one it is on, to stay there).
		Link: s.againLink(current),
	}
}

// againLink is the link to the claim form again (?again=1, holding the
// choice made) while a choice has not taken effect, for a device on
// current ("": none). Staying is choosing the provider it is on, and its
// customer ID there, again.
func (s *Server) againLink(current string) *link {
	if current == "" {
		return &link{Href: "/?again=1", Text: "Chose the wrong provider or customer ID? Choose again"}
	}
	c := s.displayName(current)
	return &link{Href: "/?again=1", Text: "Chose the wrong provider or customer ID, or want to stay on " + c +
		"? Choose again (to stay, choose " + c + " and your customer ID there)"}
}

// retryPage says the device, back in the walled garden because isp
// refused it or did not answer, asks isp again within wait (a retry asked
// for by a claim again from the failure page, its outcome not known yet):
// it switches if isp has set up service for it by then, and is back here
// otherwise. Before, this was pendingPage, which promised the switch
// while the ISP might still refuse or stay silent.
func (s *Server) retryPage(isp string, wait time.Duration) page {
	n := s.displayName(isp)
	return page{
		Heading: "Asking " + n + " again",
		Lead: []string{
			"This device asks " + n + " again for service within " + about(wait) + ". If " + n +
				" has set up service for it, it switches to " + n + " then. If not, it comes back here and this page says so.",
			"While it asks, this device may be without a connection for a little while, and this page may not load then: open it again a little later.",
		},
		Refresh: true,
		Link:    s.againLink(""),
	}
}

// handoverFailed reports whether sub chose an ISP and is back in the
// walled garden because that ISP did not take it.
func handoverFailed(sub Subscriber) bool {
	return sub.Claimed != "" && sub.ISP == "" && sub.HandoverFailed != ""
}

// failedPage says the device sub tried to switch to sub.Claimed, which
// refused it or did not answer (sub.HandoverFailed), and that it tries
// again by itself (at sub.Retry, then the switch's time); and offers the
// claim form (token, in: what to show in it) to correct the choice
// (another customer ID or ISP) or, the same again, to try again now. It does not reload by itself: that would
// erase what the user types, and a reload while the device retries (no
// address for a while) would end on the browser's error page anyway.
func (s *Server) failedPage(sub Subscriber, token string, in formInput, pr problems) page {
	n := s.displayName(sub.Claimed)
	what := n + " refused it: " + n + " has not (yet) set up service for this device."
	switch sub.HandoverFailed {
	case HandoverUnanswered:
		what = n + " did not answer when this device asked it for service."
	case HandoverNotTaken:
		what = n + " has not taken it: it refused this device or did not answer."
	}
	wait := max(time.Until(sub.Retry), 0) + s.cfg.HandoverHint
	f := &form{Action: "/claim", Token: token, ISPs: s.ispChoices(in.ISP), AskCustomerID: true, CustomerID: in.CustomerID,
		AskPassword: true, PasswordLabel: "Password", Submit: "Sign in again", Msg: pr.Fields}
	withReplace(f, in, pr.Replace)
	return page{
		Heading: n + " has not connected this device yet",
		Errors:  pr.Summary,
		Lead: []string{
			"You chose " + n + withCustomerID(sub.ClaimedCustomerID) + " and this device tried to switch to it, but " + what,
			"Contact " + n + " and tell them this device is not getting service. Its hardware (MAC) address is " + binding.MACString(sub.MAC) + ".",
			"This device tries again by itself within " + about(wait) + ", and again after that, until " + n +
				" connects it: once " + n + " has fixed it, this device switches by itself.",
			"Has " + n + " fixed it already? Sign in again here with the same details: this device then tries again within " +
				about(s.cfg.HandoverHint) + ".",
			"Chose the wrong provider, or mistyped the customer ID? Choose your provider and sign in again here: " +
				"this device then switches to it within " + about(s.cfg.HandoverHint) + ".",
		},
		Form: f,
		After: []string{
			"This page does not update by itself. While this device tries again it is without a connection for a while, " +
				"and this page may not load then: open it again a little later.",
		},
		Link: &link{Href: "/done", Text: "Check again"},
	}
}

// withCustomerID is " with customer ID id", naming the ID a claim gave ("" if
// unknown).
func withCustomerID(id string) string {
	if id == "" {
		return ""
	}
	return " with customer ID " + id
}

// connectedPage says the device is on isp.
// fixedPage says the device, the network operator's (its configuration),
// stays on isp: the portal cannot move it.
func (s *Server) fixedPage(isp string) page {
	n := s.displayName(isp)
	return page{
		Heading: "Connected to " + n,
		Lead: []string{"This device is connected to " + n + ". The network operator set it up for " + n +
			", so its Internet provider cannot be changed on this page: ask the network operator."},
	}
}

func (s *Server) connectedPage(isp string) page {
	n := s.displayName(isp)
	return page{
		Heading: "Connected to " + n,
		Lead:    []string{"This device is connected to " + n + ". You can close this page."},
		Link:    &link{Href: "/", Text: "Move this device to another Internet provider"},
	}
}
