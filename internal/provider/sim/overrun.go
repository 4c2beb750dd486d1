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

// Ends returns when each job's generations ended or will end, by job id
// (the idempotency key's job part) and attempt; canceled generations are
// left out. Set against when poolgate saw a job end, it says how late
// polling noticed.
func (s *Server) Ends() map[string]map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[string]time.Time)
	for _, a := range s.accounts {
		for key, g := range a.byKey {
			if g.canceled {
				continue
			}
			job, attempt := splitKey(key)
			if out[job] == nil {
				out[job] = make(map[string]time.Time)
			}
			out[job][attempt] = g.endsAt
		}
	}
	return out
}
