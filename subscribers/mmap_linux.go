package subscribers

import "golang.org/x/sys/unix"

// mmapFlags are added to bbolt's mapping of the file: MAP_POPULATE builds
// the page tables of the whole file at open in one pass, where a start-up
// that reads every binding and registration would otherwise take one
// page fault per 4 KiB page (~0.7 s of faults for a million subscribers'
// 780 MB store). The pages are the file's (page cache), not anonymous
// memory.
const mmapFlags = unix.MAP_POPULATE
