package packrt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/packhost/packhost/internal/packerr"
	"github.com/packhost/packhost/internal/packpb"
)

// chunkSize is the most body bytes one message carries each way. A
// response smaller than this travels in one message together with its head.
const chunkSize = 32 << 10

// ServeHTTP answers one HTTP request that the host forwards to the pack.
//
// The request reaching Pack.Pages carries the full path the browser asked
// for (it starts with Pack.Prefix; wrap the handler in http.StripPrefix to
// see paths relative to it). Its context ends when the host cancels the
// request: the browser went away, the host's timeout passed, or the host is
// shutting down.
//
// The response is buffered up to 32 KiB: a small page goes back in one
// message. Larger bodies stream in chunks, and http.Flusher sends what was
// written so far at once.
func (s *server) ServeHTTP(stream packpb.Pack_ServeHTTPServer) error {
	pages := s.rt.pack.Pages
	if pages == nil {
		return s.fail(fmt.Errorf("%w: pack %s serves no pages", packerr.ErrNotSupported, s.rt.pack.ID))
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	head := first.GetHead()
	if head == nil {
		return s.fail(fmt.Errorf("%w: the first part of a request has no head", packerr.ErrInvalidArgument))
	}
	ctx := withRuntime(stream.Context(), s.rt)
	req, err := newRequest(ctx, head, newBodyReader(first.GetBody(), stream))
	if err != nil {
		return s.fail(fmt.Errorf("%w: %v", packerr.ErrInvalidArgument, err))
	}
	w := &responseWriter{stream: stream, header: http.Header{}}
	if err := s.serve(w, req, pages); err != nil {
		return err
	}
	return w.finish()
}

// serve runs the pack's handler, turning a panic into a 500 (when nothing
// was sent yet) and an error logged under the pack's name.
func (s *server) serve(w *responseWriter, req *http.Request, h http.Handler) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				err = errors.New("handler aborted the response")
				return
			}
			s.rt.log.Error("page handler panicked", "method", req.Method, "path", req.URL.Path, "panic", v)
			if !w.sent {
				w.header = http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
				w.buf = append(w.buf[:0], "internal error in pack "+s.rt.pack.ID+"\n"...)
				w.status = http.StatusInternalServerError
				return
			}
			err = fmt.Errorf("page handler panicked after the response started: %v", v)
		}
	}()
	h.ServeHTTP(w, req)
	return w.err
}

func newRequest(ctx context.Context, head *packpb.HTTPRequestHead, body io.ReadCloser) (*http.Request, error) {
	u := &url.URL{Path: head.GetPath(), RawQuery: head.GetRawQuery()}
	if !strings.HasPrefix(u.Path, "/") {
		return nil, fmt.Errorf("request path %q does not start with /", u.Path)
	}
	req, err := http.NewRequestWithContext(ctx, head.GetMethod(), "/", body)
	if err != nil {
		return nil, err
	}
	req.URL = u
	req.RequestURI = u.RequestURI()
	req.Host = head.GetHost()
	req.RemoteAddr = head.GetRemoteAddr()
	req.Header = make(http.Header, len(head.GetHeaders()))
	for _, h := range head.GetHeaders() {
		req.Header[http.CanonicalHeaderKey(h.GetKey())] = h.GetValues()
	}
	req.ContentLength = -1
	if cl := req.Header.Get("Content-Length"); cl != "" {
		var n int64
		if _, err := fmt.Sscan(cl, &n); err == nil && n >= 0 {
			req.ContentLength = n
		}
	}
	if req.ContentLength == 0 {
		req.Body = http.NoBody
	}
	return req, nil
}

// bodyReader reads the request body from the stream's later messages.
type bodyReader struct {
	stream packpb.Pack_ServeHTTPServer
	mu     sync.Mutex
	buf    []byte
	err    error
}

func newBodyReader(first []byte, stream packpb.Pack_ServeHTTPServer) *bodyReader {
	return &bodyReader{stream: stream, buf: first}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.buf) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		part, err := b.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				b.err = io.EOF
			} else {
				b.err = fmt.Errorf("read request body: %w", err)
			}
			continue
		}
		b.buf = part.GetBody()
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

func (b *bodyReader) Close() error { return nil }

// responseWriter sends the head with the first body chunk, and body chunks
// of up to chunkSize.
type responseWriter struct {
	stream packpb.Pack_ServeHTTPServer
	header http.Header
	status int
	sent   bool // the head went out
	buf    []byte
	err    error
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 || w.sent {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code < 200 {
		return // informational responses are not forwarded
	}
	w.status = code
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sent && w.header.Get("Content-Type") == "" && len(w.buf) == 0 {
		w.header.Set("Content-Type", http.DetectContentType(p))
	}
	written := 0
	for len(p) > 0 {
		n := min(chunkSize-len(w.buf), len(p))
		w.buf = append(w.buf, p[:n]...)
		p, written = p[n:], written+n
		if len(w.buf) >= chunkSize {
			if err := w.send(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// Flush sends what was written so far.
func (w *responseWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.send()
}

func (w *responseWriter) send() error {
	if w.err != nil {
		return w.err
	}
	if w.sent && len(w.buf) == 0 {
		return nil
	}
	part := &packpb.HTTPResponsePart{Body: w.buf}
	if !w.sent {
		part.Head = &packpb.HTTPResponseHead{Status: int32(w.status), Headers: headersOut(w.header)}
	}
	if err := w.stream.Send(part); err != nil {
		w.err = fmt.Errorf("send response: %w", err)
		return w.err
	}
	w.sent = true
	w.buf = w.buf[:0:0]
	return nil
}

// finish sends the rest of the response when the handler returns.
func (w *responseWriter) finish() error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if !w.sent && len(w.buf) > 0 && w.header.Get("Content-Length") == "" {
		w.header.Set("Content-Length", fmt.Sprint(len(w.buf)))
	}
	return w.send()
}

func headersOut(h http.Header) []*packpb.Header {
	out := make([]*packpb.Header, 0, len(h))
	for k, v := range h {
		out = append(out, &packpb.Header{Key: k, Values: v})
	}
	return out
}
