package web

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"
)

// Session lifetimes. A session ends after SessionIdle without a request,
// SessionMaxAge after its login, at logout, or when the host stops:
// sessions live in the host's memory only, so a restart logs everyone out.
const (
	SessionIdle   = 12 * time.Hour
	SessionMaxAge = 7 * 24 * time.Hour
)

// session is one login. Its id is only in the browser's cookie; the store
// keeps the id's sha256, so a map lookup reveals nothing about ids through
// timing.
type session struct {
	csrf     string
	created  time.Time
	lastSeen time.Time
}

// sessions are the admin logins of a running host.
//
// The lifecycle of one session:
//
//  1. A correct token at the login form creates it: a new random 32-byte
//     id (sent as the cookie) and a random CSRF value for its forms. Any
//     session the browser brought along is ended.
//  2. Every request with the cookie finds it and moves its idle deadline.
//  3. It ends at logout (deleted), after SessionIdle without a request or
//     SessionMaxAge after step 1 (deleted when next seen, and swept at
//     each login), or when the host stops.
type sessions struct {
	now func() time.Time

	mu sync.Mutex
	m  map[string]*session // by sha256 of the id
}

func newSessions(now func() time.Time) *sessions {
	if now == nil {
		now = time.Now
	}
	return &sessions{now: now, m: map[string]*session{}}
}

func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

func randomHex() (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	return hex.EncodeToString(raw), nil
}

// create starts a session and returns its id.
func (s *sessions) create() (string, error) {
	id, err := randomHex()
	if err != nil {
		return "", fmt.Errorf("make session id: %w", err)
	}
	csrf, err := randomHex()
	if err != nil {
		return "", fmt.Errorf("make session id: %w", err)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m {
		if s.expired(v, now) {
			delete(s.m, k)
		}
	}
	s.m[sessionKey(id)] = &session{csrf: csrf, created: now, lastSeen: now}
	return id, nil
}

func (s *sessions) expired(v *session, now time.Time) bool {
	return now.Sub(v.lastSeen) >= SessionIdle || now.Sub(v.created) >= SessionMaxAge
}

// touch returns the session's CSRF value and marks it used now; ok is
// false for an unknown or expired id (an expired one is deleted).
func (s *sessions) touch(id string) (csrf string, ok bool) {
	if id == "" {
		return "", false
	}
	k := sessionKey(id)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m[k]
	if v == nil {
		return "", false
	}
	if s.expired(v, now) {
		delete(s.m, k)
		return "", false
	}
	v.lastSeen = now
	return v.csrf, true
}

// end deletes the session with this id, if any.
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sessionKey(id))
}

// endAll ends every session (the admin token was replaced).
func (s *sessions) endAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.m)
}
