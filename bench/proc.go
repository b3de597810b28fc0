package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/lab"
)

// child is a process the benchmark started (the generator or a forwarder).
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
	out  *tailBuffer   // the last bytes of its stderr (and stdout unless piped)
}

// startChild starts argv in its own process group (a terminal's Ctrl-C
// reaches only the benchmark, which stops its children in order) with
// parentDeath delivered to it if the benchmark dies. If stdout is nil the
// child's stdout goes to the same tail buffer as its stderr.
func startChild(name string, argv []string, stdout io.Writer, parentDeath syscall.Signal) (*child, error) {
	return startChildErr(name, argv, stdout, nil, parentDeath)
}

// startChildErr is startChild with the child's stderr also written to
// stderr (when not nil), as it comes.
func startChildErr(name string, argv []string, stdout, stderr io.Writer, parentDeath syscall.Signal) (*child, error) {
	c := &child{name: name, done: make(chan struct{}), out: &tailBuffer{max: 8192}}
	c.cmd = exec.Command(argv[0], argv[1:]...)
	c.cmd.Stderr = c.out
	if stderr != nil {
		c.cmd.Stderr = io.MultiWriter(c.out, stderr)
	}
	c.cmd.Stdout = c.out
	if stdout != nil {
		c.cmd.Stdout = stdout
	}
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: parentDeath}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", name, argv[0], err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// pid is the child's process id. The wrappers used here (taskset, ip netns
// exec) exec their command, so after start-up it is the command's pid.
func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the child has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends sig, waits up to grace for the exit, then kills the process
// group. It returns the exit error unless the child exited on sig itself.
func (c *child) stop(sig syscall.Signal, grace time.Duration) error {
	if c.exited() {
		return c.exitErr(sig)
	}
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
		return c.exitErr(sig)
	case <-time.After(grace):
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
	return fmt.Errorf("%s did not exit within %v of %v; killed%s", c.name, grace, sig, c.tail())
}

func (c *child) exitErr(sig syscall.Signal) error {
	if c.err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(c.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == sig {
			return nil
		}
	}
	return fmt.Errorf("%s: %v%s", c.name, c.err, c.tail())
}

// tail returns the child's last output lines, for error messages.
func (c *child) tail() string { return errTail(c.out.String()) }

// errTail is the end of an error message that quotes output s: its last 8
// lines after ": ", "" when s is blank.
func errTail(s string) string {
	if l := lastLinesOf(s, 8); l != "" {
		return ": " + l
	}
	return ""
}

// lastLinesOf is the last n lines of s (blank lines at its ends left
// out) on one line, joined by " | ".
func lastLinesOf(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], " | ")
}

// tailBuffer keeps the last max bytes written to it. It is safe for
// concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// lineWaiter is an io.Writer that signals when a given line was written.
type lineWaiter struct {
	mu   sync.Mutex
	want string
	buf  bytes.Buffer
	seen chan struct{}
	once sync.Once
	also io.Writer
}

func newLineWaiter(want string, also io.Writer) *lineWaiter {
	return &lineWaiter{want: want, seen: make(chan struct{}), also: also}
}

func (l *lineWaiter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.also != nil {
		_, _ = l.also.Write(p)
	}
	if l.buf.Len() < 4096 {
		l.buf.Write(p)
	}
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if strings.TrimSpace(line) == l.want {
			l.once.Do(func() { close(l.seen) })
		}
	}
	return len(p), nil
}

// setUsage makes fs's usage (-h) line, then each flag with its default
// and its usage: those with a usage only (the tests' hidden flags have
// none).
func setUsage(fs *flag.FlagSet, stderr io.Writer, line string) {
	fs.Usage = func() {
		fmt.Fprintln(stderr, line)
		fs.VisitAll(func(f *flag.Flag) {
			if f.Usage != "" {
				fmt.Fprintf(stderr, "  --%s (default %q)\n    \t%s\n", f.Name, f.DefValue, f.Usage)
			}
		})
	}
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// prepare checks what a lab benchmark needs (root, two CPUs, the binaries
// bins; hint names their packages), resolves *exe (default: this program)
// and *out (made absolute and created), and makes a scratch directory.
func prepare(name, onCPU0 string, bins []string, hint string, exe, out *string, id string) (tmp string, err error) {
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("bench %s: needs root (network namespaces, AF_XDP)", name)
	}
	if runtime.NumCPU() < 2 {
		return "", fmt.Errorf("bench %s: needs 2 CPUs (%s on CPU %s, system under test on CPU %s), have %d", name, onCPU0, genCPU, fwdCPU, runtime.NumCPU())
	}
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil && !exists("/usr/sbin/"+bin) {
			return "", fmt.Errorf("bench %s: %s not found (%s)", name, bin, hint)
		}
	}
	if *exe == "" {
		if *exe, err = os.Executable(); err != nil {
			return "", fmt.Errorf("bench %s: own executable: %w", name, err)
		}
	}
	if *out, err = filepath.Abs(*out); err != nil {
		return "", err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return "", fmt.Errorf("bench %s: %w", name, err)
	}
	return os.MkdirTemp("", "ispmux-bench-"+id+"-")
}

// teardown removes a benchmark's lab and scratch directory, even when ctx
// is already cancelled; with keep it leaves both and says where they are
// (built: the lab came up).
func teardown(ctx context.Context, name, id, tmp string, keep, built bool, logf func(string, ...any)) error {
	if keep {
		if built {
			logf("--keep: lab %s left up; configuration and state in %s", id, tmp)
		}
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	defer os.RemoveAll(tmp)
	if err := lab.Down(cctx, id); err != nil {
		return fmt.Errorf("bench %s: lab down: %w", name, err)
	}
	return nil
}
