package webhooks

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestDocsPythonReceiver runs docs/API.md's example receiver (python3,
// standard library) as written, on a free loopback port in place of
// 0.0.0.0:8080: a message signed as the worker signs it (Sign), alone or
// beside a signature with an old secret, is answered 204; a wrong
// signature and a stale timestamp 401. A receiver stalled on one client
// (a connection that sent headers and half a body) still answers
// another: the example served one request at a time (HTTPServer), so one
// slow or stuck client held up every delivery. Without python3 it fails.
func TestDocsPythonReceiver(t *testing.T) {
	// Missing, the test fails, as promtool's and node's do: a skip would
	// pass a suite that never ran the example (lab/deps.sh installs it).
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is not installed (Debian package python3): run sh lab/deps.sh as root: %v", err)
	}
	doc, err := os.ReadFile("../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)A receiver in Python.*?```python\n(.*?)\n```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/API.md: no Python receiver after \"A receiver in Python\"")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	const listen = `(("0.0.0.0", 8080)`
	if bytes.Count(m[1], []byte(listen)) != 1 {
		t.Fatalf("the example does not listen on %s once:\n%s", listen, m[1])
	}
	src := bytes.Replace(m[1], []byte(listen), []byte(fmt.Sprintf(`(("127.0.0.1", %d)`, port)), 1)
	dir := t.TempDir()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(filepath.Join(dir, "beta.whsec"), []byte("whsec_"+base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hook.py"), src, 0o600); err != nil {
		t.Fatal(err)
	}
	// hook.py runs as `python3 hook.py` would run it (runpy, as
	// __main__), beside a thread that ends the process when its stdin,
	// a pipe this process holds, reaches EOF: a test binary that dies
	// without its cleanups (-timeout's panic, a kill) left the receiver
	// serving on its port for good.
	cmd := exec.Command(py, "-c", watchdogPy)
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("receiver output:\n%s", out.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver does not listen on %s: %v", addr, err)
		}
	}
	// A client that stalls mid-body: the handler waits on it.
	stuck, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	fmt.Fprintf(stuck, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\n{\"seq\":", addr)
	time.Sleep(200 * time.Millisecond)

	hc := &http.Client{Timeout: 5 * time.Second}
	post := func(id string, ts int64, sig string) int {
		t.Helper()
		body := []byte(`{"seq":` + id + `,"kind":"bound","isp":"beta"}`)
		if sig == "" {
			sig = Sign(key, id, ts, body)
		}
		req, _ := http.NewRequest("POST", "http://"+addr+"/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
		req.Header.Set("webhook-signature", sig)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("message %s: %v (one stalled client holds up the receiver?)", id, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	now := time.Now().Unix()
	oldKey := bytes.Repeat([]byte{7}, 32)
	body3 := []byte(`{"seq":3,"kind":"bound","isp":"beta"}`)
	for _, c := range []struct {
		name string
		id   string
		ts   int64
		sig  string
		want int
	}{
		{"signed", "1", now, "", 204},
		{"wrong signature", "2", now, Sign(oldKey, "2", now, []byte(`{"seq":2}`)), 401},
		{"old and new secret", "3", now, Sign(oldKey, "3", now, body3) + " " + Sign(key, "3", now, body3), 204},
		{"stale", "4", now - 600, "", 401},
	} {
		if got := post(c.id, c.ts, c.sig); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	// Headers missing or not what they should be: 401, not a dropped
	// connection (the example raised in int(None), None.split() or
	// compare_digest of a non-ASCII string).
	good := map[string]string{"webhook-id": "5", "webhook-timestamp": strconv.FormatInt(now, 10)}
	good["webhook-signature"] = Sign(key, "5", now, []byte(`{"seq":5}`))
	for _, c := range []struct {
		name string
		drop string
		set  map[string]string
	}{
		{name: "no signature", drop: "webhook-signature"},
		{name: "no timestamp", drop: "webhook-timestamp"},
		{name: "no id", drop: "webhook-id"},
		{name: "non-ASCII signature", set: map[string]string{"webhook-signature": "v1,\xe9t\xe9"}},
		{name: "timestamp not a number", set: map[string]string{"webhook-timestamp": "soon"}},
	} {
		req, _ := http.NewRequest("POST", "http://"+addr+"/", bytes.NewReader([]byte(`{"seq":5}`)))
		for k, v := range good {
			if k != c.drop {
				req.Header.Set(k, v)
			}
		}
		for k, v := range c.set {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Errorf("%s: %v, want 401", c.name, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("%s: %d, want 401", c.name, resp.StatusCode)
		}
	}
}

// watchdogPy runs hook.py as __main__ and ends the process (os._exit)
// when stdin reaches EOF: when the test binary holding its other end is
// gone.
const watchdogPy = `import os, runpy, sys, threading
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
runpy.run_path("hook.py", run_name="__main__")
`
