package dhcpproxy

// The min-heaps by time (an int64 each entry reports, atEntry) of the
// proxy's timers: the lease ends (expiry.go), the moves' deadlines
// (moves.go), the exchanges' dues and the rapid-commit wins (txndue.go).
// Typed, where container/heap takes and returns its entries as an any (an
// allocation a push); each heap is a plain slice its owner keeps under
// its own lock.

// atEntry is an entry of a min-heap by time: the lease ends'
// (expiryEntry), the moves' deadlines (cutEntry), the exchanges' dues
// (dueEntry) and the rapid-commit wins' (rapidAt).
type atEntry interface{ dueAt() int64 }

// pushAt adds e to the min-heap h and returns it.
func pushAt[E atEntry](h []E, e E) []E {
	h = append(h, e)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p].dueAt() <= h[i].dueAt() {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	return h
}

// popAt removes the earliest entry of the min-heap h (not empty) and
// returns it and the heap; the slot it leaves is zeroed (no pointer kept).
func popAt[E atEntry](h []E) (E, []E) {
	e := h[0]
	n := len(h) - 1
	h[0] = h[n]
	var zero E
	h[n] = zero
	h = h[:n]
	siftDownAt(h, 0)
	return e, h
}

// heapifyAt orders h as a min-heap.
func heapifyAt[E atEntry](h []E) {
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDownAt(h, i)
	}
}

// siftDownAt moves the entry at i of h down to its place.
func siftDownAt[E atEntry](h []E, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].dueAt() < h[l].dueAt() {
			m = r
		}
		if h[i].dueAt() <= h[m].dueAt() {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// shrunkAt returns h, or a copy of it in room for twice what it holds once
// it holds under a quarter of its capacity past shrinkFloor: a heap a
// burst grew gives its memory back as it drains. A copy keeps the heap's
// order.
func shrunkAt[E any](h []E) []E {
	if c := cap(h); c > shrinkFloor && len(h) < c/4 {
		return append(make([]E, 0, 2*len(h)), h...)
	}
	return h
}
