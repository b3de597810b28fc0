package engine

// BindingCount is the number of bindings installed for one ISP.
type BindingCount struct {
	DHCP, Static int
}

// BindingsPerISP counts the installed bindings by ISP index (package
// metrics, at scrape time): a walk of the control plane's map under its
// lock, without copying it; the datapath is not involved.
func (c *Control) BindingsPerISP() map[uint8]BindingCount {
	out := map[uint8]BindingCount{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.bindings {
		n := out[b.ISP]
		if b.Static {
			n.Static++
		} else {
			n.DHCP++
		}
		out[b.ISP] = n
	}
	return out
}
