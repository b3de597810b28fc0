package engine

import "time"

// clock is the process's monotonic start, for nanotime.
var clock = time.Now()

// nanotime is a monotonic clock in nanoseconds (only on slow paths).
func nanotime() int64 { return int64(time.Since(clock)) }
