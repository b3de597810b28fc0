package appliance

import "github.com/ispmux/ispmux/engine"

// The proxy's tables are the engine's Control, and dhcpproxy reserves room
// for the bindings it restores only through an optional interface
// (dhcpproxy's reserver: Reserve(n int)), which a type assertion checks at
// run time: a Control without that method would make a start's restore
// grow the tables in steps, silently. This fails to compile instead.
var _ interface{ Reserve(n int) } = (*engine.Control)(nil)
