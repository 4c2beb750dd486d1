package sim

// The LTX-2 API side of the simulator: the synchronous text-to-video and
// image-to-video routes of internal/provider/ltxapi/wire.go, answering
// with a small valid MP4 after Config.LTXAPIDelay. Unlike the LTX Studio
// side it enforces a concurrency limit per key itself (429 past it), so a
// test that never sees such a 429 proves poolgate kept every key under its
// maxJobs.

import (
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxapi"
)

// tinyMP4 is a valid one-second 64×64 H.264 MP4 (2 kB), made once with
// Debian's ffmpeg:
//
//	ffmpeg -f lavfi -i color=c=blue:s=64x64:d=1:r=24 -c:v libx264 -preset veryslow \
//	  -crf 40 -pix_fmt yuv420p -movflags +faststart -an ltxapi_tiny.mp4
//
// +faststart puts the moov box first, so bytes appended after the mdat box
// in an ISO-BMFF "free" box (see writeVideo) leave it a valid file that
// players and ffprobe read with the same one-second duration.
//
//go:embed ltxapi_tiny.mp4
var tinyMP4 []byte

// MinVideoBytes is the smallest video the simulator sends: the embedded
// MP4 plus an empty free box.
var MinVideoBytes = len(tinyMP4) + 8

// APIKeyStats is what the simulator saw of one LTX-2 API key.
type APIKeyStats struct {
	Requests  int `json:"requests"`  // generation requests received, whatever their answer
	Successes int `json:"successes"` // answered with a video
	Running   int `json:"running"`   // being generated now
	Peak      int `json:"peak"`      // most generations ever running at once
	Limited   int `json:"limited"`   // refused with 429 for exceeding the key's concurrency limit
}

// apiKeys is the per-key state of the LTX-2 API side, under its own lock.
type apiKeys struct {
	mu      sync.Mutex
	keys    map[string]*apiKeyState // by provider.KeyFingerprint
	revoked map[string]bool         // by fingerprint
	limits  map[string]int          // per-key concurrency limits, by fingerprint
}

type apiKeyState struct {
	APIKeyStats
}

func (k *apiKeys) clear() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys, k.revoked, k.limits = map[string]*apiKeyState{}, map[string]bool{}, map[string]int{}
}

// RevokeAPIKey makes key answer 401 from now on, as a key revoked in the
// developer console would.
func (s *Server) RevokeAPIKey(key string) {
	s.apiKeys.mu.Lock()
	defer s.apiKeys.mu.Unlock()
	s.apiKeys.revoked[provider.KeyFingerprint(key)] = true
}

// SetAPIKeyLimit sets key's concurrency limit (Config.LTXAPIKeyLimit for
// keys not set).
func (s *Server) SetAPIKeyLimit(key string, n int) {
	s.apiKeys.mu.Lock()
	defer s.apiKeys.mu.Unlock()
	s.apiKeys.limits[provider.KeyFingerprint(key)] = n
}

func (s *Server) apiKeyStats() map[string]APIKeyStats {
	s.apiKeys.mu.Lock()
	defer s.apiKeys.mu.Unlock()
	out := make(map[string]APIKeyStats, len(s.apiKeys.keys))
	for fp, k := range s.apiKeys.keys {
		out[fp] = k.APIKeyStats
	}
	return out
}

