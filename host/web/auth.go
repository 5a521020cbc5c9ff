package web

import (
	"context"
	"crypto/rand"
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
	"time"

	"github.com/hashicorp/go-hclog"
)

// TokenFile is the admin token's file in the system directory.
const TokenFile = "admin_token"

// CookieName is the admin session cookie. It is scoped to /admin, so pack
// pages never see it.
const CookieName = "packhost_admin"

// EnsureToken returns the admin token of the system directory at root,
// creating it (mode 0600) and printing it once to out when it does not
// exist yet. An address that is not loopback is refused while no token
// file exists: the token must be made, and read by the operator, before
// the admin pages face a network.
func EnsureToken(root, addr string, out io.Writer, log hclog.Logger) (string, error) {
	path := filepath.Join(root, TokenFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		fi, err := os.Stat(path)
		if err != nil {
			return "", fmt.Errorf("admin token: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("admin token %s has mode %04o: other users may read it; run `chmod 600 %s` and start again",
				path, fi.Mode().Perm(), path)
		}
		tok := strings.TrimSpace(string(data))
		if len(tok) < 32 {
			return "", fmt.Errorf("admin token %s is shorter than 32 characters; delete the file to have a new one made on the next start (on a loopback --addr)", path)
		}
		return tok, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("read admin token: %w", err)
	}
	if !IsLoopback(addr) {
		return "", fmt.Errorf("refusing to serve on %s, which is not a loopback address, before the admin token exists: start once on the default --addr 127.0.0.1:8080 to create %s, note the token it prints, then start again with --addr %s",
			addr, path, addr)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("make admin token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("create admin token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return "", fmt.Errorf("write admin token: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("write admin token: %w", err)
	}
	msg := fmt.Sprintf("admin token (shown once; kept in %s, mode 0600): %s", path, tok)
	if out != nil {
		fmt.Fprintln(out, msg)
	} else {
		log.Info(msg)
	}
	return tok, nil
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
	if h := r.Header.Get("Authorization"); h != "" {
		client := s.clientAddr(r)
		if wait := s.logins.wait(client); wait > 0 {
			return authInfo{wait: wait, client: client}
		}
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") && equal(strings.TrimSpace(tok), s.token) {
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
			"error": "missing or wrong admin token: send Authorization: Bearer <token from " + TokenFile + ">",
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
	if tok == "" || !equal(tok, s.token) {
		s.logins.failed(client)
		s.log.Warn("admin login refused: wrong token", "remote", r.RemoteAddr, "client", client.String())
		s.unauthorized(w, r, "That is not the admin token. It is in the file "+TokenFile+" of the system directory.")
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
