package mirakl

import "time"

// One clock rule for every deadline the engine keeps (a token's life, the
// gate's holds, Mirakl's Retry-After, what status shows): a deadline has
// passed when either the monotonic or the wall clock says so, and what is
// left of it is the smaller of the two views.
//
// Go's monotonic clock stops while the host is suspended (a VM paused or
// migrated), while the wall clock, Mirakl's clock and every lease's expiry
// go on; the wall clock can be stepped back by an operator or NTP, while the
// monotonic clock cannot. Reading both, a suspend cannot make an expired
// token look valid or keep a hold closed for hours, and a wall clock stepped
// back cannot lengthen a token's life.

// timeLeft is how long until deadline, by the clock that says less.
func timeLeft(now, deadline time.Time) time.Duration {
	return min(deadline.Sub(now), deadline.Round(0).Sub(now.Round(0)))
}

// passed: deadline has passed by either clock.
func passed(now, deadline time.Time) bool { return timeLeft(now, deadline) <= 0 }
