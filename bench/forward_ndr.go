package bench

import (
	"context"
)

// The no-drop rate search of bench forward.
//
// The NDR of a case is the highest offered rate it forwards with a loss of
// at most lossMax percent (a strict zero is not measurable on a shared
// machine: one 10 ms stall of the forwarder's CPU overflows any ring). The
// search first offers as much as the generator can send: if the case keeps
// up with that, its NDR is only known to be at least the generator's
// ceiling ("≥ ceiling", GeneratorBound). Otherwise it bisects between the
// highest rate known to pass and the lowest known to fail until the bracket
// is narrower than precision (relative) or maxSteps trials were run.

// ndrTrialFunc offers rate frames per second (0: as many as the generator
// can) and returns the rate actually offered and the loss in percent.
type ndrTrialFunc func(ctx context.Context, rate float64) (offered, lossPct float64, err error)

// ndrStep is one trial of the search.
type ndrStep struct {
	Rate    float64 `json:"rate"` // requested; 0 = the generator's ceiling
	Offered float64 `json:"offered_pps"`
	LossPct float64 `json:"loss_pct"`
	Pass    bool    `json:"pass"`
}

// ndrResult is a search's outcome.
type ndrResult struct {
	PPS            float64   `json:"pps"`             // the NDR, or the ceiling when GeneratorBound
	GeneratorBound bool      `json:"generator_bound"` // the case kept up with all the generator could send
	Ceiling        float64   `json:"ceiling_pps"`     // what the generator offered flat out
	Steps          []ndrStep `json:"steps"`
}

// searchNDR runs the search. lo is a rate known to pass (0: none), hi one
// known to fail (0: none); the fixed-rate trials of the same run give them.
func searchNDR(ctx context.Context, trial ndrTrialFunc, lossMax, lo, hi, precision float64, maxSteps int) (ndrResult, error) {
	var r ndrResult
	run := func(rate float64) (ndrStep, error) {
		off, loss, err := trial(ctx, rate)
		if err != nil {
			return ndrStep{}, err
		}
		s := ndrStep{Rate: rate, Offered: round(off, 0), LossPct: round(loss, 3), Pass: loss <= lossMax}
		r.Steps = append(r.Steps, s)
		return s, nil
	}
	s, err := run(0)
	if err != nil {
		return r, err
	}
	r.Ceiling = s.Offered
	if s.Pass {
		r.PPS, r.GeneratorBound = s.Offered, true
		return r, nil
	}
	if hi == 0 || hi > s.Offered {
		hi = s.Offered
	}
	if lo >= hi {
		lo = 0
	}
	for len(r.Steps) < maxSteps+1 && hi > 0 && (hi-lo)/hi > precision {
		mid := (lo + hi) / 2
		s, err := run(mid)
		if err != nil {
			return r, err
		}
		switch {
		case !s.Pass:
			hi = mid
		case s.Offered < 0.97*mid:
			// The generator could not offer mid; what it did offer passed.
			lo = max(lo, s.Offered)
			hi = min(hi, mid)
		default:
			lo = mid
		}
	}
	r.PPS = round(lo, 0)
	return r, nil
}

// String renders the result as in the tables: "312k", "≥ 340k", "< 50k".
func (r ndrResult) String() string {
	switch {
	case r.GeneratorBound:
		return "≥ " + humanPPS(r.PPS)
	case r.PPS == 0:
		return "-"
	}
	return humanPPS(r.PPS)
}
