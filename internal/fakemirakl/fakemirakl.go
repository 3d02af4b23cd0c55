// Package fakemirakl is a faithful stand-in for Mirakl's OAuth token endpoint
// (POST /oauth/token, client-credentials grant, credentials in the form body).
//
// Every test level and the local demo share it. It checks what the real
// endpoint checks, issues distinct tokens with a configurable expires_in,
// counts what it sees, and misbehaves on demand through queued faults or a
// failure ratio, so that no test needs a copy of its own.
//
// It also checks what a client of Mirakl must send (method, Content-Type,
// Accept, exactly the three form fields and an audience only where the test
// configured one, no credentials anywhere else) and
// keeps every departure as a violation: a test helper that finds any at the
// end of a test fails it, so that a request Mirakl would refuse cannot pass
// unnoticed just because the fake answered it.
package fakemirakl

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
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
	// Hold, when not nil, keeps the request waiting until the channel is
	// closed (or the client goes away), then answers as the rest of the
	// fault says: a Mirakl that hangs for as long as the test wants.
	Hold <-chan struct{}
	// Stream, when positive, answers 200 with a JSON-looking body of that
	// many bytes, written in chunks until the client stops reading: what
	// the fake managed to write shows in Seen.
	Stream int64
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

// Hang keeps the request waiting until release is closed, then answers normally.
func Hang(release <-chan struct{}) Fault { return Fault{Hold: release} }

// Huge answers 200 with a body of size bytes, sent as fast as the client reads.
func Huge(size int64) Fault { return Fault{Stream: size} }

// Request is what the fake saw of one request to the token path, and how its
// answer went.
type Request struct {
	Method      string
	Query       string // the raw query string; a client of Mirakl sends none
	ContentType string
	Accept      string
	UserAgent   string
	Form        url.Values // the parsed body, secret included
	// Violations are the ways the request departs from what Mirakl expects
	// of a client; such a request was answered 400 invalid_request (405 for
	// a wrong method) and counted as refused.
	Violations []string
	// Done: the handler has returned; the fields below are final.
	Done bool
	// ClientGone: the client went away (its request was cancelled) while
	// the fake was still holding or writing the answer.
	ClientGone bool
	// BytesWritten is how much of the body the fake managed to write.
	BytesWritten int64
	// WriteFailed: a write of the answer failed (the client had stopped reading).
	WriteFailed bool

	// Arrived and Finished are when the request arrived and when its
	// handler returned (zero until Done), so that a long run can be judged
	// afterwards against what happened at the time.
	Arrived, Finished time.Time
	// Status is the HTTP status of the answer (0: none was sent: a reset,
	// or a client that went away first).
	Status int
	// Outcome is how the request ended, one of the Outcome constants
	// ("" until Done).
	Outcome string
	// Token is the access token issued to it, if any.
	Token string
}

// How a request to the token path ended (Request.Outcome).
const (
	OutcomeIssued     = "issued"      // a token was issued
	OutcomeFault      = "fault"       // an injected fault answered it (a hold that ended with a token counts as issued)
	OutcomeRefused    = "refused"     // an OAuth error for bad credentials or a malformed request
	OutcomeReset      = "reset"       // the connection was dropped without an answer
	OutcomeClientGone = "client gone" // the client went away before any answer
)

// IssuedToken is one token the fake handed out, with its life as the fake
// counts it: a client may never serve it past ExpiresAt.
type IssuedToken struct {
	Token     string
	IssuedAt  time.Time
	ExpiresIn int // seconds, as sent
	ExpiresAt time.Time
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
	tokens       []IssuedToken
	arrivals     []time.Time
	openConns    int
	seen         []*Request
	violations   []string // taken by TakeViolations
	// audiences is what the test configured the engine to send as audience
	// ("" for none, the default): a request with another is a violation.
	audiences map[string]bool
	// refusedAudiences answer an OAuth error to a request for them.
	refusedAudiences map[string]string
	audienceOf       map[string]string // token -> the audience it was issued for

	httpServer *httptest.Server
}

// Option adjusts a Server before it starts.
type Option func(*Server)

// WithAudiences names the audiences the engine under test is configured to
// send ("" for a request without one). By default only "" is expected: a
// request that carries an audience nobody configured is a violation.
func WithAudiences(audiences ...string) Option {
	return func(s *Server) {
		s.audiences = map[string]bool{}
		for _, a := range audiences {
			s.audiences[a] = true
		}
	}
}

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
	if s.audiences == nil {
		s.audiences = map[string]bool{"": true}
	}
	return s
}

// RefuseAudience makes every request for audience answer 400 with the OAuth
// error code (a company that withdrew its consent), while the others are
// served; an empty code serves it again.
func (s *Server) RefuseAudience(audience, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refusedAudiences == nil {
		s.refusedAudiences = map[string]string{}
	}
	if code == "" {
		delete(s.refusedAudiences, audience)
		return
	}
	s.refusedAudiences[audience] = code
}

