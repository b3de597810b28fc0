package bench

import "math"

// searchRate finds the highest rate in [lo, hi] at which pass holds,
// taking pass to hold below some capacity and fail above it: it doubles
// the rate from lo until a step fails (or hi passes), then bisects
// geometrically between the highest passing and the lowest failing rate
// until they are within a factor prec (> 1). Rates are whole numbers. It
// returns the highest passing rate (0 when lo fails) and the lowest
// failing one (0 when hi passed: the capacity is at least hi). An error
// from pass ends the search with the figures found so far.
func searchRate(lo, hi, prec float64, pass func(rate float64) (bool, error)) (best, fail float64, err error) {
	lo, hi = math.Round(lo), math.Round(hi)
	if lo < 1 || hi < lo || prec <= 1 {
		return 0, 0, nil
	}
	try := func(r float64) (bool, error) {
		ok, err := pass(r)
		if err != nil {
			return false, err
		}
		if ok {
			best = max(best, r)
		} else if fail == 0 || r < fail {
			fail = r
		}
		return ok, nil
	}
	// Up: lo, 2·lo, 4·lo, ... hi.
	for r := lo; ; r = math.Min(hi, math.Round(2*r)) {
		ok, err := try(r)
		if err != nil {
			return best, fail, err
		}
		if !ok {
			break
		}
		if r >= hi {
			return best, 0, nil
		}
	}
	if best == 0 {
		return 0, fail, nil
	}
	// Bisect (geometric mean) while the bracket is wider than prec.
	for fail/best > prec {
		r := math.Round(math.Sqrt(best * fail))
		if r <= best || r >= fail {
			break
		}
		if _, err := try(r); err != nil {
			return best, fail, err
		}
	}
	return best, fail, nil
}
