package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ispmux/ispmux/tenants"
)

// importTypes are the media types an import body may be sent as: NDJSON
// under its names (x-ndjson, ndjson, jsonl) and plain JSON (a one-line
// body is one JSON value).
var importTypes = map[string]bool{
	"application/x-ndjson": true,
	"application/ndjson":   true,
	"application/jsonl":    true,
	"application/json":     true,
}

// importTypeList is importTypes for a client to read, NDJSON's usual name
// first; importAcceptPost is the same as an Accept-Post header's value (a
// comma-separated list: "or" in it made the header invalid, a trial).
const (
	importTypeList   = "application/x-ndjson, application/ndjson, application/jsonl or application/json"
	importAcceptPost = "application/x-ndjson, application/ndjson, application/jsonl, application/json"
)

// utf8BOM is the UTF-8 byte order mark some editors and spreadsheet
// exports put at the start of a file.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// skipBOM discards a UTF-8 byte order mark at the start of the body (only
// there: elsewhere it is part of a line, and JSON does not allow it), so
// that an exported file's first line is not refused as bad JSON.
func skipBOM(br *bufio.Reader) {
	if b, _ := br.Peek(len(utf8BOM)); bytes.Equal(b, utf8BOM) {
		_, _ = br.Discard(len(utf8BOM))
	}
}

// bomText is the error for a JSON text that starts with a UTF-8 byte
// order mark where none is skipped (what: "the body", "the line"): JSON
// has none (RFC 8259 §8.1), and encoding/json's own error names its first
// byte as the character 'ï', which the client never sent.
func bomText(what, where string) string {
	return what + " starts with a byte order mark (U+FEFF), which JSON does not allow: " + where
}

// importSpec is what one kind of bulk import (customers, devices) gives
// serveImport: how a line decodes, the key a batch holds once, the
// Service call for a batch, and the result of a line refused before it.
type importSpec[In, Res any] struct {
	noun   string // "customer", "device": for the messages
	decode func(line []byte) (In, error)
	key    func(In) string
	run    func(ctx context.Context, first int, batch []In) []Res
	// refused is the result of line (its raw bytes, maybe empty) refused
	// with msg before it reached the Service.
	refused func(line int, raw []byte, msg string) Res
	// setLine numbers a result the Service gave.
	setLine func(res *Res, line int)
	// mark gives an error result the request's id (its error may ask to
	// quote it: an attach of another ISP's device; a trial found it in
	// the X-Request-Id header only).
	mark func(res *Res, requestID string)
}

// importCustomers is POST /v1/isps/{isp}/customers:import: one
// CustomerInput per line (serveImport).
func (s *Server) importCustomers(w http.ResponseWriter, r *http.Request, c *call) {
	serveImport(s, w, r, importSpec[tenants.CustomerInput, tenants.ImportResult]{
		noun:   "customer",
		decode: decodeLine[tenants.CustomerInput],
		key:    func(in tenants.CustomerInput) string { return in.ID },
		run: func(ctx context.Context, first int, batch []tenants.CustomerInput) []tenants.ImportResult {
			return s.svc.ImportCustomers(ctx, c.actor, c.isp, first, batch)
		},
		refused: func(line int, raw []byte, msg string) tenants.ImportResult {
			return tenants.ImportResult{Line: line, CustomerID: lineField(raw, "customer_id"), Result: "error", Error: msg}
		},
		setLine: func(res *tenants.ImportResult, line int) { res.Line = line },
		mark: func(res *tenants.ImportResult, id string) {
			if res.Result == "error" {
				res.RequestID = id
			}
		},
	})
}

// importDevices is POST /v1/isps/{isp}/devices:import: one DeviceInput
// per line (serveImport).
func (s *Server) importDevices(w http.ResponseWriter, r *http.Request, c *call) {
	serveImport(s, w, r, importSpec[tenants.DeviceInput, tenants.DeviceImportResult]{
		noun:   "device",
		decode: decodeLine[tenants.DeviceInput],
		key:    deviceKey,
		run: func(ctx context.Context, first int, batch []tenants.DeviceInput) []tenants.DeviceImportResult {
			return s.svc.ImportDevices(ctx, c.actor, c.isp, first, batch)
		},
		refused: func(line int, raw []byte, msg string) tenants.DeviceImportResult {
			return tenants.DeviceImportResult{Line: line, MAC: lineField(raw, "mac"), CustomerID: lineField(raw, "customer_id"), Result: "error", Error: msg}
		},
		setLine: func(res *tenants.DeviceImportResult, line int) { res.Line = line },
		mark: func(res *tenants.DeviceImportResult, id string) {
			if res.Result == "error" {
				res.RequestID = id
			}
		},
	})
}

