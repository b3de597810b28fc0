package lab

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strings"
)

// Kea's configuration in the DHCP lab: which subscribers each ISP's Kea
// knows, and the kea-dhcp4 configuration Up writes (KeaConfigJSON).

// Kea's configuration, as much of it as the lab uses.
type (
	keaFile struct {
		Dhcp4 keaDhcp4 `json:"Dhcp4"`
	}
	keaDhcp4 struct {
		InterfacesConfig  keaInterfaces `json:"interfaces-config"`
		LeaseDatabase     keaLeaseDB    `json:"lease-database"`
		StoreExtendedInfo bool          `json:"store-extended-info"`
		Authoritative     bool          `json:"authoritative"`
		ValidLifetime     int           `json:"valid-lifetime"`
		MinValidLifetime  int           `json:"min-valid-lifetime,omitempty"`
		MaxValidLifetime  int           `json:"max-valid-lifetime,omitempty"`
		RenewTimer        int           `json:"renew-timer"`
		RebindTimer       int           `json:"rebind-timer"`
		ClientClasses     []keaClass    `json:"client-classes,omitempty"`
		Subnet4           []keaSubnet   `json:"subnet4"`
		ControlSocket     *keaCtlSocket `json:"control-socket,omitempty"`
		HooksLibraries    []keaHook     `json:"hooks-libraries,omitempty"`
		Loggers           []keaLogger   `json:"loggers"`
	}
	keaCtlSocket struct {
		SocketType string `json:"socket-type"`
		SocketName string `json:"socket-name"`
	}
	keaHook struct {
		Library string `json:"library"`
	}
	keaInterfaces struct {
		Interfaces     []string `json:"interfaces"`
		DHCPSocketType string   `json:"dhcp-socket-type"`
	}
	keaLeaseDB struct {
		Type        string `json:"type"`
		Persist     bool   `json:"persist"`
		Name        string `json:"name"`
		LFCInterval int    `json:"lfc-interval"`
	}
	keaClass struct {
		Name string `json:"name"`
		Test string `json:"test"`
	}
	keaSubnet struct {
		ID         int          `json:"id"`
		Subnet     string       `json:"subnet"`
		Relay      keaRelay     `json:"relay"`
		Pools      []keaPool    `json:"pools"`
		OptionData []keaOptData `json:"option-data"`
	}
	keaRelay struct {
		IPAddresses []string `json:"ip-addresses"`
	}
	keaPool struct {
		Pool        string `json:"pool"`
		ClientClass string `json:"client-class,omitempty"`
	}
	keaOptData struct {
		Name string `json:"name"`
		Data string `json:"data"`
	}
	keaLogger struct {
		Name          string         `json:"name"`
		OutputOptions []keaLogOutput `json:"output_options"`
		Severity      string         `json:"severity"`
		DebugLevel    int            `json:"debuglevel"`
	}
	keaLogOutput struct {
		Output string `json:"output"`
	}
)

// KnownBy returns the subscribers the Kea of ISP isp knows: its RoleValid
// subscribers (not s4, which ispmux registers at alpha but alpha refuses).
func (t *Topology) KnownBy(isp string) []Sub {
	var subs []Sub
	for _, s := range t.Subscribers {
		if s.ISP == isp && s.Role == RoleValid {
			subs = append(subs, s)
		}
	}
	return subs
}

// validTest is the VALID class's test for isp: the subscriber-id (Option 82
// sub-option 6) is a known customer ID, or the remote-id (sub-option 2) is a
// known MAC address as 6 raw bytes.
func (t *Topology) validTest(isp string) string {
	var terms []string
	for _, s := range t.KnownBy(isp) {
		terms = append(terms, "relay4[6].hex == '"+s.CustomerID+"'")
	}
	for _, id := range t.KeaKnown[isp] {
		terms = append(terms, "relay4[6].hex == '"+id+"'")
	}
	for _, s := range t.KnownBy(isp) {
		hw, err := net.ParseMAC(s.MAC)
		if err != nil {
			continue
		}
		terms = append(terms, "relay4[2].hex == 0x"+hex.EncodeToString(hw))
	}
	if len(terms) == 0 {
		return "'known' == 'nobody'" // Kea has no boolean literals
	}
	return strings.Join(terms, " or ")
}

// KeaConfigJSON returns the Kea configuration of the ISP at index i of a
// DHCP lab (written to ISPs[i].KeaConfig by Up).
func (t *Topology) KeaConfigJSON(i int) ([]byte, error) {
	if !t.DHCP || i < 0 || i >= len(t.ISPs) {
		return nil, fmt.Errorf("lab: no Kea for ISP %d", i)
	}
	isp := t.ISPs[i]
	lt := t.LeaseTime
	c := keaFile{Dhcp4: keaDhcp4{
		InterfacesConfig:  keaInterfaces{Interfaces: []string{isp.RouterIf}, DHCPSocketType: "udp"},
		LeaseDatabase:     keaLeaseDB{Type: "memfile", Persist: true, Name: isp.KeaLeaseFile, LFCInterval: 0},
		StoreExtendedInfo: true,
		Authoritative:     !t.KeaNotAuthoritative,
		ValidLifetime:     lt,
		// A client asking for a shorter lease (option 51) gets it, down
		// to MinLeaseTime; none gets more than the lab's lease time.
		MinValidLifetime: MinLeaseTime,
		MaxValidLifetime: lt,
		RenewTimer:       lt / 2,
		RebindTimer:      lt * 7 / 8,
		ClientClasses:    []keaClass{{Name: ValidClass, Test: t.validTest(isp.Name)}},
		Subnet4: []keaSubnet{{
			ID: DHCPSubnetID, Subnet: DHCPSubnet,
			Relay: keaRelay{IPAddresses: []string{RelayAddr}},
			Pools: []keaPool{{Pool: DHCPPoolFirst + " - " + DHCPPoolLast, ClientClass: ValidClass}},
			OptionData: []keaOptData{
				{Name: "routers", Data: Gateway},
				{Name: "subnet-mask", Data: "255.255.255.0"},
			},
		}},
		Loggers: []keaLogger{{
			Name: "kea-dhcp4", OutputOptions: []keaLogOutput{{Output: isp.KeaLog}}, Severity: "INFO",
		}},
	}}
	if isp.KeaSocket != "" {
		// The control channel (ISP.Leases, ISP.KeaCommand): lease_cmds
		// when Kea ships it (Debian's kea-common does).
		c.Dhcp4.ControlSocket = &keaCtlSocket{SocketType: "unix", SocketName: isp.KeaSocket}
		if p := KeaHookPath(LeaseCmdsHook); p != "" {
			c.Dhcp4.HooksLibraries = []keaHook{{Library: p}}
		}
	}
	if t.KeaOpen {
		// Benchmarks: anyone relayed by ispmux (giaddr 192.0.2.2) or by
		// a kernel relay on the access side (giaddr 100.64.0.1, which
		// is inside the subnet anyway) gets an address.
		c.Dhcp4.ClientClasses = nil
		c.Dhcp4.Subnet4 = []keaSubnet{{
			ID: DHCPSubnetID, Subnet: KeaOpenSubnet,
			Relay: keaRelay{IPAddresses: []string{RelayAddr, Gateway}},
			Pools: []keaPool{{Pool: KeaOpenPoolFirst + " - " + KeaOpenPoolLast}},
			OptionData: []keaOptData{
				{Name: "routers", Data: Gateway},
				{Name: "subnet-mask", Data: "255.255.0.0"},
			},
		}}
	}
	return json.MarshalIndent(c, "", "  ")
}
