// Package hugemem prepares the memory of the large tables (internal/lfmap's
// slot arrays, which the datapath reads for every packet, and
// internal/oatable's, the control plane's sets of up to millions of
// entries): it asks for transparent huge pages and faults the memory in
// when the table is made, so that no write to the table takes a first-touch
// fault later (the kernel may still fault a page for its own reasons:
// NUMA balancing, compaction, khugepaged).
//
// A fault is taken once per page, but where it is taken matters. Left to
// the first writes, the faults land on the control plane's DHCP path: the
// first subscribers bound into a fresh 32 MB MAC table each touch a new
// huge page, which the kernel zeroes (2 MiB) in the fault. On this project's
// lab VM, whose guest memory the host backs lazily, that cost 8–20 µs per
// new key over the first 4,000 keys of a fresh million-entry table
// (against 56 ns once the memory was backed), a one-off that bench dhcp
// charged to a run's CPU per DORA (8 % of ispmux's profile samples in one
// run; none measurable once the guest's memory was backed) and to the
// ACKs waiting behind it.
// Equipment pins or pre-faults its tables at start for the same reason;
// bench scale measures what start-up pays for it.
//
// A table made later pays it where it is made: an lfmap rebuild (inside a
// Store, on the DHCP path) and an oatable growth (under its owner's lock)
// now fault in the whole new array at once, ~60 ms for a fresh 32 MiB on
// this VM (0.2 ms where the heap reuses memory). For a nearly full table
// that replaces the faults its copy would take anyway; a rebuild of a table
// of mostly deleted keys, which copies few, pays it in full.
package hugemem

// Min is the size from which Prepare acts: smaller tables fit the TLB's
// reach with 4 KiB pages and come from memory the heap already touched.
//
// A table of a million entries spans 20–32 MB, 5,000–8,000 4 KiB pages,
// more than the TLB holds, so nearly every lookup would also pay a page
// walk. The huge-page advice is only a hint (THP "madvise" mode honours
// it, "never" ignores it) and is given before the memory is first touched.
const Min = 4 << 20
