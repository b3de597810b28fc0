package dhcpproxy

import "slices"

// A client takes a DHCP message up to a size (RFC 2131 §2: a 576-byte IP
// datagram, 312 bytes of options; more if its option 57 says so, RFC 2132
// §9.10) and drops a longer one, silently: it never gets its address. The
// ISP's server sizes its answer for the client, but ispmux's rewrite is
// not size-neutral (relayDown adds 58/59 where the ISP sent 51 alone, its
// server identifier where the ISP sent none, and an END where a full
// options field had none; an ISP server may leave its Option 82 echo, which ispmux
// strips, out of its own count), some servers (Kea) never use option
// overload, and the access port's MTU may be smaller than the client
// says. fitReply makes every relayed reply fit.

// Options read in sizing a reply (RFC 2132).
const (
	optSubnetMask   = 1
	optRouters      = 3
	optDNSServers   = 6
	optParamRequest = 55
)

// replyFit is how fitReply made a reply fit.
type replyFit int

const (
	fitAsIs       replyFit = iota // it fitted as it was
	fitRepacked                   // laid out again (option overload), every option kept
	fitTruncated                  // options left out or a server list cut
	fitImpossible                 // its essential options alone do not fit
)

// essential reports whether fitReply never leaves option code out: the
// message type, server identifier and lease time (RFC 2131 table 3: MUST),
// the client identifier echo (RFC 6842 §3: MUST), and what an address is
// unusable without: subnet mask, routers, DNS servers (the last two may be
// cut to fewer addresses, never to none).
func essential(code byte) bool {
	switch code {
	case optMessageType, optServerID, optLeaseTime, optClientID, optSubnetMask, optRouters, optDNSServers:
		return true
	}
	return false
}

// dhcpOpt is one option of a reply, its instances concatenated (RFC 3396).
type dhcpOpt struct {
	code byte
	data []byte
	gone bool // left out
}

// fitReply returns the reply b (a message relayDown built) within limit
// bytes, and how. A reply that fits is returned as it is. Otherwise its
// options are laid out again: in the options field as far as they go,
// then (option 52, RFC 2131 §4.1, RFC 2132 §9.3) in the file and sname
// fields, each only when it is free (zero, or holding b's own overloaded
// options), an option over 255 bytes split across them (RFC 3396); the
// message type, server identifier and lease time stay in the options
// field (layout). When that is
// not enough, options are left out one at a time, in this order until it
// fits: 58 and 59 (what a client assumes without them, RFC 2131 §4.4.5,
// half and 7/8 of the lease, is what ispmux sets), then those the client
// did not ask for in its parameter request list prl (option 55), the last
// first, then those it asked for, the last asked first. Last, the DNS
// server and router lists are cut, one address at a time. Never left out:
// the essential options. Once it fits with no list cut, the options left
// out before the last one are put back, the most wanted first, each where
// it still fits.
// nil and fitImpossible when even the essential ones do not fit.
//
// A set of options is laid out only when its bytes can fit at all (most):
// one layout per option left out or address cut would cost a long reply
// (hundreds of DNS servers) hundreds of messages built on the goroutine
// that handles every subscriber's DHCP.
func fitReply(b []byte, limit int, prl []byte) ([]byte, replyFit) {
	if len(b) <= limit {
		return b, fitAsIs
	}
	opts := gatherOptions(b)
	file, sname := freeFields(b)
	most := mostOptionBytes(limit, file, sname)
	need := 0
	for _, o := range opts {
		need += encodedLen(len(o.data))
	}
	try := func() []byte {
		if need > most {
			return nil
		}
		return layout(b, opts, limit, file, sname)
	}
	how := fitRepacked
	var dropped []int // left out, in the order they went
	cut := false      // a server list cut
	// fitted returns out, a layout that fits, with the options left out
	// before the last one went put back where they still fit: one left
	// out early (43 before 121, say) often fits once a later, larger one
	// (a 240-byte server list) is gone. The most wanted (the last to go)
	// are tried first; each costs a layout only when its bytes can fit.
	// Not after a server list was cut: the room freed was an address's,
	// which an essential list has the first claim on.
	fitted := func(out []byte) ([]byte, replyFit) {
		if cut {
			return out, how
		}
		// Not the last to go: the layout with it failed just before.
		for k := len(dropped) - 2; k >= 0; k-- {
			o := &opts[dropped[k]]
			o.gone = false
			need += encodedLen(len(o.data))
			if back := try(); back != nil {
				out = back
				continue
			}
			o.gone = true
			need -= encodedLen(len(o.data))
		}
		return out, how
	}
	for _, i := range dropOrder(opts, prl) {
		if out := try(); out != nil {
			return fitted(out)
		}
		opts[i].gone, how = true, fitTruncated
		need -= encodedLen(len(opts[i].data))
		dropped = append(dropped, i)
	}
	for _, code := range []byte{optDNSServers, optRouters} {
		for i := range opts {
			if opts[i].code != code || opts[i].gone {
				continue
			}
			for {
				if out := try(); out != nil {
					return fitted(out)
				}
				if len(opts[i].data) <= 4 {
					break
				}
				need -= encodedLen(len(opts[i].data))
				opts[i].data, how, cut = opts[i].data[:(len(opts[i].data)-1)/4*4], fitTruncated, true
				need += encodedLen(len(opts[i].data))
			}
		}
	}
	if out := try(); out != nil {
		return fitted(out)
	}
	return nil, fitImpossible
}

