// Package portal is ispmux's captive portal: the web application a
// subscriber in the walled garden (an onboarding lease, no device record)
// reaches to choose its Internet provider and claim the device with the
// customer ID and password that provider gave it.
//
// The package owns the portal's HTTP side and nothing else: the HTTP
// listener that sends every request to https://Hostname/ (and refuses
// forms posted over HTTP without reading them), the HTTPS pages (net/http
// and html/template, no JavaScript), the RFC 8908 captive-portal API at
// /api/captive, the form's protection (Go's http.CrossOriginProtection, a
// token bound to the subscriber's MAC and a per-browser nonce cookie,
// SameSite=Strict, a CSP with frame-ancestors 'none'), the TLS
// certificate it serves (re-read by Reload) and its counters.
//
// The subscriber is always the one the caller's Directory finds for the
// request's source address (onboarding lease → MAC), never anything the
// browser sends. The claim itself is the caller's Claimer
// (*tenants.Tenants): its limits, its checks and its events apply (the
// claim carries the subscriber's circuit, which the limits count new
// claimants against: a guesser's made-up MACs spend its own circuit's);
// the portal maps its errors to plain sentences. Listeners, the network
// namespace, DHCP option 114 and the handover after a claim are the
// appliance's.
//
// A subscriber already on an ISP (Subscriber.ISP set) sees a form to move
// to another one: it chooses the ISP and gives the customer ID, then a
// confirmation page names the current and the new ISP and asks for the
// password there. The password is thus posted once, on the step that
// acts, and never kept by the portal between requests. The time the move
// is said to take is until the client lease the device holds runs out
// (Subscriber.ClientLeaseEnd, plus a DORA's few seconds) when that is
// sooner than Config.MoveHint.
//
// A device that chose an ISP and is back in the walled garden because
// that ISP refused it or did not answer (Subscriber.HandoverFailed) sees
// why, what to do, and the claim form (one step: it is on no ISP to
// leave), to claim again with another customer ID or ISP: the same POST
// /claim, token and Claimer. The same ISP and customer ID again (the ISP
// fixed it) asks the Directory for the handover's retry at once
// (Directory.RetryHandover), and the device is shown switching until the
// retry's outcome is known. That page does not reload by itself; the
// page of a device switching does, every 5 s, and links to the form again
// (/?again=1, holding the choice made), so that a wrong choice is
// corrected before the switch rather than after its failure.
package portal
