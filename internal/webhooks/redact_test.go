package webhooks

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T0/B0/s3cr3t": "https://hooks.slack.com/…",
		"https://x.io":                    "https://x.io",
		"https://x.io/":                   "https://x.io",
		"http://x.io:8080/a?token=s3cr3t": "http://x.io:8080/…",
		"https://u:s3cr3t@x.io/":          "https://x.io",
		"https://x.io?s3cr3t":             "https://x.io/…",
		"::nonsense s3cr3t":               "(unparsable URL)",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestFailedDeliveryKeepsThePathSecret: a failed delivery used to log (and
// store) the Go client's error, which quotes the whole URL; a Slack
// webhook's path is its credential.
func TestFailedDeliveryKeepsThePathSecret(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: the dial is refused
	var logs lockedBuffer
	startDeliverer(t, e, DelivererConfig{AllowPrivate: true,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	id := enqueue(t, e, "http://"+addr+"/services/T0/B0/s3cr3t-path?tok=s3cr3t-query", map[string]any{"a": 1}, time.Now())
	var r row
	waitFor(t, 10*time.Second, "a failed attempt", func() bool {
		r = getRow(t, e, id)
		return r.LastError != nil
	})
	waitFor(t, 5*time.Second, "the attempt's log line", func() bool { return strings.Contains(logs.String(), "delivery failed") })
	for where, text := range map[string]string{"logs": logs.String(), "last_error": *r.LastError} {
		if strings.Contains(text, "s3cr3t") {
			t.Errorf("%s show the URL's secret: %s", where, text)
		}
	}
	if !strings.Contains(*r.LastError, addr) {
		t.Errorf("last_error no longer says where it failed: %s", *r.LastError)
	}
}
