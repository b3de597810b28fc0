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
// A table made later pays it where it is made: an lfmap rebuild or growth
// (inside a Store, on the DHCP path) and an oatable growth (under its owner's lock)
// now fault in the whole new array at once, ~60 ms for a fresh 32 MiB on
// this VM (0.2 ms where the heap reuses memory). For a nearly full table
// that replaces the faults its copy would take anyway; a rebuild of a table
// of mostly deleted keys, which copies few, pays it in full.
//
// The huge pages are worth 1–2 ns per lookup at a million entries on
// this project's VM: the same tables on 4 KiB pages and on huge pages,
// alternated in one process (400–3000 pairs of blocks, the median of the
// paired differences, 12 runs), the MAC lookup 0.5–2.4 ns faster (median
// 1.3) of 11–17, BenchmarkPipeline's path 0.8–2.5 (median 1.6; one run
// 0.75 slower) of 57–122, the memory floor's random reads 0.2–2.4 (median
// 0.8); nothing at 1K. Most of a page walk overlaps the batch's other
// misses. The advice alone does not get them for memory the Go heap
// reuses: the runtime zeroes it before the make returns, so its pages
// are already there, 4 KiB ones, and stay so until khugepaged gets round
// to them. So Prepare collapses them (MADV_COLLAPSE): an lfmap rebuild
// after the first, an oatable growth, a benchmark's later tables. The
// collapse copies what it collapses, 13–30 ms for 32 MiB on 4 KiB pages
// on this VM, on top of the rebuild; on memory already on huge pages it
// finds nothing to do. The 2 MiB at each end of a table that do not fill
// a huge page stay on 4 KiB pages (aligning the table would cost 2 MiB
// more, for ~6 % of its lookups).
package hugemem

// Min is the size from which Prepare acts: smaller tables fit the TLB's
// reach with 4 KiB pages and come from memory the heap already touched.
//
// A table of a million entries spans 20–32 MB, 5,000–8,000 4 KiB pages,
// more than the TLB holds, so nearly every lookup would also pay a page
// walk. Huge pages come only where the kernel's THP mode is "always" or
// "madvise": under "never" the kernel ignores the advice and Prepare does
// not collapse. A kernel short of free huge pages may give 4 KiB ones
// too. Either way the table works the same, each lookup a little slower.
const Min = 4 << 20
