package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TokenFile is the admin token's file in the system directory.
const TokenFile = "admin_token"

// CookieName is the admin session cookie. It is scoped to /admin, so pack
// pages never see it.
const CookieName = "packhost_admin"

// The admin token file holds only the token's hash: "sha256:<hex>". The
// token itself is printed once, when it is made; a pack (or anyone) that
// reads the file learns nothing that logs in. A lost token is replaced
// with `host admin reset-token`.
const tokenHashPrefix = "sha256:"

// HashToken is what the token file holds for tok.
func HashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return tokenHashPrefix + hex.EncodeToString(sum[:])
}

// EnsureToken returns the admin token's hash for the system directory at
// root, making a token (its hash in the file, mode 0600) and printing it
// once to out when there is none; made is the token itself then, and
// empty otherwise. An address that is not loopback is refused while no
// token file exists: the token must be made, and read by the operator,
// before the admin pages face a network. A file of an earlier host that
// holds the token itself is turned into its hash (the token stays the
// same).
func EnsureToken(root, addr string, out io.Writer, log hclog.Logger) (hash, made string, err error) {
	path := filepath.Join(root, TokenFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		fi, err := os.Stat(path)
		if err != nil {
			return "", "", fmt.Errorf("admin token: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return "", "", fmt.Errorf("admin token %s has mode %04o: other users may read it; run `chmod 600 %s` and start again",
				path, fi.Mode().Perm(), path)
		}
		stored := strings.TrimSpace(string(data))
		if strings.HasPrefix(stored, tokenHashPrefix) && len(stored) == len(tokenHashPrefix)+64 {
			return stored, "", nil
		}
		if len(stored) < 32 {
			return "", "", fmt.Errorf("admin token %s is neither a token's hash nor a token; run `host admin reset-token` to make a new one", path)
		}
		hash := HashToken(stored)
		if err := writeToken(path, hash, false); err != nil {
			return "", "", err
		}
		log.Info("the admin token file held the token itself; it now holds its hash (the token is unchanged)", "file", path)
		return hash, "", nil
	case !errors.Is(err, os.ErrNotExist):
		return "", "", fmt.Errorf("read admin token: %w", err)
	}
	if !IsLoopback(addr) {
		return "", "", fmt.Errorf("refusing to serve on %s, which is not a loopback address, before the admin token exists: start once on the default --addr 127.0.0.1:8080 to create %s, note the token it prints, then start again with --addr %s",
			addr, path, addr)
	}
	tok, hash, err := NewToken(root, true)
	if err != nil {
		return "", "", err
	}
	msg := fmt.Sprintf("admin token (shown once; only its hash is kept, in %s, mode 0600): %s", path, tok)
	if out != nil {
		fmt.Fprintln(out, msg)
	} else {
		log.Info(msg)
	}
	return hash, tok, nil
}

// NewToken makes a new admin token and writes its hash to root's token
// file (replacing one when exclusive is false), and returns the token.
func NewToken(root string, exclusive bool) (tok, hash string, err error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", "", fmt.Errorf("make admin token: %w", err)
	}
	tok = hex.EncodeToString(raw)
	hash = HashToken(tok)
	if err := writeToken(filepath.Join(root, TokenFile), hash, exclusive); err != nil {
		return "", "", err
	}
	return tok, hash, nil
}

// writeToken writes the token file (0600): only when there is none with
// exclusive, else through a temporary file and a rename.
func writeToken(path, content string, exclusive bool) error {
	if exclusive {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("create admin token: %w", err)
		}
		if _, err := f.WriteString(content + "\n"); err != nil {
			_ = f.Close()
			_ = os.Remove(path)
			return fmt.Errorf("write admin token: %w", err)
		}
		if err := f.Close(); err != nil {
			_ = os.Remove(path)
			return fmt.Errorf("write admin token: %w", err)
		}
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	return nil
}

// tokenFile follows the token file while the host serves: a token reset
// by `host admin reset-token` takes effect at once, and ends every
// session.
type tokenFile struct {
	path string
	mu   sync.Mutex
	hash string
	mod  time.Time
	size int64
	// reset is called when the hash changes (the sessions end).
	reset func()
}

// current is the hash to check tokens against, read again when the file
// changed.
func (t *tokenFile) current() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	fi, err := os.Stat(t.path)
	if err != nil || (fi.ModTime().Equal(t.mod) && fi.Size() == t.size) {
		return t.hash
	}
	data, err := os.ReadFile(t.path)
	if err != nil {
		return t.hash
	}
	stored := strings.TrimSpace(string(data))
	if !strings.HasPrefix(stored, tokenHashPrefix) {
		return t.hash
	}
	t.mod, t.size = fi.ModTime(), fi.Size()
	if stored != t.hash {
		t.hash = stored
		if t.reset != nil {
			t.reset()
		}
	}
	return t.hash
}

// isToken reports whether tok is the admin token.
func (s *Server) isToken(tok string) bool {
	return tok != "" && equal(HashToken(tok), s.tokens.current())
}

// IsLoopback reports whether a listen address only accepts connections
// from this machine. An empty host ("":8080) listens everywhere.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// authKind says how a request proved it may use the admin pages.
type authKind int

const (
	authNone   authKind = iota
	authBearer          // Authorization: Bearer <token>; no CSRF field needed
	authCookie          // a live session's cookie
)

type authCtxKey struct{}

