package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/internal/privtest"
)

// checkConfig writes a configuration of one access port and one ISP
// alpha, with extra appended to its [api] table and isp (if any) to its
// [[isp]] entry, in dir; it returns the file's path.
func checkConfig(t *testing.T, dir, api, isp string) string {
	t.Helper()
	return checkConfigState(t, dir, filepath.Join(dir, "state"), api, isp)
}

// checkConfigState is checkConfig with the state directory state.
func checkConfigState(t *testing.T, dir, state, api, isp string) string {
	t.Helper()
	path := filepath.Join(dir, "ispmux.toml")
	cfg := fmt.Sprintf("version = 1\n[appliance]\nstate_dir = %q\n[api]\n", state) + api +
		"[metrics]\nlisten = \"127.0.0.1:9400\"\n" +
		"[[access]]\ninterface = \"lo\"\n" +
		"[[isp]]\nname = \"alpha\"\nuplink = \"lo\"\nvlan = 201\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\n" + isp
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// lineOf is the 1-based line of path's first line starting with prefix.
func lineOf(t *testing.T, path, prefix string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			return i + 1
		}
	}
	t.Fatalf("no line %q in %s", prefix, path)
	return 0
}

// writeTestCert writes a self-signed certificate and its key.
func writeTestCert(t *testing.T, certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ispmux"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// symlink makes a symbolic link at path to target.
func symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

// mkdir makes the directory path.
func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestCheckReadsTheFilesRunReads: check refuses a configuration whose
// token files, TLS certificates or webhook files run would refuse at
// start, naming file:line: key and the file; it passes them when they are
// good, and does not read what run does not read.
func TestCheckReadsTheFilesRunReads(t *testing.T) {
	const token = "abcdefghijklmnopqrstuvwxyz0123456789"
	secret := "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, tt := range []struct {
		name     string
		api, isp string
		files    func(dir string)
		state    string // state_dir, "" for D/state
		key      string // the key of the error, "" for none; its line starts with key's last part
		want     string
	}{
		{name: "good files", api: "operator_token_file = \"D/op.token\"\ntls_cert = \"D/api.crt\"\ntls_key = \"D/api.key\"\n",
			isp: "token_files = [\"D/alpha.token\"]\nwebhook_url = \"https://hooks.example/\"\nwebhook_secret_file = \"D/alpha.whsec\"\nwebhook_ca_file = \"D/ca.pem\"\n",
			files: func(d string) {
				writeFile(t, d+"/op.token", token+"\n")
				writeFile(t, d+"/alpha.token", "sha256:"+strings.Repeat("ab", 32)+"\n")
				writeFile(t, d+"/alpha.whsec", secret+"\n")
				writeTestCert(t, d+"/api.crt", d+"/api.key")
				writeTestCert(t, d+"/ca.pem", d+"/ca.key")
			}},
		{name: "missing operator token", api: "operator_token_file = \"D/op.token\"\n",
			key: "api.operator_token_file", want: "D/op.token: no such file"},
		{name: "short isp token", isp: "token_files = [\"D/alpha.token\"]\n",
			files: func(d string) { writeFile(t, d+"/alpha.token", "short\n") },
			key:   "isp[0].token_files[0]", want: "token file D/alpha.token: a token must be"},
		{name: "same token twice", api: "operator_token_file = \"D/op.token\"\n", isp: "token_files = [\"D/alpha.token\"]\n",
			files: func(d string) { writeFile(t, d+"/op.token", token); writeFile(t, d+"/alpha.token", token) },
			key:   "isp[0].token_files[0]", want: "holds the same token as api.operator_token_file"},
		{name: "bad webhook secret", isp: "webhook_url = \"https://hooks.example/\"\nwebhook_secret_file = \"D/alpha.whsec\"\n",
			files: func(d string) { writeFile(t, d+"/alpha.whsec", "hunter2\n") },
			key:   "isp[0].webhook_secret_file", want: "D/alpha.whsec: webhook secret must start with whsec_"},
		{name: "webhook ca without a certificate", isp: "webhook_url = \"https://hooks.example/\"\nwebhook_secret_file = \"D/alpha.whsec\"\nwebhook_ca_file = \"D/ca.pem\"\n",
			files: func(d string) {
				writeFile(t, d+"/alpha.whsec", secret)
				writeFile(t, d+"/ca.pem", "not a certificate\n")
			},
			key: "isp[0].webhook_ca_file", want: "D/ca.pem holds no PEM certificate"},
		{name: "missing api key", api: "operator_token_file = \"D/op.token\"\ntls_cert = \"D/api.crt\"\ntls_key = \"D/api.key\"\n",
			files: func(d string) { writeFile(t, d+"/op.token", token); writeTestCert(t, d+"/api.crt", d+"/other.key") },
			key:   "api.tls_key", want: "D/api.key: no such file"},
		{name: "api key of another certificate", api: "operator_token_file = \"D/op.token\"\ntls_cert = \"D/api.crt\"\ntls_key = \"D/api.key\"\n",
			files: func(d string) {
				writeFile(t, d+"/op.token", token)
				writeTestCert(t, d+"/api.crt", d+"/other.key")
				writeTestCert(t, d+"/other.crt", d+"/api.key")
			},
			key: "api.tls_cert", want: "D/api.crt, D/api.key: tls: private key does not match public key"},
		// The state directory: run creates it with its parents, but it
		// cannot be, or be under, a file.
		{name: "state_dir to create", state: "D/a/b/state"},
		{name: "state_dir is a file", state: "D/state", files: func(d string) { writeFile(t, d+"/state", "x") },
			key: "appliance.state_dir", want: "D/state is not a directory"},
		{name: "state_dir under a file", state: "D/f/state", files: func(d string) { writeFile(t, d+"/f", "x") },
			key: "appliance.state_dir", want: "D/f is not a directory, so D/f/state cannot be made under it"},
		{name: "state_dir deep under a file", state: "D/f/a/state", files: func(d string) { writeFile(t, d+"/f", "x") },
			key: "appliance.state_dir", want: "D/f is not a directory, so D/f/a/state cannot be made under it"},
		// A symbolic link to a directory not there (a disk not mounted,
		// a target not made yet): run's MkdirAll does not follow it
		// (mkdir: file exists).
		{name: "state_dir a dangling symlink", state: "D/state",
			files: func(d string) { symlink(t, d+"/data/ispmux", d+"/state") },
			key:   "appliance.state_dir", want: "D/state is a symbolic link to D/data/ispmux, which does not exist"},
		{name: "state_dir under a dangling symlink", state: "D/var/state",
			files: func(d string) { symlink(t, d+"/mnt/var", d+"/var") },
			key:   "appliance.state_dir", want: "D/var is a symbolic link to D/mnt/var, which does not exist"},
		{name: "state_dir a symlink to a directory", state: "D/state",
			files: func(d string) { mkdir(t, d+"/data"); symlink(t, d+"/data", d+"/state") }},
		// Writable by its permissions, but no directory can be made there
		// (procfs): run's mkdir is tried (a trial's /proc/x passed check).
		{name: "state_dir under /proc", state: "/proc/ispmux-check-test",
			key: "appliance.state_dir", want: "cannot create /proc/ispmux-check-test in /proc"},
		// Without a token file the API does not listen: run never reads
		// its certificate.
		{name: "api certificate of an API that does not listen", api: "tls_cert = \"D/api.crt\"\ntls_key = \"D/api.key\"\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			d := func(s string) string { return strings.ReplaceAll(s, "D/", dir+"/") }
			if tt.files != nil {
				tt.files(dir)
			}
			state := d(tt.state)
			if state == "" {
				state = dir + "/state"
			}
			path := checkConfigState(t, dir, state, d(tt.api), d(tt.isp))
			out, _, err := runCmd(t, "", "check", "-c", path)
			if tt.key == "" {
				if err != nil || !strings.HasPrefix(out, path+": ok\n") {
					t.Fatalf("check: %v\n%s", err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("check passed, want %s refused:\n%s", tt.key, out)
			}
			short := tt.key[strings.LastIndexAny(tt.key, ".")+1:]
			if i := strings.IndexByte(short, '['); i >= 0 {
				short = short[:i]
			}
			prefix := fmt.Sprintf("%s:%d: %s: ", path, lineOf(t, path, short+" ="), tt.key)
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, d(tt.want)) {
				t.Fatalf("check: %v\nwant %q... %q", err, prefix, d(tt.want))
			}
		})
	}
}

