package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/secret"
)

// Session is a browser signed in to the operator console with an API key.
// The console re-verifies Key on every request, so revoking or expiring the
// key ends the session too.
type Session struct {
	TenantID  int64
	KeyID     string
	Key       string // the API key it signed in with
	CSRF      string // the token every state-changing request must carry
	CreatedAt time.Time
	ExpiresAt time.Time // the absolute end
}

// SessionTimeouts bound a session: Idle after the last request, Max after
// sign-in whatever the activity.
type SessionTimeouts struct {
	Idle, Max time.Duration
}

// SessionStore keeps console sessions in Postgres: only the SHA-256 of the
// session token, and the key sealed with the server's secret box.
type SessionStore struct {
	pool *pgxpool.Pool
	box  *secret.Box
	now  func() time.Time
	t    SessionTimeouts
}

// NewSessionStore returns a SessionStore.
func NewSessionStore(pool *pgxpool.Pool, box *secret.Box, now func() time.Time, t SessionTimeouts) *SessionStore {
	return &SessionStore{pool: pool, box: box, now: now, t: t}
}

// ErrNoSession means the session token is unknown, signed out or timed out.
var ErrNoSession = unauthenticated("session_ended", "your console session has ended; sign in again")

func sessionAAD(hash []byte) []byte {
	return append([]byte("console-session\x00"), hash...)
}

const (
	sessionsPurge  = `DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at <= $2`
	sessionsInsert = `
INSERT INTO console_sessions (token_hash, tenant_id, key_id, key_sealed, csrf_token, created_at, last_seen_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $6, $7)`
	// sessionTouch reads a live session and records this use of it in one
	// statement, so an idle session cannot be revived by a racing request.
	sessionTouch = `
UPDATE console_sessions SET last_seen_at = $2
WHERE token_hash = $1 AND expires_at > $2 AND last_seen_at > $3
RETURNING tenant_id, key_id, key_sealed, csrf_token, created_at, expires_at`
	sessionDelete = `DELETE FROM console_sessions WHERE token_hash = $1`
)

// Create starts a session for the verified principal p, who presented key,
// and returns the token the browser keeps. Sessions that have timed out
// are purged on the way.
func (s *SessionStore) Create(ctx context.Context, p Principal, key string) (string, Session, error) {
	now := s.now().UTC()
	if _, err := s.pool.Exec(ctx, sessionsPurge, now, now.Add(-s.t.Idle)); err != nil {
		return "", Session{}, errs.Unavailable(fmt.Errorf("purge console sessions: %w", err))
	}
	token := rand.Text()
	hash := Hash(token)
	sess := Session{TenantID: p.TenantID, KeyID: p.KeyID, Key: key, CSRF: rand.Text(),
		CreatedAt: now, ExpiresAt: now.Add(s.t.Max)}
	sealed := s.box.Seal([]byte(key), sessionAAD(hash))
	if _, err := s.pool.Exec(ctx, sessionsInsert, hash, p.TenantID, p.KeyID, sealed, sess.CSRF, now, sess.ExpiresAt); err != nil {
		return "", Session{}, errs.Unavailable(fmt.Errorf("create console session: %w", err))
	}
	return token, sess, nil
}

// Get returns the live session of token and extends its idle timeout;
// ErrNoSession if there is none.
func (s *SessionStore) Get(ctx context.Context, token string) (Session, error) {
	if token == "" {
		return Session{}, ErrNoSession
	}
	now := s.now().UTC()
	hash := Hash(token)
	var (
		sess   Session
		sealed []byte
	)
	err := s.pool.QueryRow(ctx, sessionTouch, hash, now, now.Add(-s.t.Idle)).
		Scan(&sess.TenantID, &sess.KeyID, &sealed, &sess.CSRF, &sess.CreatedAt, &sess.ExpiresAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Session{}, ErrNoSession
	case err != nil:
		return Session{}, errs.Unavailable(fmt.Errorf("read console session: %w", err))
	}
	key, err := s.box.Open(sealed, sessionAAD(hash))
	if err != nil {
		return Session{}, ErrNoSession // sealed under another secret key: sign in again
	}
	sess.Key = string(key)
	return sess, nil
}

// Delete ends the session of token (signing out). Unknown tokens are fine.
func (s *SessionStore) Delete(ctx context.Context, token string) error {
	if _, err := s.pool.Exec(ctx, sessionDelete, Hash(token)); err != nil {
		return errs.Unavailable(fmt.Errorf("delete console session: %w", err))
	}
	return nil
}