// authInfo is what requireAuth found, kept in the request's context for
// the handlers: how the request was authorized and, for a session, the
// session's id and CSRF value.
type authInfo struct {
	kind    authKind
	session string
	csrf    string
	// wait, when not 0, says the client failed to log in too often: its
	// token was not even compared, and it may try again after wait.
	wait   time.Duration
	client netip.Addr
}

// authenticate says whether the request carries the token as a Bearer
// token, or the cookie of a live session. A Bearer token is a login
// attempt: a wrong one counts against the client's address, and a client
// with no attempts left is refused before its token is compared.
func (s *Server) authenticate(r *http.Request) authInfo {
	// A token replaced meanwhile ends every session before any is used.
	s.tokens.current()
	if h := r.Header.Get("Authorization"); h != "" {
		client := s.clientAddr(r)
		if wait := s.logins.wait(client); wait > 0 {
			return authInfo{wait: wait, client: client}
		}
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") && s.isToken(strings.TrimSpace(tok)) {
			return authInfo{kind: authBearer}
		}
		s.logins.failed(client)
		return authInfo{}
	}
	c, err := r.Cookie(CookieName)
	if err != nil {
		return authInfo{}
	}
	csrf, ok := s.sessions.touch(c.Value)
	if !ok {
		return authInfo{}
	}
	return authInfo{kind: authCookie, session: c.Value, csrf: csrf}
}

func authFrom(r *http.Request) authInfo {
	a, _ := r.Context().Value(authCtxKey{}).(authInfo)
	return a
}

// csrfOK checks the hidden field every acting form carries against the
// session's own CSRF value. Cross-origin requests are refused before this
// by http.CrossOriginProtection; the field also stops a same-site page
// that is not ours. A Bearer request needs no field: browsers never add
// that header on their own.
func (s *Server) csrfOK(r *http.Request) bool {
	a := authFrom(r)
	switch a.kind {
	case authBearer:
		return true
	case authCookie:
		return a.csrf != "" && equal(r.PostFormValue("csrf"), a.csrf)
	}
	return false
}

func (s *Server) setSession(w http.ResponseWriter, r *http.Request, id string) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: id, Path: "/admin", MaxAge: int(SessionMaxAge / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure(r),
	})
}

func (s *Server) clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: "", Path: "/admin", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure(r),
	})
}

// requireAuth answers 401 to requests without the token: the JSON API with
// a JSON error, pages with the login form.
func (s *Server) requireAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := s.authenticate(r)
		if a.wait > 0 {
			s.tooManyLogins(w, r, a.client, a.wait)
			return
		}
		if a.kind == authNone {
			s.unauthorized(w, r, "")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), authCtxKey{}, a)))
	})
}

func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, problem string) {
	if strings.HasPrefix(r.URL.Path, "/admin/api/") {
		w.Header().Set("WWW-Authenticate", `Bearer realm="packhost admin"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error": "missing or wrong admin token: send Authorization: Bearer <the admin token> (printed when it was made; `host admin reset-token` makes a new one)",
		})
		return
	}
	next := r.URL.Path
	if r.Method != http.MethodGet || !strings.HasPrefix(next, "/admin/") || next == "/admin/login" {
		next = "/admin/"
	}
	s.render(w, r, http.StatusUnauthorized, "login", loginPage{Next: next, Problem: problem})
}

type loginPage struct {
	Next    string
	Problem string
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		switch a := s.authenticate(r); {
		case a.wait > 0:
			s.tooManyLogins(w, r, a.client, a.wait)
		case a.kind != authNone:
			http.Redirect(w, r, "/admin/", http.StatusSeeOther)
		default:
			s.unauthorized(w, r, "")
		}
		return
	}
	// Every attempt is checked against the client's failed logins first:
	// a flood learns nothing, not even from a right guess.
	client := s.clientAddr(r)
	if wait := s.logins.wait(client); wait > 0 {
		s.tooManyLogins(w, r, client, wait)
		return
	}
	if err := r.ParseForm(); err != nil {
		code := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			code = http.StatusRequestEntityTooLarge
		}
		http.Error(w, "could not read the login form: "+err.Error(), code)
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if !s.isToken(tok) {
		s.logins.failed(client)
		s.log.Warn("admin login refused: wrong token", "remote", r.RemoteAddr, "client", client.String())
		s.unauthorized(w, r, "That is not the admin token. It was printed when the host made it; if it is lost, `host admin reset-token` makes a new one.")
		return
	}
	// A new id at every login: a cookie planted before the login never
	// becomes a session, and the browser's previous session ends.
	if c, err := r.Cookie(CookieName); err == nil {
		s.sessions.end(c.Value)
	}
	id, err := s.sessions.create()
	if err != nil {
		s.log.Error("admin login", "error", err)
		http.Error(w, "internal error starting the session; see the host's log", http.StatusInternalServerError)
		return
	}
	s.setSession(w, r, id)
	next := r.PostFormValue("next")
	if !strings.HasPrefix(next, "/admin/") || strings.HasPrefix(next, "/admin//") || strings.Contains(next, "\\") {
		next = "/admin/"
	}
	s.log.Info("admin logged in", "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if !s.csrfOK(r) {
		http.Error(w, "form expired: reload the page and try again", http.StatusForbidden)
		return
	}
	if a := authFrom(r); a.kind == authCookie {
		s.sessions.end(a.session)
		s.log.Info("admin logged out", "remote", r.RemoteAddr)
	}
	s.clearSession(w, r)
	http.Redirect(w, r, "/admin/login", http.StatusSeeOther)
}