// encodedLen is the fewest bytes an option with n bytes of data takes:
// its instances of at most 255 bytes, each with its code and length.
func encodedLen(n int) int {
	return n + 2*max(1, (n+254)/255)
}

// mostOptionBytes is the most bytes of options (encodedLen each) a
// layout within limit holds: all in the options field (less its END), or
// there (less option 52 and END) and in the free file and sname fields
// (less their ENDs). Options that need more never fit.
func mostOptionBytes(limit int, fileFree, snameFree bool) int {
	room := areaRoom(limit, fileFree, snameFree)
	return max(limit-optionsStart-1, room[0]+room[1]+room[2])
}

// areaRoom is the room for options in each area of a layout within limit
// that uses option 52: the options field less option 52 and its END, the
// file and sname fields (when free) less their ENDs.
func areaRoom(limit int, fileFree, snameFree bool) [3]int {
	room := [3]int{limit - optionsStart - 3 - 1, 0, 0}
	if fileFree {
		room[1] = fileEnd - fileStart - 1
	}
	if snameFree {
		room[2] = snameEnd - snameStart - 1
	}
	return room
}

// gatherOptions returns the options of b (options field, then the fields
// its option 52 names), the instances of each concatenated (RFC 3396), in
// the order each first appears; option 52 left out.
func gatherOptions(b []byte) []dhcpOpt {
	var opts []dhcpOpt
	at := map[byte]int{}
	forEachOptionAll(b, func(code byte, data []byte) {
		if code == optOverload {
			return
		}
		if i, ok := at[code]; ok {
			opts[i].data = append(opts[i].data, data...)
			return
		}
		at[code] = len(opts)
		opts = append(opts, dhcpOpt{code: code, data: slices.Clone(data)})
	})
	return opts
}

// freeFields reports whether b's file and sname fields may carry options:
// those its option 52 names (their options are gathered), and those that
// are all zero (no boot file or server name in them).
func freeFields(b []byte) (file, sname bool) {
	file = !slices.ContainsFunc(b[fileStart:fileEnd], func(c byte) bool { return c != 0 })
	sname = !slices.ContainsFunc(b[snameStart:snameEnd], func(c byte) bool { return c != 0 })
	for _, f := range overloadedFields(b) {
		file = file || f.lo == fileStart
		sname = sname || f.lo == snameStart
	}
	return file, sname
}

