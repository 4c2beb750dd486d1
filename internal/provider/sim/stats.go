package sim

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
		APIKeys:          keys,
	}
	for email, a := range s.accounts {
		st.Accounts[email] = AccountStats{
			Submitted: a.submitted,
			Running:   a.running(now),
			Peak:      a.peak,
			Refreshes: a.refreshes,
		}
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
