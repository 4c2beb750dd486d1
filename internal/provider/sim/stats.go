package sim

import "maps"

// Stats is what the simulator saw, served at RouteStats.
type Stats struct {
	// TotalSubmits counts submit POSTs that carried an Idempotency-Key,
	// whatever their answer.
	TotalSubmits int `json:"totalSubmits"`
	// DuplicateSubmits counts those whose key had been received before:
	// TotalSubmits minus the number of distinct keys.
	DuplicateSubmits int `json:"duplicateSubmits"`
	// Accounts is keyed by lower-cased email.
	Accounts map[string]AccountStats `json:"accounts"`
	// Jobs counts submit POSTs per idempotency key "<jobID>/<attempt>",
	// as Jobs[jobID][attempt], including those answered from the
	// idempotency cache or refused; a count above 1 is a resubmission.
	// A key without a slash is counted under attempt "".
	Jobs map[string]map[string]int `json:"jobs"`
	// Requests counts every request naming a job (submits, status reads,
	// lookups and cancels of any of its attempts), by job id: what one
	// job cost the upstream.
	Requests map[string]int `json:"requests"`
	// APIKeys describes the LTX-2 API keys seen, keyed by
	// provider.KeyFingerprint (never the key itself).
	APIKeys map[string]APIKeyStats `json:"apiKeys"`
}

// AccountStats describes one account.
type AccountStats struct {
	Submitted int `json:"submitted"` // generations created
	Running   int `json:"running"`   // generations running now
	Peak      int `json:"peak"`      // most generations ever running at once
	Refreshes int `json:"refreshes"` // token pairs issued
	// Refused counts new submissions refused by injected failures (429,
	// 401, 503); Succeeded and Failed count generations that have ended
	// completed and failed.
	Refused   int `json:"refused"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	// Requests counts every request made as the account (any route, any
	// answer); Server.RequestTimes says when they arrived.
	Requests int `json:"requests"`
	Probes   int `json:"probes"` // probes (ltxstudio.RouteMe) answered
}

// Stats returns a snapshot of what the simulator saw.
func (s *Server) Stats() Stats {
	keys := s.apiKeyStats()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st := Stats{
		TotalSubmits:     s.total,
		DuplicateSubmits: s.duplicates,
		Accounts:         make(map[string]AccountStats, len(s.accounts)),
		Jobs:             make(map[string]map[string]int),
		Requests:         maps.Clone(s.jobCalls),
		APIKeys:          keys,
	}
	for email, a := range s.accounts {
		as := AccountStats{
			Submitted: a.submitted,
			Running:   a.running(now),
			Peak:      a.peak,
			Refreshes: a.refreshes,
			Refused:   a.refused,
			Requests:  a.requests,
			Probes:    a.probes,
		}
		for _, g := range a.byID {
			switch {
			case now.Before(g.endsAt), g.canceled:
			case g.fail:
				as.Failed++
			default:
				as.Succeeded++
			}
		}
		st.Accounts[email] = as
	}
	for key, n := range s.submits {
		job, attempt := splitKey(key)
		if st.Jobs[job] == nil {
			st.Jobs[job] = make(map[string]int)
		}
		st.Jobs[job][attempt] = n
	}
	return st
}
