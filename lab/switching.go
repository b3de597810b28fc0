package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
)

// dhcpTOML is ConfigTOML's [dhcp] table: client_lease_max when the lab
// sets it (Options.ClientLeaseMax), else nothing (ispmux's defaults).
func (t *Topology) dhcpTOML() string {
	if t.ClientLeaseMax <= 0 {
		return ""
	}
	return "[dhcp]\nclient_lease_max = " + strconv.Quote(t.ClientLeaseMax.String()) + "\n\n"
}

// SetKeaOption makes the ISP's running Kea hand out option name (Kea's
// name, e.g. "domain-name-servers") with data in its subnet from now on
// (to clients that ask for it): config-get, the option added or replaced,
// config-set. The lease database is kept.
func (isp *ISP) SetKeaOption(ctx context.Context, name, data string) error {
	ans, err := isp.KeaCommand(ctx, "config-get", nil)
	if err != nil {
		return err
	}
	var args map[string]any
	if err := json.Unmarshal(ans.Arguments, &args); err != nil {
		return fmt.Errorf("lab: kea config-get at %s: %w", isp.Name, err)
	}
	d4, _ := args["Dhcp4"].(map[string]any)
	subnets, _ := d4["subnet4"].([]any)
	if len(subnets) == 0 {
		return fmt.Errorf("lab: kea config-get at %s: no subnet4", isp.Name)
	}
	for _, s := range subnets {
		sn, _ := s.(map[string]any)
		if sn == nil {
			continue
		}
		opts, _ := sn["option-data"].([]any)
		kept := opts[:0]
		for _, o := range opts {
			if om, _ := o.(map[string]any); om == nil || om["name"] != name {
				kept = append(kept, o)
			}
		}
		sn["option-data"] = append(kept, map[string]any{"name": name, "data": data})
	}
	if _, err := isp.KeaCommand(ctx, "config-set", map[string]any{"Dhcp4": d4}); err != nil {
		return err
	}
	return nil
}
