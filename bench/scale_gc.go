package bench

import (
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
)

// gcEnv, set to 1 in the environment of an ispmux process that bench scale
// starts, makes that process collect garbage and return the freed memory
// to the kernel (runtime.GC, debug.FreeOSMemory) on each SIGUSR1, so its
// RssAnon can be read after a GC. The ispmux binary links this package
// (cmd/ispmux runs the benchmarks): without the variable nothing is
// installed and SIGUSR1 keeps its default action.
const gcEnv = "ISPMUX_BENCH_GC_ON_USR1"

// heapEnv names a file that, with gcEnv, receives a heap profile after
// each such GC (for finding where the memory per subscriber goes).
const heapEnv = "ISPMUX_BENCH_HEAPPROFILE"

func init() {
	if os.Getenv(gcEnv) != "1" {
		return
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	go func() {
		for range c {
			runtime.GC()
			debug.FreeOSMemory()
			if path := os.Getenv(heapEnv); path != "" {
				if f, err := os.Create(path); err == nil {
					_ = pprof.WriteHeapProfile(f)
					_ = f.Close()
				}
			}
		}
	}()
}