// serveImport reads an NDJSON body line by line (one spec.decode value
// per line) and answers one result per non-blank line, as NDJSON, while
// it reads: the body may be far larger than what the server keeps in
// memory. Its body limit is Limits.MaxImportBody (a line at most
// Limits.MaxImportLine); over it, the last result says so and the rest is
// not read. The status is 200 once the first line is read: per-line
// errors are in the lines.
func serveImport[In, Res any](s *Server, w http.ResponseWriter, r *http.Request, spec importSpec[In, Res]) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || !importTypes[mt] {
			// Accept-Post (registered with IANA, W3C LDP §7.1) names
			// them for a client that reads headers.
			w.Header().Set("Accept-Post", importAcceptPost)
			s.problem(w, r, "unsupported-media", fmt.Sprintf("send one JSON %s per line as %s, not %q", spec.noun, importTypeList, ct))
			return
		}
		if msg := charsetProblem(params); msg != "" {
			s.problem(w, r, "unsupported-media", msg)
			return
		}
	}
	rc := http.NewResponseController(w)
	// Read while writing results (HTTP/1.1 would otherwise stop reading
	// the body at the first write), with the import's own deadlines.
	_ = rc.EnableFullDuplex()
	deadline := time.Now().Add(s.Limits.ImportTimeout)
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline)

	body := http.MaxBytesReader(w, r.Body, s.Limits.MaxImportBody)
	br := bufio.NewReaderSize(body, s.Limits.MaxImportLine)
	skipBOM(br)
	ctx := r.Context()
	started := false
	var bw *bufio.Writer
	var enc *json.Encoder
	requestID := w.Header().Get("X-Request-Id")
	emit := func(res Res) error {
		spec.mark(&res, requestID)
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			bw = bufio.NewWriterSize(w, 32<<10)
			enc = json.NewEncoder(bw)
		}
		if err := enc.Encode(res); err != nil {
			return err
		}
		// Flush when the input is drained (the client waits for us) or
		// the buffer is full; not after every line.
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
			return rc.Flush()
		}
		return nil
	}
	finish := func() {
		if bw != nil {
			_ = bw.Flush()
		}
	}
	// Consecutive good lines go to the Service in batches (one store
	// transaction each); a batch is sent when full, when a line that is
	// not part of it comes (blank, bad, too long), when the input read so
	// far is used up (the client may be waiting for results) and at the
	// end. Results go out in line order.
	var batch []In
	inBatch := map[string]bool{} // the batch's keys (spec.key)
	first := 0
	flushBatch := func() error {
		if len(batch) == 0 {
			return nil
		}
		res := spec.run(ctx, first, batch)
		for i := range batch {
			var r Res
			if i < len(res) {
				r = res[i]
			} else {
				r = spec.refused(first+i, nil, "no result")
			}
			spec.setLine(&r, first+i)
			if err := emit(r); err != nil {
				return err
			}
		}
		batch = batch[:0]
		clear(inBatch)
		return nil
	}
	readErr := func(line int, err error) {
		if flushBatch() != nil {
			return
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) && !started {
			s.problem(w, r, "too-large", fmt.Sprintf("body over the import limit of %d bytes", mbe.Limit))
			return
		}
		msg := "reading the body: " + oneLine(err.Error())
		if mbe != nil {
			msg = fmt.Sprintf("body over the import limit of %d bytes: this line and the rest were not read", mbe.Limit)
		}
		_ = emit(spec.refused(line, nil, msg))
		finish()
	}
	lineErr := func(line int, raw []byte, msg string) error {
		if err := flushBatch(); err != nil {
			return err
		}
		return emit(spec.refused(line, raw, msg))
	}
	lineNo := 0
	firstLine := true // no non-blank line read yet
	for {
		if ctx.Err() != nil {
			finish()
			return
		}
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			lineNo++
			// Skip the rest of the over-long line.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				readErr(lineNo, err)
				return
			}
			if lineErr(lineNo, nil, fmt.Sprintf("line longer than %d bytes", s.Limits.MaxImportLine)) != nil {
				return
			}
			if err == io.EOF {
				break
			}
			continue
		}
		if len(line) > 0 && (err == nil || err == io.EOF) { // never a line cut by a read error
			lineNo++
			t := bytes.TrimSpace(line)
			if firstLine && len(t) > 0 && t[0] == '[' {
				// A JSON array (application/json is taken): its
				// lines are no NDJSON, but a pretty-printed one's
				// last element is, and was imported alone (a trial).
				s.problem(w, r, "bad-request", fmt.Sprintf("the body is a JSON array (line %d starts with [): send one JSON %s per line (NDJSON: no brackets, no commas); nothing was imported", lineNo, spec.noun))
				return
			}
			firstLine = firstLine && len(t) == 0
			switch in, derr := spec.decode(t); {
			case len(t) == 0:
				if flushBatch() != nil {
					return
				}
			case derr != nil:
				// The line's customer or device, if it names one
				// (the result says whose line it was).
				if lineErr(lineNo, t, derr.Error()) != nil {
					return
				}
			default:
				// A customer (device) named again goes in the next
				// batch: lines are taken in line order, however the
				// body was cut into batches (the Service refuses one
				// twice in one batch).
				k := spec.key(in)
				if inBatch[k] && flushBatch() != nil {
					return
				}
				inBatch[k] = true
				if len(batch) == 0 {
					first = lineNo
				}
				batch = append(batch, in)
				if len(batch) >= importBatch || br.Buffered() == 0 {
					if flushBatch() != nil {
						return
					}
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr(lineNo+1, err)
			return
		}
	}
	if flushBatch() != nil {
		return
	}
	if !started {
		s.problem(w, r, "bad-request", "empty body: send one JSON "+spec.noun+" per line (application/x-ndjson)")
		return
	}
	finish()
}