// dropOrder returns the indexes of opts that fitReply may leave out, in
// the order it does (see fitReply).
func dropOrder(opts []dhcpOpt, prl []byte) []int {
	type cand struct{ i, rank, pos int }
	var cs []cand
	for i, o := range opts {
		if essential(o.code) {
			continue
		}
		c := cand{i: i, rank: 1, pos: -i}
		switch at := slices.Index(prl, o.code); {
		case o.code == optRenewalTime || o.code == optRebindingTime:
			c.rank = 0
		case at >= 0:
			c.rank, c.pos = 2, -at
		}
		cs = append(cs, c)
	}
	slices.SortStableFunc(cs, func(a, b cand) int {
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		return a.pos - b.pos
	})
	out := make([]int, len(cs))
	for k, c := range cs {
		out[k] = c.i
	}
	return out
}

// layout builds the reply of header b[:optionsStart] with the options of
// opts not gone within limit bytes, or nil when they do not fit: all in
// the options field, in order, when they fit there; otherwise essential
// ones first, each in the first area with room for it (options field,
// file, sname: the order a client reads them, RFC 2131 §4.1), an option
// over 255 bytes split in that order, and option 52 naming the fields used.
func layout(b []byte, opts []dhcpOpt, limit int, fileFree, snameFree bool) []byte {
	if limit < bootpMinLen {
		return nil
	}
	hdr := slices.Clone(b[:optionsStart])
	flat := hdr
	for _, o := range opts {
		if !o.gone {
			flat = appendSplit(flat, o.code, o.data)
		}
	}
	if out := finish(flat); len(out) <= limit {
		if fileFree {
			clear(out[fileStart:fileEnd])
		}
		if snameFree {
			clear(out[snameStart:snameEnd])
		}
		return out
	}
	room := areaRoom(limit, fileFree, snameFree)
	var area [3][]byte
	place := func(o dhcpOpt) bool {
		if len(o.data) <= 255 {
			for a := range area {
				if n := 2 + len(o.data); n <= room[a] {
					area[a] = append(area[a], o.code, byte(len(o.data)))
					area[a] = append(area[a], o.data...)
					room[a] -= n
					return true
				}
			}
			return false
		}
		d := o.data
		for a := 0; a < len(area) && len(d) > 0; a++ {
			for room[a] > 2 && len(d) > 0 {
				n := min(len(d), 255, room[a]-2)
				area[a] = append(area[a], o.code, byte(n))
				area[a] = append(area[a], d[:n]...)
				room[a] -= 2 + n
				d = d[n:]
			}
		}
		return len(d) == 0
	}
	for tier := range 4 {
		for _, o := range opts {
			if !o.gone && placeTier(o) == tier && !place(o) {
				return nil
			}
		}
	}
	var v byte
	for a, f := range [...]field{{}, {fileStart, fileEnd}, {snameStart, snameEnd}} {
		if a == 0 || !(a == 1 && fileFree || a == 2 && snameFree) {
			continue
		}
		clear(hdr[f.lo:f.hi])
		if len(area[a]) > 0 {
			v |= byte(a)
			n := copy(hdr[f.lo:f.hi], area[a])
			hdr[f.lo+n] = optEnd
		}
	}
	out := append(hdr, area[0]...)
	if v != 0 {
		out = append(out, optOverload, 1, v)
	}
	if out = finish(out); len(out) > limit {
		return nil
	}
	return out
}

// placeTier is when layout places o: the message type, server identifier
// and lease time first (in the options field, where every client looks
// for them), then the other essential options, then the rest, and last
// those over 255 bytes, which are split to fill what room is left.
func placeTier(o dhcpOpt) int {
	switch {
	case o.code == optMessageType || o.code == optServerID || o.code == optLeaseTime:
		return 0
	case len(o.data) > 255:
		return 3
	case essential(o.code):
		return 1
	}
	return 2
}

// appendSplit appends option code with data to out, as instances of at
// most 255 bytes (RFC 3396).
func appendSplit(out []byte, code byte, data []byte) []byte {
	for {
		n := min(len(data), 255)
		out = append(out, code, byte(n))
		out = append(out, data[:n]...)
		data = data[n:]
		if len(data) == 0 {
			return out
		}
	}
}
