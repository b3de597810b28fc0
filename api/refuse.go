package api

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"time"
)

// refuseRetryAfter is the Retry-After of the answer to a connection past
// its source's share: the source's other connections free a slot as soon
// as one of them ends.
const refuseRetryAfter = 1

// refusedAnswer is the whole answer to a connection past its source's
// share: 503 with Retry-After and Connection: close, and a problem
// (unavailable) on one line that says why. The request is not read: it
// is the same for every request.
var refusedAnswer = func() []byte {
	p := newProblem("unavailable", "too many connections from your address (its share of the API's [api] max_connections): "+
		"reuse or close the ones it holds, then retry")
	p.RetryAfter = refuseRetryAfter
	body, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	body = append(body, '\n')
	head := "HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: application/problem+json\r\n" +
		"Cache-Control: no-store\r\n" +
		"Retry-After: " + strconv.Itoa(refuseRetryAfter) + "\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	return append([]byte(head), body...)
}()

// refuseDrain is the most a refused connection's client may send that is
// read (and dropped) while it closes.
const refuseDrain = 64 << 10

// refuseConn returns the LimitListener's Refuse: it answers a connection
// past its source's share with refusedAnswer, within timeout all told,
// before the listener closes it, so that its client learns why instead of
// seeing a reset. Over TLS (tlsCfg set) the handshake comes first: it is
// the only way to say anything a TLS client reads (an alert before it
// names nothing but a failed handshake), and it costs what the same
// client's connection within its share costs; at most maxRefusing such
// answers run at once. The request is never read: after the answer the
// write side is shut (FIN) and what the client sent is dropped until it
// closes, since a connection closed with its request unread is reset
// (RST), and a reset may make the client drop the 503 before reading it.
func refuseConn(tlsCfg *tls.Config, timeout time.Duration) func(net.Conn) {
	return func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(timeout))
		w := io.Writer(c)
		if tlsCfg != nil {
			tc := tls.Server(c, tlsCfg)
			if tc.Handshake() != nil {
				return
			}
			w = tc
		}
		if _, err := w.Write(refusedAnswer); err != nil {
			return
		}
		if tc, ok := w.(*tls.Conn); ok {
			_ = tc.CloseWrite() // close_notify, before the FIN
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, refuseDrain))
	}
}