// AudienceOf is the audience a token was issued for ("" for none), and
// whether the fake issued it.
func (s *Server) AudienceOf(token string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	audience, ok := s.audienceOf[token]
	return audience, ok
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

// Tokens is every token handed out so far, in order, with its issue and
// expiry times.
func (s *Server) Tokens() []IssuedToken {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tokens)
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

// Seen returns a copy of what the fake saw of each request to the token
// path, in order of arrival.
func (s *Server) Seen() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.seen))
	for i, r := range s.seen {
		out[i] = *r
		out[i].Form = cloneValues(r.Form)
		out[i].Violations = slices.Clone(r.Violations)
	}
	return out
}

// Violations lists the protocol violations seen so far and not yet taken,
// each prefixed with the number of its request ("request 3: ...").
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.violations)
}

// TakeViolations returns the violations seen so far and forgets them: a test
// that sends a bad request on purpose takes what it expected, so that the
// helpers' end-of-test check finds only the unexpected ones.
func (s *Server) TakeViolations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.violations
	s.violations = nil
	return v
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

// arrive records a request and returns its record.
func (s *Server) arrive(r *Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	s.arrivals = append(s.arrivals, time.Now())
	s.seen = append(s.seen, r)
	for _, v := range r.Violations {
		s.violations = append(s.violations, fmt.Sprintf("request %d: %s", len(s.seen), v))
	}
}

