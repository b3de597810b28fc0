package e2e

import (
	"encoding/json"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// ReportEnv names the file the crash tests write their figures to (JSON;
// docs/reliability.json is one, docs/RELIABILITY.md presents it). Each
// test replaces its own section and keeps the others'.
const ReportEnv = "ISPMUX_RELIABILITY_REPORT"

// reliabilityReport is the file's shape.
type reliabilityReport struct {
	Machine  *machineInfo    `json:"machine,omitempty"`
	Matrix   *matrixReport   `json:"failpoint_matrix,omitempty"`
	KillLoop *killLoopReport `json:"kill_loop,omitempty"` // make test's run (25 cycles)
	Soak     *killLoopReport `json:"soak,omitempty"`      // a run with ISPMUX_KILL_CYCLES set (make soak: 1000)
}

type machineInfo struct {
	CPUs   int    `json:"cpus"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	Kea    string `json:"kea"`
}

// runInfo says when and from what tree a section was measured.
type runInfo struct {
	Date      time.Time `json:"date"`
	Commit    string    `json:"commit"`
	Dirty     bool      `json:"dirty_tree"`
	DurationS float64   `json:"duration_s"`
}

func newRunInfo(start time.Time) runInfo {
	c, d := gitDescribe()
	return runInfo{Date: start.UTC().Truncate(time.Second), Commit: c, Dirty: d, DurationS: time.Since(start).Round(100 * time.Millisecond).Seconds()}
}

var reportMu sync.Mutex

// writeReport updates the report file (if ReportEnv is set) with fill.
func writeReport(t *testing.T, fill func(*reliabilityReport)) {
	t.Helper()
	path := os.Getenv(ReportEnv)
	if path == "" {
		return
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	var r reliabilityReport
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &r)
	}
	r.Machine = &machineInfo{CPUs: runtime.NumCPU(), Kernel: kernelRelease(), Go: runtime.Version(), Kea: keaVersion()}
	fill(&r)
	b, err := json.MarshalIndent(&r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Errorf("reliability report: %v", err)
		return
	}
	t.Logf("reliability report written to %s", path)
}

func kernelRelease() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func keaVersion() string {
	out, err := execOutput("kea-dhcp4", "-v")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}
