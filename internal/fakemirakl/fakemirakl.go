// Package fakemirakl is a faithful stand-in for Mirakl's OAuth token endpoint
// (POST /oauth/token, client-credentials grant, credentials in the form body).
//
// Every test level and the local demo share it. It checks what the real
// endpoint checks, issues distinct tokens with a configurable expires_in,
// counts what it sees, and misbehaves on demand through queued faults or a
// failure ratio, so that no test needs a copy of its own.
package fakemirakl

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// TokenPath is where the fake serves tokens, as Mirakl does.
const TokenPath = "/oauth/token"

// Fault describes one misbehaving answer. The zero value is no fault.
type Fault struct {
	// Status and Body replace the answer when Status is not zero.
	Status      int
	Body        string
	ContentType string
	// Header is added to the answer (Retry-After, ...).
	Header map[string]string
	// Delay is waited before answering (or before resetting).
	Delay time.Duration
	// Reset closes the connection without any answer.
	Reset bool
	// BodySize pads a 200 answer's body to this many bytes.
	BodySize int
	// Echo, when set, makes the body Echo(the request's raw body): a proxy
	// or server that repeats what it was sent, secret included.
	Echo func(requestBody string) string
}

// Some faults the real endpoint is known or expected to produce.
func OAuthError(status int, code, description string) Fault {
	body, _ := json.Marshal(map[string]string{"error": code, "error_description": description})
	return Fault{Status: status, Body: string(body), ContentType: "application/json"}
}

func HTMLError(status int) Fault {
	return Fault{
		Status:      status,
		Body:        fmt.Sprintf("<html><head><title>%d %s</title></head><body><h1>%s</h1><p>upstream proxy</p></body></html>", status, http.StatusText(status), http.StatusText(status)),
		ContentType: "text/html",
	}
}

func RateLimited(retryAfter string) Fault {
	f := Fault{Status: http.StatusTooManyRequests, Body: `{"message":"too many requests"}`, ContentType: "application/json"}
	if retryAfter != "" {
		f.Header = map[string]string{"Retry-After": retryAfter}
	}
	return f
}

// Redirect answers with a redirect to location, as a misconfigured proxy or a
// hostile endpoint might, to take the form (secret included) elsewhere.
func Redirect(status int, location string) Fault {
	return Fault{Status: status, ContentType: "text/html", Header: map[string]string{"Location": location}}
}

func Slow(d time.Duration) Fault { return Fault{Delay: d} }

func ConnectionReset() Fault { return Fault{Reset: true} }

func Oversized(size int) Fault { return Fault{BodySize: size} }

// RawToken answers 200 with the given JSON body, for malformed-token cases.
func RawToken(body string) Fault {
	return Fault{Status: http.StatusOK, Body: body, ContentType: "application/json"}
}

// Stats is what the fake has seen.
type Stats struct {
	Requests int `json:"requests"` // every request to the token path
	Issued   int `json:"issued"`   // tokens handed out
	Refused  int `json:"refused"`  // requests answered with an OAuth error for bad input
	Faults   int `json:"faults"`   // requests answered with an injected fault
}

// Server is the fake endpoint. Create it with New or NewHandler.
type Server struct {
	clientID     string
	clientSecret string

	mu           sync.Mutex
	expiresIn    int
	tokenPrefix  string
	queued       []Fault
	failureRatio float64
	failure      Fault
	stats        Stats
	issued       []string
	issuedAt     map[string]time.Time
	arrivals     []time.Time
	openConns    int

	httpServer *httptest.Server
}

// Option adjusts a Server before it starts.
type Option func(*Server)

// WithExpiresIn sets the expires_in of issued tokens (seconds; Mirakl: 3599).
func WithExpiresIn(seconds int) Option { return func(s *Server) { s.expiresIn = seconds } }

// WithTokenPrefix makes issued tokens start with prefix, so tests can look for them.
func WithTokenPrefix(prefix string) Option { return func(s *Server) { s.tokenPrefix = prefix } }

// NewHandler returns the fake as an http.Handler, for programs that serve it themselves.
func NewHandler(clientID, clientSecret string, opts ...Option) *Server {
	s := &Server{clientID: clientID, clientSecret: clientSecret, expiresIn: 3599, tokenPrefix: "fake-mirakl-"}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// New starts the fake on 127.0.0.1 (plain HTTP, which the engine accepts for loopback only).
func New(clientID, clientSecret string, opts ...Option) *Server {
	s := NewHandler(clientID, clientSecret, opts...)
	s.httpServer = httptest.NewUnstartedServer(s)
	s.httpServer.Config.ConnState = s.trackConnection
	s.httpServer.Start()
	return s
}

// NewTLS starts the fake on 127.0.0.1 over HTTPS with a certificate of its own CA.
func NewTLS(clientID, clientSecret string, opts ...Option) *Server {
	s := NewHandler(clientID, clientSecret, opts...)
	s.httpServer = httptest.NewUnstartedServer(s)
	s.httpServer.Config.ConnState = s.trackConnection
	s.httpServer.StartTLS()
	return s
}

// TokenURL is the URL to put in the engine's token_url.
func (s *Server) TokenURL() string { return s.httpServer.URL + TokenPath }

// CACertPEM is the PEM of the certificate a TLS fake serves.
func (s *Server) CACertPEM() string {
	cert := s.httpServer.Certificate()
	if cert == nil {
		return ""
	}
	return string(pemEncode(cert.Raw))
}

// Close stops the fake and waits for its connections to end.
func (s *Server) Close() {
	if s.httpServer != nil {
		s.httpServer.CloseClientConnections()
		s.httpServer.Close()
	}
}

// SetCredentials changes the credentials the fake accepts, as if Mirakl rotated them.
func (s *Server) SetCredentials(clientID, clientSecret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clientID, s.clientSecret = clientID, clientSecret
}

// Enqueue makes the next len(faults) requests misbehave, in order.
func (s *Server) Enqueue(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queued = append(s.queued, faults...)
}

// FailRandomly makes a share (0..1) of requests answer with f, for load tests.
func (s *Server) FailRandomly(ratio float64, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failureRatio, s.failure = ratio, f
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Requests is the number of requests the token path has seen.
func (s *Server) Requests() int { return s.Stats().Requests }

// IssuedTokens returns every access token handed out so far.
func (s *Server) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// Arrivals is when each request to the token path arrived, in order, so that
// tests can see how long the engine waited between attempts.
func (s *Server) Arrivals() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.arrivals...)
}

