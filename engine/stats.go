package engine

// BindingCount is the number of bindings installed for one ISP.
type BindingCount struct {
	DHCP, Static int
}

// BindingsPerISP counts the installed bindings by ISP index (package
// metrics, at scrape time): counts kept by Bind and Unbind, read under the
// control plane's lock in O(ISPs), whatever the number of bindings.
func (c *Control) BindingsPerISP() map[uint8]BindingCount {
	out := map[uint8]BindingCount{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, n := range c.perISP {
		if n[0] != 0 || n[1] != 0 {
			out[uint8(i)] = BindingCount{DHCP: n[0], Static: n[1]}
		}
	}
	return out
}
