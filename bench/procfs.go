package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
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

// udpRcvbufErrors is the Udp RcvbufErrors counter of the network namespace
// process pid is in (/proc/PID/net/snmp): datagrams dropped because a
// socket's receive buffer was full.
func udpRcvbufErrors(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/snmp")
	if err != nil {
		return 0, err
	}
	return parseUDPRcvbufErrors(data)
}

// parseUDPRcvbufErrors reads RcvbufErrors from /proc/net/snmp's two Udp:
// lines (names, then values).
func parseUDPRcvbufErrors(data []byte) (uint64, error) {
	var names []string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				return strconv.ParseUint(f[i], 10, 64)
			}
		}
		break
	}
	return 0, errors.New("/proc/net/snmp: no Udp RcvbufErrors")
}

// keaRcvbuf is the socket receive buffer bench dhcp gives Kea (see
// raiseRmemDefault).
const keaRcvbuf = 4 << 20

// raiseRmemDefault sets net.core.rmem_default (global: a network namespace
// reads the initial one's) to at least bytes for sockets made from now on,
// and returns the function that puts the old value back and a note saying
// what was done.
func raiseRmemDefault(bytes int) (restore func(), note string, err error) {
	const path = "/proc/sys/net/core/rmem_default"
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	old, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	if old >= bytes {
		return func() {}, fmt.Sprintf("net.core.rmem_default is %d bytes (Kea's socket receive buffer): left as it was", old), nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(bytes)), 0o644); err != nil {
		return nil, "", fmt.Errorf("raise %s: %w", path, err)
	}
	restore = func() { _ = os.WriteFile(path, []byte(strconv.Itoa(old)), 0o644) }
	return restore, fmt.Sprintf("net.core.rmem_default raised from %d to %d bytes while the bench ran (restored after), so that Kea's socket gets a %d MiB receive buffer: Kea is the ISP, not under test, and shares the 2 CPUs; with the default buffer it dropped messages of both systems in bursts at 2000/s (kea_rcvbuf_drops per case counts what it still drops)", old, bytes, bytes>>20), nil
}

// keaNice is the nice value bench dhcp gives Kea (see restartKea).
const keaNice = -10

// keaRTPriority is Kea's SCHED_FIFO priority with --kea-realtime: the
// lowest, above every normal thread (the generator and the capture).
const keaRTPriority = 1

// realtimeThreads gives every thread of process pid the SCHED_FIFO policy
// at priority prio. The kernel's RT throttling (sched_rt_runtime_us) still
// leaves the other threads on its CPU a share if it ever spins.
func realtimeThreads(pid, prio int) error {
	return forEachThread(pid, func(tid int) error {
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: uint32(prio)}
		if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
			return fmt.Errorf("sched_setattr SCHED_FIFO %d (thread of %d): %w", tid, pid, err)
		}
		return nil
	})
}

// forEachThread calls fn with the ID of every thread of process pid
// (/proc/PID/task), stopping at its first error.
func forEachThread(pid int, fn func(tid int) error) error {
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := fn(tid); err != nil {
			return err
		}
	}
	return nil
}

// placeThreads sets the nice value of every thread of process pid (on
// Linux a priority belongs to a thread) and, with cpu >= 0, pins each to
// that CPU.
func placeThreads(pid, nice, cpu int) error {
	return forEachThread(pid, func(tid int) error {
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil {
			return fmt.Errorf("setpriority %d (thread of %d): %w", tid, pid, err)
		}
		if cpu >= 0 {
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(tid, &set); err != nil {
				return fmt.Errorf("sched_setaffinity %d (thread of %d): %w", tid, pid, err)
			}
		}
		return nil
	})
}

// treeTicks is utime + stime of process pid and of its descendants alive
// now (/proc/PID/task/TID/children): the generator runs under timeout(1),
// taskset(1) and ip-netns-exec(8), which exec or fork it.
func treeTicks(pid int) (uint64, error) {
	_, total, err := readPIDStat(pid)
	if err != nil {
		return 0, err
	}
	tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	for _, t := range tasks {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(f); err == nil {
				if n, err := treeTicks(c); err == nil {
					total += n
				}
			}
		}
	}
	return total, nil
}

// holdCPULatency asks the kernel, through the PM QoS interface
// /dev/cpu_dma_latency, for a CPU wake-up latency of 0 µs until release is
// called (or the process ends: the request lives as long as the file is
// open): idle CPUs poll instead of halting. (tuned's latency-performance
// profile asks for 1 µs, which still allows a state of that exit latency:
// haltpoll's halt is one, so that profile does not keep this machine's
// vCPUs polling.) On a virtual machine whose idle vCPUs halt (cpuidle
// haltpoll with no halt polling, as here), a halted vCPU waits for the
// hypervisor to run it again when a packet or a timer wakes it: at 100
// DORA/s, with every CPU idle most of the time, that wake-up was most of
// every system's p99, Kea's and the generator's included.
func holdCPULatency() (release func(), note string, err error) {
	f, err := os.OpenFile("/dev/cpu_dma_latency", os.O_WRONLY, 0)
	if err != nil {
		return nil, "", err
	}
	var zero [4]byte // a binary s32
	if _, err := f.Write(zero[:]); err != nil {
		f.Close()
		return nil, "", fmt.Errorf("/dev/cpu_dma_latency: %w", err)
	}
	driver, _ := os.ReadFile("/sys/devices/system/cpu/cpuidle/current_driver")
	note = fmt.Sprintf("Idle CPUs polled instead of halting for the whole run (PM QoS: /dev/cpu_dma_latency held at 0 µs: only the polling state is allowed; cpuidle driver %s), the same for every case: without it, a halted vCPU's wake-up by the hypervisor dominated every system's p99 at the low rates (--idle-poll=false measures without)", strings.TrimSpace(string(driver)))
	return func() { f.Close() }, note, nil
}