func (s *Server) nextFault() (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
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

// update changes a request's record under the lock.
func (s *Server) update(r *Request, f func(*Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(r)
}

// checkRequest lists how a token request departs from what Mirakl expects:
// the client-credentials grant as RFC 6749 section 4.4 with the credentials
// in the body (section 2.3.1), and a JSON answer asked for.
func checkRequest(r *http.Request, raw []byte) (form url.Values, violations []string) {
	if r.Method != http.MethodPost {
		violations = append(violations, fmt.Sprintf("method %s, want POST", r.Method))
	}
	if r.URL.RawQuery != "" {
		violations = append(violations, "a query string (nothing goes in the URL, least of all credentials)")
	}
	if r.Header.Get("Authorization") != "" {
		violations = append(violations, "an Authorization header (Mirakl takes the credentials in the form body)")
	}
	if media, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || media != "application/x-www-form-urlencoded" {
		violations = append(violations, fmt.Sprintf("Content-Type %q, want application/x-www-form-urlencoded", r.Header.Get("Content-Type")))
	}
	if !acceptsJSON(r.Header.Values("Accept")) {
		violations = append(violations, fmt.Sprintf("Accept %q, want application/json", strings.Join(r.Header.Values("Accept"), ", ")))
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil {
		return form, append(violations, "a body that is not a form")
	}
	// audience is optional: the seller APIs' integrators send it (its value
	// is checked against what the test configured, in serveToken).
	want := map[string]bool{"grant_type": true, "client_id": true, "client_secret": true, "audience": true}
	for name, values := range form {
		switch {
		case !want[name]:
			violations = append(violations, fmt.Sprintf("unexpected form field %q", name))
		case len(values) != 1:
			violations = append(violations, fmt.Sprintf("form field %q %d times", name, len(values)))
		}
	}
	for _, name := range []string{"grant_type", "client_id", "client_secret"} {
		if form.Get(name) == "" {
			violations = append(violations, fmt.Sprintf("form field %q missing or empty", name))
		}
	}
	if g := form.Get("grant_type"); g != "" && g != "client_credentials" {
		violations = append(violations, fmt.Sprintf("grant_type %q, want client_credentials", g))
	}
	if values, ok := form["audience"]; ok && len(values) == 1 && values[0] == "" {
		violations = append(violations, "form field \"audience\" empty (leave it out when there is none)")
	}
	slices.Sort(violations) // the form's map order must not change the report
	return form, violations
}

// acceptsJSON: an Accept header names application/json (any parameters).
func acceptsJSON(values []string) bool {
	for _, value := range values {
		for part := range strings.SplitSeq(value, ",") {
			if media, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && media == "application/json" {
				return true
			}
		}
	}
	return false
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	// Read the body first: only then does net/http notice a client that goes
	// away, and cancel the wait of a slow answer.
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	form, violations := checkRequest(r, raw)
	audience := form.Get("audience")
	s.mu.Lock()
	if !s.audiences[audience] {
		violations = append(violations, fmt.Sprintf("audience %q, which the test did not configure", audience))
	}
	refusedCode := s.refusedAudiences[audience]
	s.mu.Unlock()
	seen := &Request{
		Method: r.Method, Query: r.URL.RawQuery,
		ContentType: r.Header.Get("Content-Type"), Accept: strings.Join(r.Header.Values("Accept"), ", "),
		UserAgent: r.Header.Get("User-Agent"), Form: form, Violations: violations,
		Arrived: time.Now(),
	}
	s.arrive(seen)
	counter := &countingWriter{ResponseWriter: w}
	outcome, issuedToken := OutcomeRefused, ""
	defer func() {
		finished := time.Now()
		s.update(seen, func(seen *Request) {
			seen.Done = true
			seen.BytesWritten, seen.WriteFailed = counter.written, counter.failed
			if r.Context().Err() != nil {
				seen.ClientGone = true
			}
			seen.Finished, seen.Status, seen.Outcome, seen.Token = finished, counter.status, outcome, issuedToken
			if counter.status == 0 && outcome != OutcomeReset {
				seen.Outcome = OutcomeClientGone
			}
		})
	}()
	w = counter

	// What the real endpoint refuses, before any fault: a request Mirakl
	// would not take must not pass for one it did.
	if len(violations) > 0 {
		if r.Method != http.MethodPost {
			s.mu.Lock()
			s.stats.Refused++
			s.mu.Unlock()
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		code := "invalid_request"
		if g := form.Get("grant_type"); g != "" && g != "client_credentials" && len(violations) == 1 {
			code = "unsupported_grant_type"
		}
		s.refuse(w, http.StatusBadRequest, code, strings.Join(violations, "; "))
		return
	}

	fault, faulty := s.nextFault()
	if faulty {
		outcome = OutcomeFault
	}
	if fault.Hold != nil {
		select {
		case <-fault.Hold:
		case <-r.Context().Done():
			return
		}
	}
	if fault.Delay > 0 {
		select {
		case <-time.After(fault.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if fault.Reset {
		outcome = OutcomeReset
		resetConnection(w)
		return
	}
	if fault.Stream > 0 {
		stream(w, fault.Stream)
		return
	}
	if faulty && fault.Status != 0 {
		if fault.Echo != nil {
			fault.Body = fault.Echo(string(raw))
		}
		writeFault(w, fault)
		return
	}

	s.mu.Lock()
	validCredentials := form.Get("client_id") == s.clientID && form.Get("client_secret") == s.clientSecret
	expiresIn := s.expiresIn
	s.mu.Unlock()
	if !validCredentials {
		outcome = OutcomeRefused
		s.refuse(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return
	}
	if refusedCode != "" {
		s.refuse(w, http.StatusBadRequest, refusedCode, "The audience is not granted to this client")
		return
	}

	token := s.issue(audience, expiresIn)
	outcome, issuedToken = OutcomeIssued, token
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

// stream writes a 200 JSON-looking body of size bytes, flushing each chunk,
// until it is all written or a write fails.
func stream(w http.ResponseWriter, size int64) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(size))
	w.WriteHeader(http.StatusOK)
	flusher := http.NewResponseController(w)
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	next := append([]byte(`{"padding":"`), chunk[12:]...) // the opening only once
	for left := size; left > 0; {
		n := min(left, int64(len(next)))
		if _, err := w.Write(next[:n]); err != nil {
			return
		}
		if flusher.Flush() != nil {
			return
		}
		left -= n
		next = chunk
	}
}

// countingWriter counts the body bytes written, keeps the status sent and
// notes a failed write.
type countingWriter struct {
	http.ResponseWriter
	written int64
	failed  bool
	status  int
}

func (c *countingWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.written += int64(n)
	if err != nil {
		c.failed = true
	}
	return n, err
}

// FlushError passes a flush on (http.ResponseController calls it); one the
// client does not take shows as a failed write.
func (c *countingWriter) FlushError() error {
	err := http.NewResponseController(c.ResponseWriter).Flush()
	if err != nil {
		c.failed = true
	}
	return err
}

// Unwrap lets http.ResponseController (and Hijack) reach the real writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// issue makes a token for audience that lives expiresIn seconds; one for
// an audience says so in its name, as Mirakl's JWTs carry it in their claims.
func (s *Server) issue(audience string, expiresIn int) string {
	var random [12]byte
	_, _ = rand.Read(random[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Issued++
	marker := ""
	if audience != "" {
		sum := sha256.Sum256([]byte(audience))
		marker = "aud" + hex.EncodeToString(sum[:4]) + "-"
	}
	token := fmt.Sprintf("%s%s%d-%s", s.tokenPrefix, marker, s.stats.Issued, hex.EncodeToString(random[:]))
	if s.audienceOf == nil {
		s.audienceOf = make(map[string]string)
	}
	s.audienceOf[token] = audience
	s.issued = append(s.issued, token)
	if s.issuedAt == nil {
		s.issuedAt = make(map[string]time.Time)
	}
	now := time.Now()
	s.issuedAt[token] = now
	s.tokens = append(s.tokens, IssuedToken{Token: token, IssuedAt: now, ExpiresIn: expiresIn,
		ExpiresAt: now.Add(time.Duration(expiresIn) * time.Second)})
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
	conn, _, err := http.NewResponseController(w).Hijack()
	if errors.Is(err, http.ErrNotSupported) {
		panic(http.ErrAbortHandler)
	}
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