// OpenConnections is the number of client connections open to the fake,
// idle ones included (New and NewTLS only).
func (s *Server) OpenConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.openConns
}

func (s *Server) trackConnection(_ net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.openConns++
	case http.StateClosed, http.StateHijacked:
		s.openConns--
	}
}

// IssuedAt is when the fake issued token (before its answer was sent), so
// that tests measure expiry against the issuer, not against when they look.
func (s *Server) IssuedAt(token string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.issuedAt[token]
	return at, ok
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case TokenPath:
		s.serveToken(w, r)
	case "/_fake/stats":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Stats())
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) nextFault() (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	s.arrivals = append(s.arrivals, time.Now())
	if len(s.queued) > 0 {
		f := s.queued[0]
		s.queued = s.queued[1:]
		s.stats.Faults++
		return f, true
	}
	if s.failureRatio > 0 && randomFloat() < s.failureRatio {
		s.stats.Faults++
		return s.failure, true
	}
	return Fault{}, false
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	// Read the body first: only then does net/http notice a client that goes
	// away, and cancel the wait of a slow answer.
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(bytes.NewReader(raw))
	fault, faulty := s.nextFault()
	if fault.Delay > 0 {
		select {
		case <-time.After(fault.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if fault.Reset {
		resetConnection(w)
		return
	}
	if faulty && fault.Status != 0 {
		if fault.Echo != nil {
			fault.Body = fault.Echo(string(raw))
		}
		writeFault(w, fault)
		return
	}

	// What the real endpoint checks, in the order an OAuth server would.
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		s.refuse(w, http.StatusBadRequest, "invalid_request", "content type must be application/x-www-form-urlencoded")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.refuse(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	form := r.PostForm
	if form.Get("grant_type") == "" || form.Get("client_id") == "" || form.Get("client_secret") == "" {
		s.refuse(w, http.StatusBadRequest, "invalid_request", "grant_type, client_id and client_secret are mandatory")
		return
	}
	if form.Get("grant_type") != "client_credentials" {
		s.refuse(w, http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported")
		return
	}

	s.mu.Lock()
	validCredentials := form.Get("client_id") == s.clientID && form.Get("client_secret") == s.clientSecret
	expiresIn := s.expiresIn
	s.mu.Unlock()
	if !validCredentials {
		s.refuse(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return
	}

	token := s.issue()
	body := map[string]any{
		"token_type":     "Bearer",
		"access_token":   token,
		"expires_in":     expiresIn,
		"target_app":     "",
		"resource_owner": "",
	}
	payload, _ := json.Marshal(body)
	if fault.BodySize > len(payload) {
		// The padding field's own name and quotes count towards the size.
		body["padding"] = ""
		unpadded, _ := json.Marshal(body)
		body["padding"] = strings.Repeat("x", max(fault.BodySize-len(unpadded), 0))
		payload, _ = json.Marshal(body)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(payload)
}

func (s *Server) issue() string {
	var random [12]byte
	_, _ = rand.Read(random[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Issued++
	token := fmt.Sprintf("%s%d-%s", s.tokenPrefix, s.stats.Issued, hex.EncodeToString(random[:]))
	s.issued = append(s.issued, token)
	if s.issuedAt == nil {
		s.issuedAt = make(map[string]time.Time)
	}
	s.issuedAt[token] = time.Now()
	return token
}

func (s *Server) refuse(w http.ResponseWriter, status int, code, description string) {
	s.mu.Lock()
	s.stats.Refused++
	s.mu.Unlock()
	writeFault(w, OAuthError(status, code, description))
}

func writeFault(w http.ResponseWriter, f Fault) {
	for k, v := range f.Header {
		w.Header().Set(k, v)
	}
	if f.ContentType != "" {
		w.Header().Set("Content-Type", f.ContentType)
	}
	w.WriteHeader(f.Status)
	_, _ = w.Write([]byte(f.Body))
}

// resetConnection drops the TCP connection with an RST, like a crashing proxy.
func resetConnection(w http.ResponseWriter) {
	hijacker, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hijacker.Hijack()
	if err != nil {
		return
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}

func randomFloat() float64 {
	n, err := rand.Int(rand.Reader, big.NewInt(1<<53))
	if err != nil {
		return 1
	}
	return float64(n.Int64()) / (1 << 53)
}

func pemEncode(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