// handleGenerate serves both generation routes.
func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request) {
	key, ok := strings.CutPrefix(r.Header.Get(ltxapi.HeaderAuthorization), ltxapi.BearerPrefix)
	if !ok || key == "" {
		writeAPIError(w, http.StatusUnauthorized, ltxapi.ErrAuthentication, ltxapi.MessageInvalidKey, 0)
		return
	}
	fp := provider.KeyFingerprint(key)
	k, limit, revoked := s.startRequest(fp)
	if revoked {
		writeAPIError(w, http.StatusUnauthorized, ltxapi.ErrAuthentication, ltxapi.MessageInvalidKey, 0)
		return
	}
	var req ltxapi.GenerateRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Prompt == "" || (r.Pattern == ltxapi.RouteImageToVideo) != (req.ImageURI != "") {
		writeAPIError(w, http.StatusBadRequest, ltxapi.ErrInvalidRequest, "invalid request: prompt (and image_uri for image-to-video) required", 0)
		return
	}
	if _, problems := ltxapi.ParseParams("video", mustJSON(req)); len(problems) > 0 {
		writeAPIError(w, http.StatusBadRequest, ltxapi.ErrInvalidRequest, "invalid request: "+problems[0].Field+" "+problems[0].Message, 0)
		return
	}
	s.mu.Lock()
	f := s.injectLocked()
	fail := f == nil && s.cfg.FailureRate > 0 && s.rng.Float64() < s.cfg.FailureRate
	cfg := s.cfg
	s.mu.Unlock()
	if f != nil {
		writeAPIError(w, f.status, apiErrorType(f.status), f.msg, f.retryAfter)
		return
	}
	if !s.acquire(k, limit) {
		writeAPIError(w, http.StatusTooManyRequests, ltxapi.ErrRateLimit, ltxapi.MessageRateLimit+": concurrency limit of this key reached", 0)
		return
	}
	succeeded := false
	defer func() { s.release(k, succeeded) }()
	t := time.NewTimer(cfg.LTXAPIDelay)
	defer t.Stop()
	select {
	case <-r.Context().Done(): // the client went away: the generation is lost (and, upstream, billed)
		return
	case <-t.C:
	}
	if fail {
		writeAPIError(w, http.StatusInternalServerError, ltxapi.ErrAPI, FailureMessage, 0)
		return
	}
	size := max(cfg.LTXAPIVideoBytes, MinVideoBytes)
	w.Header().Set("Content-Type", ltxapi.ContentTypeMP4)
	w.Header().Set("Content-Length", strconv.Itoa(size))
	w.Header().Set(ltxapi.HeaderRequestID, "simreq_"+strconv.FormatUint(s.nextID(), 10))
	w.WriteHeader(http.StatusOK)
	if writeVideo(w, size) == nil {
		succeeded = true
	}
}

// startRequest counts a request for the key with fingerprint fp.
func (s *Server) startRequest(fp string) (k *apiKeyState, limit int, revoked bool) {
	s.apiKeys.mu.Lock()
	defer s.apiKeys.mu.Unlock()
	k = s.apiKeys.keys[fp]
	if k == nil {
		k = &apiKeyState{}
		s.apiKeys.keys[fp] = k
	}
	k.Requests++
	limit, ok := s.apiKeys.limits[fp]
	if !ok {
		s.mu.Lock()
		limit = s.cfg.LTXAPIKeyLimit
		s.mu.Unlock()
	}
	return k, limit, s.apiKeys.revoked[fp]
}

// acquire takes one of the key's concurrent generations; false means the
// limit was reached (limit <= 0: no limit).
func (s *Server) acquire(k *apiKeyState, limit int) bool {
	s.apiKeys.mu.Lock()
	defer s.apiKeys.mu.Unlock()
	if limit > 0 && k.Running >= limit {
		k.Limited++
		return false
	}
	k.Running++
	k.Peak = max(k.Peak, k.Running)
	return true
}

func (s *Server) release(k *apiKeyState, succeeded bool) {
	s.apiKeys.mu.Lock()
	defer s.apiKeys.mu.Unlock()
	k.Running--
	if succeeded {
		k.Successes++
	}
}

func (s *Server) nextID() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastID++
	return s.lastID
}

// writeVideo writes tinyMP4 padded to size bytes with a trailing free box,
// from a small buffer whatever the size.
func writeVideo(w http.ResponseWriter, size int) error {
	if _, err := w.Write(tinyMP4); err != nil {
		return err
	}
	pad := size - len(tinyMP4)
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(pad))
	copy(hdr[4:], "free")
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	zeros := make([]byte, 32<<10)
	for left := pad - 8; left > 0; {
		n := min(left, len(zeros))
		if _, err := w.Write(zeros[:n]); err != nil {
			return err
		}
		left -= n
	}
	return nil
}

// VideoBytes returns the exact bytes the simulator sends for a video of
// size bytes, for tests to compare stored results with.
func VideoBytes(size int) []byte {
	size = max(size, MinVideoBytes)
	out := make([]byte, size)
	copy(out, tinyMP4)
	binary.BigEndian.PutUint32(out[len(tinyMP4):], uint32(size-len(tinyMP4)))
	copy(out[len(tinyMP4)+4:], "free")
	return out
}

func apiErrorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return ltxapi.ErrAuthentication
	case http.StatusTooManyRequests:
		return ltxapi.ErrRateLimit
	default:
		return ltxapi.ErrAPI
	}
}

func writeAPIError(w http.ResponseWriter, status int, typ, msg string, retryAfter time.Duration) {
	if retryAfter > 0 {
		secs := (retryAfter + time.Second - 1) / time.Second
		w.Header().Set(ltxapi.HeaderRetryAfter, strconv.FormatInt(int64(secs), 10))
	}
	if status == http.StatusUnauthorized && typ == ltxapi.ErrAuthentication {
		msg = ltxapi.MessageInvalidKey
	}
	writeJSON(w, status, ltxapi.ErrorBody{Type: "error", Error: ltxapi.ErrorDetail{Type: typ, Message: msg}})
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
