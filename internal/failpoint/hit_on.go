//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// Enabled reports whether this binary was built with failpoints.
const Enabled = true

var (
	armed string
	after int64 = 1
	hits  atomic.Int64
)

func init() {
	v := os.Getenv("ISPMUX_FAILPOINT")
	if v == "" {
		return
	}
	name, n, ok := strings.Cut(v, "@")
	if ok {
		c, err := strconv.ParseInt(n, 10, 64)
		if err != nil || c < 1 {
			fmt.Fprintf(os.Stderr, "ISPMUX_FAILPOINT=%q: the count after @ must be a positive integer\n", v)
			os.Exit(2)
		}
		after = c
	}
	if !slices.Contains(Points, name) {
		fmt.Fprintf(os.Stderr, "ISPMUX_FAILPOINT=%q: no such failpoint (known: %s)\n", v, strings.Join(Points, ", "))
		os.Exit(2)
	}
	armed = name
}

// Hit kills the process with SIGKILL if name is the armed failpoint and
// this is its N-th hit.
func Hit(name string) {
	if armed == "" || name != armed {
		return
	}
	if hits.Add(1) != after {
		return
	}
	fmt.Fprintf(os.Stderr, "failpoint %s: SIGKILL\n", name)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}