// TestCheckWarnsOfFilesItMayNotRead: a file check is not allowed to read
// (check run as another user than ispmux) is neither ok nor an error: a
// warning names it, file:line: key, and says it could not be checked.
func TestCheckWarnsOfFilesItMayNotRead(t *testing.T) {
	dir := t.TempDir()
	// The configuration is readable by all (the test's directories too).
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tok := filepath.Join(dir, "op.token")
	writeFile(t, tok, "abcdefghijklmnopqrstuvwxyz0123456789\n")
	// ispmux's state directory is its own; here, everyone's.
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, 0o777); err != nil {
		t.Fatal(err)
	}
	path := checkConfig(t, dir, fmt.Sprintf("operator_token_file = %q\n", tok), "")
	out, errOut, err := checkAsAnother(t, path, func() {
		if e := os.Chmod(tok, 0); e != nil {
			t.Fatal(e)
		}
	})
	if err != nil {
		t.Fatalf("check: %v\n%s%s", err, out, errOut)
	}
	want := fmt.Sprintf("%s:%d: api.operator_token_file: warning: could not be checked: ", path, lineOf(t, path, "operator_token_file ="))
	if !strings.HasPrefix(errOut, want) || !strings.Contains(errOut, tok+": permission denied") {
		t.Errorf("stderr %q, want %q... %s: permission denied", errOut, want, tok)
	}
	if !strings.HasPrefix(out, path+": ok, but 1 file(s) it names could not be checked") {
		t.Errorf("stdout %q", out)
	}
}

