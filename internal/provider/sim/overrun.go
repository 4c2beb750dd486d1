package sim

import "time"

// Overrun judges request arrival times (as RequestTimes returns them)
// against a budget of rate requests per second with burst to spare: over
// any stretch of time the budget allows burst + rate·span requests. It
// returns by how many requests the worst stretch went over that (0 or
// less: never), with how many requests it held and how long it lasted.
func Overrun(times []time.Time, rate float64, burst int) (over float64, n int, span time.Duration) {
	over = -float64(burst)
	for i := range times {
		for j := i; j < len(times); j++ {
			d := times[j].Sub(times[i])
			if o := float64(j-i+1) - float64(burst) - rate*d.Seconds(); o > over {
				over, n, span = o, j-i+1, d
			}
		}
	}
	return over, n, span
}
