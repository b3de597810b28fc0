// Package webhooks tells each ISP what happens to its customers: every
// event of the ISP's part of the event log (subscribers.Store, the
// events-by-isp index) is POSTed to the ISP's [[isp]] webhook_url, signed
// by the Standard Webhooks 1.0 rules, at least once and in order.
//
// # Messages
//
// One event per request (a receiver dedupes by webhook-id, which is one
// event's sequence number, so a batch would have no id of its own). Every
// number an ISP's receiver gets is in the ISP's own sequence
// (subscribers.Event.ISPSeq: consecutive per ISP, never the box's event
// log sequence, whose gaps would count the other ISPs' events; a new
// store's start after the clock at its creation, so that a box rebuilt
// with a new store never repeats its old ids: subscribers/eventbase.go). The
// body is the event as the ISP's API reads show it (tenants.Event: seq, time, kind,
// mac, isp, customer_id, access, ip, lease_end, reason, actor, request_id;
// tenants.ISPEventView makes both, so they cannot drift apart; the empty
// ones left out), Content-Type application/json, with the headers
//
//	webhook-id:        the event's sequence number, the ISP's ("1201"), the same on every attempt
//	webhook-timestamp: the attempt's time, Unix seconds (re-signed on every attempt)
//	webhook-signature: v1,<base64 HMAC-SHA256 over id "." timestamp "." body>
//
// The HMAC key is the base64-decoded part of the whsec_<base64> secret in
// webhook_secret_file (24..64 bytes; Sign, Verify). The log holds the
// events of ISPs with a webhook that their receivers have not acknowledged
// past its retention (100 000 events by default), up to 4× it in all and
// 30 days (Manager tells the store which ISPs: Store.HoldEventsFor). If
// the log trimmed events before they were delivered all the same,
// the receiver gets a synthetic message instead of them: kind "events-lost",
// first_seq and last_seq naming the range of the ISP's sequence numbers
// that is gone, webhook-id "lost-FIRST-LAST"; then delivery goes on after
// the gap.
//
// # Delivery
//
// One worker per ISP with a webhook_url: a receiver that is down, slow or
// refusing delays nobody else. The worker reads its ISP's events after its
// cursor (Store.WebhookEvents, up to 256 at a time) and delivers them one
// at a time, in order: a 2xx acknowledges the event; anything else (3xx:
// redirects are not followed; 4xx, 5xx, a connection error, the 10 s
// request timeout, a TLS verification failure) is retried, with the same
// webhook-id and a new timestamp and signature, after an exponential
// back-off with jitter: 1 s doubling up to webhook_retry_max (5 min by
// default), each delay drawn in [d/2, d] (Backoff), and no shorter than
// the answer's Retry-After (seconds or an HTTP-date, a 429 or 503's) up to
// webhook_retry_max. An event a receiver
// keeps refusing therefore holds up that ISP's later events (in order,
// at least once), and the status shows it (attempts, last error, lag).
// A receiver named by a host name (resolved by DNS its ISP controls, at
// every connection) is not connected to at a loopback, unspecified,
// link-local or multicast address, nor at one of the box's own: the
// attempt fails (Manager.dial), so an ISP cannot make the box post to a
// service on the box or its link, or port-scan them through its
// webhook's last error. An address written in webhook_url, or localhost,
// is dialled as it is (the operator's own choice).
// When the worker has nothing to send it waits on Store.WaitEventsOf: a new
// event is sent as soon as its commit wakes it (no polling).
//
// TLS is verified, against the system roots or the PEM file
// webhook_ca_file; http is allowed only to a loopback host or with
// webhook_insecure = true (configs checks it). No proxy from the
// environment is used.
//
// # Cursor
//
// The delivery cursor (the ISP's sequence number of the last event the
// receiver acknowledged) lives in the store (Store.SetWebhookCursor, durable). An
// acknowledgement moves the in-memory cursor at once; a committer
// goroutine stores it, coalescing (one store write covers every
// acknowledgement since the previous one, and writes are at least 100 ms
// apart), while the worker sends the next event, so the fsync is not in
// the delivery path. Run stores the last acknowledged cursor before it
// returns: a clean restart neither loses nor repeats an acknowledged
// event. After a crash (kill -9, power loss) the events acknowledged
// after the last stored cursor (at most those of the last 100 ms and of
// one store write) are sent again: the receiver drops them by
// webhook-id. No event is lost: the cursor never moves past an event that
// was not acknowledged. An ISP whose webhook_url is configured for the
// first time starts at the newest event at that moment (the history is on
// GET /v1/isps/{isp}/events), and the cursor stays when the URL changes or
// is removed.
//
// # Status
//
// Manager.Status gives per ISP the cursor, the lag (that ISP's events not
// yet acknowledged), the attempts at the current event, the last error
// and its time, the last success, and totals of deliveries, failed
// attempts and events-lost messages: for `ispmux ctl`, metrics and the
// ISP's own GET /v1/isps/{isp}/webhook.
package webhooks
