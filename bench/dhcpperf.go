package bench

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// perfdhcp: case kea_direct (perfdhcp as a relay straight to Kea), a
// reference ceiling measured once per bench dhcp with a different client.

// PerfdhcpStats is what perfdhcp -4 prints at the end of a run.
type PerfdhcpStats struct {
	Rate         float64       `json:"rate"` // "4-way exchanges/second"
	ExpectedRate float64       `json:"expected_rate"`
	DO           PerfdhcpPhase `json:"discover_offer"`
	RA           PerfdhcpPhase `json:"request_ack"`
}

// PerfdhcpPhase is one exchange type's statistics (delays in ms).
type PerfdhcpPhase struct {
	Sent       int     `json:"sent"`
	Received   int     `json:"received"`
	Drops      int     `json:"drops"`
	Orphans    int     `json:"orphans"`
	Rejected   int     `json:"rejected_leases"`
	MinDelayMs float64 `json:"min_delay_ms"`
	AvgDelayMs float64 `json:"avg_delay_ms"`
	MaxDelayMs float64 `json:"max_delay_ms"`
	StdDevMs   float64 `json:"std_deviation_ms"`
	found      bool
}

// parsePerfdhcp parses perfdhcp's report.
func parsePerfdhcp(out string) (*PerfdhcpStats, error) {
	s := &PerfdhcpStats{}
	var cur *PerfdhcpPhase
	rate := false
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "***Statistics for: DISCOVER-OFFER"):
			cur = &s.DO
			cur.found = true
			continue
		case strings.HasPrefix(line, "***Statistics for: REQUEST-ACK"):
			cur = &s.RA
			cur.found = true
			continue
		case strings.HasPrefix(line, "***"):
			cur = nil
			continue
		case strings.HasPrefix(line, "Rate:"):
			// Rate: 499.773 4-way exchanges/second, expected rate: 500
			f := strings.Fields(line)
			if len(f) < 2 {
				return nil, fmt.Errorf("bad rate line %q", line)
			}
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return nil, fmt.Errorf("rate line %q: %w", line, err)
			}
			s.Rate, rate = v, true
			if i := strings.Index(line, "expected rate:"); i >= 0 {
				s.ExpectedRate, _ = strconv.ParseFloat(strings.TrimSpace(line[i+len("expected rate:"):]), 64)
			}
			continue
		}
		if cur == nil {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "ms"))
		var err error
		atoi := func(dst *int) { *dst, err = strconv.Atoi(v) }
		atof := func(dst *float64) { *dst, err = strconv.ParseFloat(v, 64) }
		switch strings.TrimSpace(k) {
		case "sent packets":
			atoi(&cur.Sent)
		case "received packets":
			atoi(&cur.Received)
		case "drops":
			atoi(&cur.Drops)
		case "orphans":
			atoi(&cur.Orphans)
		case "rejected leases":
			atoi(&cur.Rejected)
		case "min delay":
			atof(&cur.MinDelayMs)
		case "avg delay":
			atof(&cur.AvgDelayMs)
		case "max delay":
			atof(&cur.MaxDelayMs)
		case "std deviation":
			atof(&cur.StdDevMs)
		}
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", line, err)
		}
	}
	if !s.DO.found || !s.RA.found {
		return nil, errors.New("no DISCOVER-OFFER and REQUEST-ACK statistics")
	}
	if !rate {
		return nil, errors.New("no rate statistics")
	}
	return s, nil
}

// fillFromPerfdhcp computes case kea_direct's figures: an exchange starts
// with each DISCOVER and completes with each ACK received.
func fillFromPerfdhcp(c *DHCPCase, s *PerfdhcpStats, periodS float64) {
	c.Exchanges = s.DO.Sent
	c.Completed = min(s.RA.Received, s.DO.Sent)
	c.Failed = c.Exchanges - c.Completed
	c.ExchangeFailPct = pct(c.Failed, c.Exchanges)
	c.FailPct = c.ExchangeFailPct
	c.FailReasons = map[string]int{}
	if n := s.DO.Sent - s.DO.Received; n > 0 {
		c.FailReasons[FailNoOffer] = n
	}
	if n := s.RA.Sent - s.RA.Received; n > 0 {
		c.FailReasons[FailNoAck] = n
	}
	c.WallS = periodS
	// perfdhcp's own rate is completed 4-way exchanges per second of its
	// run; without it, ACKs per test period.
	c.DORAPerS = round(s.Rate, 1)
	if c.DORAPerS == 0 {
		c.DORAPerS = doraPerS(c.Completed, periodS)
	}
	if s.DO.Received > 0 {
		c.OfferMinMs, c.OfferAvgMs, c.OfferMaxMs = ptr(s.DO.MinDelayMs), ptr(s.DO.AvgDelayMs), ptr(s.DO.MaxDelayMs)
	}
	if s.RA.Received > 0 {
		c.AckMinMs, c.AckAvgMs, c.AckMaxMs = ptr(s.RA.MinDelayMs), ptr(s.RA.AvgDelayMs), ptr(s.RA.MaxDelayMs)
	}
}
