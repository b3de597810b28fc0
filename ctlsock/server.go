package ctlsock

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/ispmux/ispmux/subscribers"
)

// SocketName is the control socket's file name inside state_dir.
const SocketName = "ispmux.sock"

// StoreName is the subscriber store's file name inside state_dir (next to
// the socket): Backup refuses to write over it.
const StoreName = "ispmux.db"

// Server is what the socket serves.
type Server struct {
	// Status returns the appliance's status (GET /status).
	Status func() Status
	// Store serves GET /events and GET /backup.
	Store *subscribers.Store
	// API, if set, serves /v1/ (the tenant API, as the operator).
	API http.Handler
	// Reload, if set, serves POST /reload: it reloads the configuration
	// file as SIGHUP does and returns once the reload is done (applied,
	// applied in part or refused); the answer is the status after it,
	// whose last reload says which.
	Reload func()
	Log    *slog.Logger
}

// Serve serves GET /status and GET /events as JSON, POST /reload (the
// status after a reload of the configuration file), and GET /backup
// (a copy of the store, see backup.go), on a unix socket (reachable from
// any network namespace through the file system).
//
// GET /events returns events in ascending Seq: with last=N the newest N,
// otherwise up to limit (default 1000, at most 10000) after Seq after. The
// headers Ispmux-Oldest-Seq and Ispmux-Newest-Seq give the range the log
// holds, for paging.
func Serve(path string, s *Server) (*http.Server, error) {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	_ = os.Chmod(path, 0o600)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Status())
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		if s.Reload == nil {
			http.Error(w, "this ispmux reloads on SIGHUP only", http.StatusNotImplemented)
			return
		}
		s.Reload()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Status())
	})
	mux.HandleFunc("GET /events", s.serveEvents)
	mux.HandleFunc("GET /backup", s.serveBackup)
	// The tenant API, as the operator (the socket is root's only).
	if s.API != nil {
		mux.Handle("/v1/", s.API)
	}
	// IdleTimeout: a client that keeps its connection and goes quiet
	// does not hold a descriptor of the appliance for ever.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Log.Warn("control socket", "err", err)
		}
	}()
	return srv, nil
}

// Event paging: the headers of GET /events and its page sizes.
const (
	headerOldestSeq = "Ispmux-Oldest-Seq"
	headerNewestSeq = "Ispmux-Newest-Seq"
	defaultEvents   = 1000
	maxEvents       = 10000
)

func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	newest, err := s.Store.LastEventSeq()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var oldest uint64
	if first, _ := s.Store.Events(0, 1); len(first) > 0 {
		oldest = first[0].Seq
	}
	var evs []subscribers.Event
	if last := q.Get("last"); last != "" {
		n, perr := strconv.Atoi(last)
		if perr != nil || n <= 0 || n > maxEvents {
			http.Error(w, fmt.Sprintf("last must be 1..%d, got %q", maxEvents, last), http.StatusBadRequest)
			return
		}
		evs, err = s.Store.Events(s.Store.SeqBefore(newest, uint64(n)), n)
	} else {
		after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
		limit, perr := strconv.Atoi(q.Get("limit"))
		if perr != nil || limit <= 0 || limit > maxEvents {
			limit = defaultEvents
		}
		evs, err = s.Store.Events(after, limit)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out := make([]EventStatus, 0, len(evs))
	for _, e := range evs {
		out = append(out, eventStatus(e))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(headerOldestSeq, strconv.FormatUint(oldest, 10))
	w.Header().Set(headerNewestSeq, strconv.FormatUint(newest, 10))
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

func eventStatus(e subscribers.Event) EventStatus {
	es := EventStatus{Seq: e.Seq, Time: e.Time, Kind: string(e.Kind), ISP: e.ISP, Reason: e.Reason,
		Customer: e.Customer, Access: e.Access}
	if e.MAC != (subscribers.MAC{}) { // a customer's event has no device
		es.MAC = net.HardwareAddr(e.MAC[:]).String()
	}
	if e.IP.IsValid() {
		es.IP = e.IP.String()
	}
	return es
}

// The control socket's backup request: GET /backup streams a consistent
// copy of the store (subscribers.Store.Backup, one read transaction) and
// ends with the trailers below. A failure in mid-copy aborts the response,
// so a client that checks the trailers never takes a partial copy for a
// whole one.
const (
	headerBackupSize   = "Ispmux-Backup-Size"
	headerBackupSHA256 = "Ispmux-Backup-Sha256"
	// backupStall bounds how long one write to a backup client may block:
	// the copy holds a read transaction (and Close waits for it), so a
	// client that stops reading must not hold it for ever.
	backupStall = 30 * time.Second
)

func (s *Server) serveBackup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Trailer", headerBackupSize+", "+headerBackupSHA256)
	h := sha256.New()
	rc := http.NewResponseController(w)
	n, err := s.Store.Backup(writerFunc(func(p []byte) (int, error) {
		_ = rc.SetWriteDeadline(time.Now().Add(backupStall))
		h.Write(p)
		return w.Write(p)
	}))
	if err != nil {
		s.Log.Warn("control socket: backup failed", "err", err, "bytes", n)
		if n == 0 {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		panic(http.ErrAbortHandler) // the client sees a truncated response
	}
	w.Header().Set(headerBackupSize, strconv.FormatInt(n, 10))
	w.Header().Set(headerBackupSHA256, hex.EncodeToString(h.Sum(nil)))
	s.Log.Info("control socket: backup sent", "bytes", n)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