// checkAsAnother runs check -c path as a user who may not read or write
// what its mode keeps to its owner. Root reads any file: check runs on a
// thread of its own whose file-system uid is nobody's (which drops, on
// that thread only, the capability to override file modes; the thread
// ends with the goroutine that locked it). Another user runs restrict
// first, which must take the permission away from it.
func checkAsAnother(t *testing.T, path string, restrict func()) (out, errOut string, err error) {
	t.Helper()
	if os.Geteuid() != 0 {
		restrict()
		return runCmd(t, "", "check", "-c", path)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if e := syscall.Setfsuid(65534); e != nil {
			err = e
			return
		}
		out, errOut, err = runCmd(t, "", "check", "-c", path)
	}()
	<-done
	return out, errOut, err
}

// TestCheckStateDirNotWritable: a state directory check may not write in
// is a warning naming appliance.state_dir, as a file it may not read is.
func TestCheckStateDirNotWritable(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	path := checkConfig(t, dir, "", "")
	out, errOut, err := checkAsAnother(t, path, func() {
		if e := os.Chmod(state, 0o555); e != nil {
			t.Fatal(e)
		}
	})
	if err != nil {
		t.Fatalf("check: %v\n%s%s", err, out, errOut)
	}
	want := fmt.Sprintf("%s:%d: appliance.state_dir: warning: could not be checked: cannot write in %s: ", path, lineOf(t, path, "state_dir ="), state)
	if !strings.HasPrefix(errOut, want) || !strings.Contains(errOut, "permission denied") {
		t.Errorf("stderr %q, want %q... permission denied", errOut, want)
	}
	if !strings.HasPrefix(out, path+": ok, but 1 file(s) it names could not be checked") {
		t.Errorf("stdout %q", out)
	}
}