// importBatch is the most lines given to one ImportCustomers or
// ImportDevices call.
const importBatch = 500

// lineField is the string field key of a refused import line, if the
// line is a JSON object with that field a string, in valid UTF-8; ""
// otherwise.
func lineField(line []byte, key string) string {
	var v map[string]any
	if len(line) == 0 || !utf8.Valid(line) || json.Unmarshal(line, &v) != nil {
		return ""
	}
	f, _ := v[key].(string)
	return f
}

// decodeLine decodes one NDJSON line strictly.
func decodeLine[In any](line []byte) (In, error) {
	var in In
	if len(line) == 0 {
		return in, nil
	}
	if !utf8.Valid(line) {
		// encoding/json would store U+FFFD for the bytes: an ID the
		// ISP never sent.
		return in, errors.New("the line is not valid UTF-8 (JSON text is UTF-8)")
	}
	if bytes.HasPrefix(line, utf8BOM) {
		return in, errors.New(bomText("the line", "only the body's start may carry one (it is skipped there)"))
	}
	if string(bytes.TrimSpace(line)) == "null" {
		// As a null request body: decoded, it is the zero value, and
		// its error named a field the line never had (a field trial).
		return in, errors.New("the line is JSON null: send a JSON object")
	}
	if err := checkKeys(line, &in); err != nil {
		return in, err
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	err := dec.Decode(&in)
	switch {
	case err != nil:
	case string(bytes.TrimSpace(line[dec.InputOffset():])) == ",":
		// A JSON array's element, one per line.
		err = errors.New("a comma after the JSON object: NDJSON has one object per line, with no commas (a JSON array's elements?)")
	case dec.More():
		err = errors.New("more than one JSON value on the line")
	}
	if err != nil {
		return in, errors.New(strings.TrimPrefix(jsonErrorText(err, "the line"), "json: "))
	}
	return in, nil
}

// deviceKey is a device import line's batch key: its MAC in one notation
// (ImportDevices refuses a MAC twice in a batch however it is written: the
// line with 02-00-… after 02:00:… was refused, where the API promises it
// the next batch: a review and a trial), or the text as given if it does
// not parse (that line's error).
func deviceKey(in tenants.DeviceInput) string {
	if hw, err := net.ParseMAC(in.MAC); err == nil {
		return hw.String()
	}
	return in.MAC
}
