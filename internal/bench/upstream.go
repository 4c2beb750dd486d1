package bench

// upstreamRequests records what the scenario's jobs cost the upstream:
// every request naming a job (submits, status reads, lookups, cancels), as
// the simulator counted them, per job that reached it. Jobs canceled while
// still queued never did and do not count.
func (w *world) upstreamRequests(s *sample) {
	st := w.sim.Stats()
	if len(st.Requests) == 0 {
		return
	}
	total := 0
	for _, n := range st.Requests {
		total += n
	}
	s.set("upstream_requests_per_job", "requests", float64(total)/float64(len(st.Requests)))
}
