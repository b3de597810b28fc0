//go:build failpoints

package subscribers

import (
	"fmt"
	"os"
	"strconv"
)

// In a binary built with failpoints (the crash tests'), the environment
// variable ISPMUX_JOURNAL_MAX_PENDING sets the number of pending journal
// records at which a background checkpoint starts (journalMaxPending), so
// that the crash matrix reaches the background checkpoint's failpoints
// with a few bindings instead of 4096. The production binary has no such
// knob.
func init() {
	v := os.Getenv("ISPMUX_JOURNAL_MAX_PENDING")
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		fmt.Fprintf(os.Stderr, "ISPMUX_JOURNAL_MAX_PENDING=%q: want a positive integer\n", v)
		os.Exit(2)
	}
	journalMaxPending = n
}