// TestReloadFileProblemsLocated: after a reload that failed in part, the
// files the configuration names are reported at file:line: key, as check
// reports them (the reload's own error named the key only, in another
// form: "api tokens: isp[0].token_files[0]: …"), and that "file:line:
// key" is returned for ctl status (Appliance.NoteReloadWhere), which
// showed the reload's error alone.
func TestReloadFileProblemsLocated(t *testing.T) {
	dir := t.TempDir()
	path := checkConfigState(t, dir, dir+"/state", "", "token_files = [\""+dir+"/alpha.token\"]\n")
	cfg, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	where := logFileProblems(slog.New(slog.NewTextHandler(&buf, nil)), path, cfg)
	src, _ := os.ReadFile(path)
	line := 0
	for i, l := range strings.Split(string(src), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "token_files") {
			line = i + 1
		}
	}
	want := fmt.Sprintf("%s:%d: isp[0].token_files[0]", path, line)
	if line == 0 || !strings.Contains(buf.String(), want) {
		t.Errorf("logged:\n%s\nwant a line with %q", buf.String(), want)
	}
	if len(where) != 1 || where[0] != want {
		t.Errorf("returned %q, want [%q]", where, want)
	}
}

// TestInterfaceNotOnHost: an interface the file names that this host does
// not have is a warning of check, naming file:line: key (the file may be
// for another host), and an error of run naming the same, where check said
// ok and run failed with "xdp port upz: Link not found" (a trial).
func TestInterfaceNotOnHost(t *testing.T) {
	dir := t.TempDir()
	path := checkConfigState(t, dir, dir+"/state", "", "")
	src, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(src), "uplink = \"lo\"", "uplink = \"nosuch0\"", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	at := fmt.Sprintf("%s:%d: isp[0].uplink: ", path, lineOf(t, path, "uplink ="))
	out, errOut, err := runCmd(t, "", "check", "-c", path)
	if err != nil || !strings.HasPrefix(out, path+": ok, but 1 interface(s) it names are not on this host") ||
		!strings.Contains(errOut, at+"warning: no interface \"nosuch0\" on this host") {
		t.Errorf("check: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	_, _, err = runCmd(t, "", "run", "-c", path)
	if err == nil || !strings.Contains(err.Error(), at+"no interface \"nosuch0\" on this host") {
		t.Errorf("run: %v, want the error at %s", err, at)
	}
}

// TestListenNotOnHost: a listen address no interface of this host has is
// a warning of check naming file:line: key (the file may be for another
// host) and an error of run naming the same, where check said ok and run
// failed with "bind: cannot assign requested address", no key named (a
// trial); an address the file gives to the datapath (an access gateway) is
// named as such. An address the host has passes: looked up, not bound.
func TestListenNotOnHost(t *testing.T) {
	const away, gateway = "192.0.2.55", "100.64.0.1"
	for _, a := range hostAddrsForTest(t) {
		if a == away || a == gateway {
			t.Fatalf("this host has %s, which the test takes for an address no host here has", a)
		}
	}
	dir := t.TempDir()
	path := checkConfigState(t, dir, dir+"/state", "", "")
	src, _ := os.ReadFile(path)
	metrics := func(addr string) {
		t.Helper()
		s := strings.Replace(string(src), "listen = \"127.0.0.1:9400\"\n", "listen = \""+addr+":9400\"\ninsecure = true\n", 1)
		s = strings.Replace(s, "[[access]]\ninterface = \"lo\"\n", "[[access]]\ninterface = \"lo\"\naddress = \""+gateway+"\"\n", 1)
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct{ addr, why string }{
		{away, "of no interface in its network namespace"},
		{gateway, "it is access lo's gateway address (access[0].address), which ispmux answers on the data port, not the kernel"},
	} {
		metrics(tt.addr)
		at := fmt.Sprintf("%s:%d: metrics.listen: ", path, lineOf(t, path, "listen = \""+tt.addr))
		msg := tt.addr + " is not an address of this host (" + tt.why + "): ispmux cannot listen on \"" + tt.addr + ":9400\""
		out, errOut, err := runCmd(t, "", "check", "-c", path)
		if err != nil || !strings.HasPrefix(out, path+": ok, but 1 listen address(es) are not this host's (see the warnings)") ||
			!strings.Contains(errOut, at+"warning: "+msg) {
			t.Errorf("check: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
		}
		_, _, err = runCmd(t, "", "run", "-c", path)
		if err == nil || !strings.Contains(err.Error(), at+msg) {
			t.Errorf("run: %v, want the error at %s%s", err, at, msg)
		}
	}

	// One of the host's own (not loopback): no word of it.
	var own string
	for _, a := range hostAddrsForTest(t) {
		if ip := net.ParseIP(a); ip.To4() != nil && !ip.IsLoopback() {
			own = a
			break
		}
	}
	if own == "" {
		t.Skip("no IPv4 address on this host but loopback")
	}
	metrics(own)
	out, errOut, err := runCmd(t, "", "check", "-c", path)
	if err != nil || !strings.HasPrefix(out, path+": ok\n") || strings.Contains(errOut, "metrics.listen") {
		t.Errorf("check with %s, an address of this host: %v\nstdout:\n%s\nstderr:\n%s", own, err, out, errOut)
	}
}

// hostAddrsForTest lists the addresses of this namespace's interfaces.
func hostAddrsForTest(t *testing.T) []string {
	t.Helper()
	as, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			out = append(out, n.IP.String())
		}
	}
	return out
}

// TestCheckWarnsLowSpace: check warns when the state directory's file
// system has less than 1 GiB free (the store grows with the bindings, a
// backup takes as much again, a full disk refuses every binding), where it
// said nothing of space. A 64 MiB tmpfs stands for the small disk.
func TestCheckWarnsLowSpace(t *testing.T) {
	privtest.Lab(t)
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(small, unix.MNT_DETACH)
	path := checkConfigState(t, dir, small+"/state", "", "")
	out, errOut, err := runCmd(t, "", "check", "-c", path)
	at := fmt.Sprintf("%s:%d: appliance.state_dir: warning: %s has 64 MiB free", path, lineOf(t, path, "state_dir ="), small)
	if err != nil || !strings.Contains(errOut, at) {
		t.Errorf("check of a state_dir on a 64 MiB disk: %v\nstdout:\n%s\nstderr:\n%s\nwant %q", err, out, errOut, at)
	}
	// A roomy one (the test's temporary directory, here): no warning.
	path = checkConfigState(t, dir, dir+"/state", "", "")
	if _, errOut, err := runCmd(t, "", "check", "-c", path); err != nil || strings.Contains(errOut, "MiB free") {
		t.Errorf("check of a roomy state_dir: %v\n%s", err, errOut)
	}
}

// TestRunRefusesBadCertBeforePorts: run refuses a certificate that does
// not load, at its file:line: key, as check does, before it touches an
// interface; it stopped ispmux only once its ports were open and XDP
// attached (a review), as a taken listen address did.
func TestRunRefusesBadCertBeforePorts(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "metrics.crt")
	if err := os.WriteFile(bad, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := checkConfigState(t, dir, dir+"/state", "", "")
	src, _ := os.ReadFile(path)
	text := strings.Replace(string(src), "listen = \"127.0.0.1:9400\"\n", fmt.Sprintf("listen = \"127.0.0.1:9400\"\ntls_cert = %q\ntls_key = %q\n", bad, bad), 1)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	at := fmt.Sprintf("%s:%d: metrics.tls_", path, lineOf(t, path, "tls_cert ="))
	_, _, err := runCmd(t, "", "run", "-c", path)
	if err == nil || !strings.Contains(err.Error(), at) {
		t.Errorf("run with a metrics certificate that does not load: %v, want the error at %s", err, at)
	}
}
