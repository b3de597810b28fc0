package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/stat and /proc/PID/stat times. It
// is 100 on every Linux architecture Go supports (the kernel fixes it for
// user space independently of CONFIG_HZ).
const clockTicks = 100

// CPUTimes is the machine-wide "cpu" line of /proc/stat, in clock ticks.
type CPUTimes struct {
	User, Nice, System, Idle, IOWait, IRQ, SoftIRQ, Steal uint64
}

// Busy is the time the CPUs spent working: user + nice + system + irq +
// softirq + steal (guest time is already included in user and nice).
func (c CPUTimes) Busy() uint64 {
	return c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal
}

// ProcStat is the CPU part of /proc/stat: the machine-wide line and one
// line per CPU (index = CPU number).
type ProcStat struct {
	Total CPUTimes
	CPU   []CPUTimes
}

// parseProcStat parses the "cpu" and "cpuN" lines of a /proc/stat text.
func parseProcStat(data []byte) (ProcStat, error) {
	var ps ProcStat
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		idx := -1
		if f[0] != "cpu" {
			n, err := strconv.Atoi(f[0][3:])
			if err != nil || n < 0 || n > 4096 {
				return ProcStat{}, fmt.Errorf("/proc/stat: bad line %q", truncate(line, 40))
			}
			idx = n
		}
		if len(f) < 9 {
			return ProcStat{}, fmt.Errorf("/proc/stat: %s line has %d fields, want >= 9", f[0], len(f))
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return ProcStat{}, fmt.Errorf("/proc/stat: %s field %d: %w", f[0], i+1, err)
			}
			v[i] = n
		}
		t := CPUTimes{User: v[0], Nice: v[1], System: v[2], Idle: v[3], IOWait: v[4], IRQ: v[5], SoftIRQ: v[6], Steal: v[7]}
		if idx < 0 {
			ps.Total, found = t, true
			continue
		}
		for len(ps.CPU) <= idx {
			ps.CPU = append(ps.CPU, CPUTimes{})
		}
		ps.CPU[idx] = t
	}
	if !found {
		return ProcStat{}, fmt.Errorf("/proc/stat: no aggregate cpu line")
	}
	return ps, nil
}

// readProcStat reads the machine's CPU times.
func readProcStat() (ProcStat, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return ProcStat{}, err
	}
	return parseProcStat(data)
}

// parsePIDStat returns utime + stime (clock ticks) and the command name from
// a /proc/PID/stat text. For a thread-group leader the kernel sums every
// thread of the process, live and exited, so this is the whole process's
// CPU time. The command name may contain spaces and parentheses; the fields
// start after the last ')'.
func parsePIDStat(data []byte) (comm string, ticks uint64, err error) {
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return "", 0, fmt.Errorf("/proc/PID/stat: no command name in %q", truncate(string(data), 80))
	}
	comm = string(data[open+1 : end])
	// Fields after ")" start with field 3 (state); utime is field 14 and
	// stime field 15 (proc(5)).
	f := strings.Fields(string(data[end+1:]))
	if len(f) < 13 {
		return "", 0, fmt.Errorf("/proc/PID/stat: %d fields after the command name, want >= 13", len(f))
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("/proc/PID/stat: utime: %w", err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("/proc/PID/stat: stime: %w", err)
	}
	return comm, ut + st, nil
}

// readPIDStat reads utime + stime of process pid (all its threads).
func readPIDStat(pid int) (comm string, ticks uint64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, err
	}
	return parsePIDStat(data)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
