package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/ids"
)

// An id's own timestamp tells an expired job (410) from one that never
// existed (404), for every tenant alike.
func TestGetJobPastRetentionAnswersGone(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	cases := []struct {
		name, id string
		status   int
		code     string
	}{
		{"older than the 7-day default", ids.New("job", time.Now().Add(-8*24*time.Hour)), 410, "job_expired"},
		{"within the retention", ids.New("job", time.Now().Add(-6*24*time.Hour)), 404, "job_not_found"},
		{"not an id poolgate makes", "job_not-a-real-id", 404, "job_not_found"},
		{"old id of another kind", ids.New("alr", time.Now().Add(-8*24*time.Hour)), 404, "job_not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + c.id, key: key}), c.status)
			if code := r.errorCode(t); code != c.code {
				t.Errorf("GET %s: code %s, want %s", c.id, code, c.code)
			}
			if c.status == 410 && r.json(t)["error"].(map[string]any)["type"] != "invalid_request_error" {
				t.Errorf("410 envelope type: %s", r.body)
			}
		})
	}
	// An old job that is still there is served, whatever its id's age; one
	// of another tenant answers exactly as if it had never existed.
	old := ids.New("job", time.Now().Add(-30*24*time.Hour))
	e.key("other")
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO jobs (tenant_id, id, mode, type, params, state,
		max_attempts, run_after, queue_deadline, created_at)
		SELECT id, $1, 'live', 'video', '{}', 'queued', 3, now(), now() + interval '1 hour', now()
		FROM tenants WHERE name = 'other'`, old); err != nil {
		t.Fatal(err)
	}
	t.Run("another tenant's old job", func(t *testing.T) {
		r := expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + old, key: key}), 410)
		if code := r.errorCode(t); code != "job_expired" {
			t.Errorf("code %s, want job_expired, as for any id that old", code)
		}
	})
	if _, err := e.pool.Exec(context.Background(), `UPDATE jobs SET tenant_id = (SELECT id FROM tenants WHERE name = 'acme') WHERE id = $1`, old); err != nil {
		t.Fatal(err)
	}
	t.Run("an old job still kept", func(t *testing.T) {
		expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + old, key: key}), 200)
	})
	t.Run("long-poll says the same", func(t *testing.T) {
		r := expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + cases[0].id + "?wait=1s", key: key}), 410)
		if code := r.errorCode(t); code != "job_expired" {
			t.Errorf("code %s, want job_expired", code)
		}
	})
}
