package mirakl

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-retryablehttp"
)

// The three ways a token request fails. The handlers map them to HTTP statuses;
// tests and callers match them with errors.Is.
var (
	// ErrCredentialsRefused is Mirakl answering with an OAuth error (wrong client
	// id or secret, revoked integration, ...). Retrying cannot help.
	ErrCredentialsRefused = errors.New("Mirakl refused the credentials")
	// ErrUnavailable is Mirakl unreachable, timing out, or answering 429/5xx
	// until request_timeout ran out.
	ErrUnavailable = errors.New("Mirakl token endpoint unavailable")
	// ErrInvalidResponse is an answer (from Mirakl or something in between)
	// that is not a usable token.
	ErrInvalidResponse = errors.New("Mirakl answered something that is not a usable token")
)

const (
	// maxResponseBytes bounds what we read of an answer; real ones are a few KiB.
	maxResponseBytes = 256 << 10
	// maxResponseHeaderBytes bounds an answer's headers, and a proxy's answer
	// to CONNECT (Go reads both under this limit; its default is 10 MiB, in
	// the process that serves every mount). Real ones are under 8 KiB.
	maxResponseHeaderBytes = 64 << 10
	// minExpiresIn refuses tokens too short-lived to be shared: every read would
	// be a request to Mirakl.
	minExpiresIn = 3
	// maxExpiresIn refuses lifetimes no OAuth server means (and that would overflow leases).
	maxExpiresIn = 366 * 24 * 60 * 60
	// maxAccessTokenBytes bounds a token: Vault stores every read's response
	// in its lease, and Mirakl's JWTs are one or two KiB.
	maxAccessTokenBytes = 8 << 10
	// maxInfoFieldBytes bounds target_app and resource_owner.
	maxInfoFieldBytes = 256
	// maxDescriptionLen bounds the error_description shown to a config writer.
	maxDescriptionLen = 200
)

// What the engine says about a failed request comes from these closed sets
// (and numbers): never text that came from outside, which could carry the
// secret, a token or anything an endpoint chose to put there.
const (
	// No complete answer.
	failTimeout        = "no answer within request_timeout"
	failRefused        = "connection refused"
	failReset          = "connection reset"
	failClosed         = "connection closed before a complete answer"
	failDNS            = "host name not found"
	failProxy          = "proxy connection failed"
	failUntrustedTLS   = "TLS certificate not trusted (behind a TLS-inspecting proxy, set ca_cert to the proxy's CA)"
	failTLSHandshake   = "TLS handshake failed"
	failMalformed      = "malformed HTTP answer"
	failRetryAfterLong = "Mirakl asked to retry after longer than request_timeout allows"
	failNetwork        = "network error"

	// An answer that is not a token.
	failRedirect        = "redirects are not followed: set token_url to the endpoint itself"
	failTooLarge        = "response body larger than 256 KiB"
	failNoOAuthError    = "no OAuth error in the answer"
	failUnexpected      = "unexpected status"
	failNotJSON         = "the body is not a JSON token"
	failNoAccessToken   = "access_token is missing"
	failBadAccessToken  = "access_token is not an RFC 6750 token of at most 8 KiB"
	failNoTokenType     = "token_type is missing (want Bearer)"
	failNotBearer       = "token_type is not Bearer"
	failNoExpiresIn     = "expires_in is missing"
	failExpiresInNaN    = "expires_in is not a number"
	failBadInfoField    = "target_app or resource_owner is not printable text of at most 256 bytes"
	failUnregisteredErr = "unregistered"
)

// oauthInvalidClient is the one OAuth error that is about the client itself,
// whatever audience the request named (tokenCache.failed).
const oauthInvalidClient = "invalid_client"

// oauthErrorCodes are the error codes RFC 6749 (5.2, 4.1.2.1) registers: the
// only ones repeated as Mirakl sent them.
var oauthErrorCodes = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true,
	"unauthorized_client": true, "unsupported_grant_type": true, "invalid_scope": true,
	"access_denied": true, "unsupported_response_type": true, "server_error": true,
	"temporarily_unavailable": true,
}

// contentTypes are the media types repeated as sent; any other is "other".
var contentTypes = map[string]bool{
	"application/json": true, "text/html": true, "text/plain": true, "text/xml": true,
	"application/xml": true, "application/x-www-form-urlencoded": true, "application/problem+json": true,
}

// UpstreamError is every failure of a token request. Its message is built
// from closed sets only: the failure class, the HTTP status, the content type
// (a known one or "other"), the length, and a registered OAuth error code.
type UpstreamError struct {
	Kind        error         // one of ErrCredentialsRefused, ErrUnavailable, ErrInvalidResponse
	Failure     string        // one of the fail* classes; "" for a plain transient status or a refusal
	Status      int           // HTTP status, 0 when there was no answer
	ContentType string        // of the answer: a known media type, "other", or ""
	BodyBytes   int           // length of the answer's body
	OAuthCode   string        // a registered RFC 6749 "error", or "unregistered"
	RetryAfter  time.Duration // what Mirakl asked for with Retry-After, 0 if nothing
	Detail      string        // our own words about a bad expires_in; holds only a parsed number

	// description is the refusal's error_description, normalised and bounded.
	// It is free text from outside: only a caller who sent the secret in the
	// same request sees it (ForCredentialsWriter), never a log line.
	description string
}

func (e *UpstreamError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	sep := ": "
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
		if e.OAuthCode == "" && (e.ContentType != "" || e.BodyBytes > 0) {
			contentType := e.ContentType
			if contentType == "" {
				contentType = "no Content-Type"
			}
			fmt.Fprintf(&b, " (%s, %d bytes)", contentType, e.BodyBytes)
		}
		sep = ", "
	}
	if e.OAuthCode == failUnregisteredErr {
		b.WriteString(sep + "an unregistered OAuth error code")
	} else if e.OAuthCode != "" {
		fmt.Fprintf(&b, "%serror %q", sep, e.OAuthCode)
	}
	if e.Failure != "" {
		b.WriteString(sep + e.Failure)
		if e.Detail != "" {
			b.WriteString(" (" + e.Detail + ")")
		}
	}
	return b.String()
}

// ForCredentialsWriter is the message for a caller who sent the secret in
// this very request: the error, with Mirakl's error_description if it gave one.
func (e *UpstreamError) ForCredentialsWriter() string {
	if e.description == "" {
		return e.Error()
	}
	return e.Error() + ": " + e.description
}

// Is makes errors.Is(err, ErrUnavailable) and the like work.
func (e *UpstreamError) Is(target error) bool { return target == e.Kind }

// fetchedToken is what one successful exchange yields.
type fetchedToken struct {
	AccessToken   string
	TokenType     string
	ExpiresIn     time.Duration
	TargetApp     string
	ResourceOwner string
}

// tokenClient exchanges one set of credentials for tokens at one endpoint. It
// knows nothing of Vault.
type tokenClient struct {
	clientID     string
	clientSecret string
	tokenURL     string
	timeout      time.Duration
	now          func() time.Time
	// http retries within a request; probe makes one HTTP request, for
	// when the gate has closed (gate.admit): both share one transport.
	http, probe *retryablehttp.Client
}

// retryPolicy bounds retries within one request; tests shorten the waits.
type retryPolicy struct {
	MaxRetries int
	WaitMin    time.Duration
	WaitMax    time.Duration
}

var defaultRetryPolicy = retryPolicy{MaxRetries: 4, WaitMin: 250 * time.Millisecond, WaitMax: 5 * time.Second}

func newTokenClient(cfg *miraklConfig, policy retryPolicy, now func() time.Time, logger hclog.Logger) (*tokenClient, error) {
	transport := cleanhttp.DefaultPooledTransport() // honours HTTPS_PROXY / NO_PROXY
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CACert != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM([]byte(cfg.CACert)) {
			return nil, errors.New("ca_cert holds no PEM certificate")
		}
		transport.TLSClientConfig.RootCAs = pool
	}

	transport.MaxResponseHeaderBytes = maxResponseHeaderBytes

	c := &tokenClient{
		clientID:     cfg.ClientID,
		clientSecret: cfg.ClientSecret,
		tokenURL:     cfg.TokenURL,
		timeout:      cfg.RequestTimeout,
		now:          now,
	}
	// One hung attempt must not eat the whole request_timeout: leave room for retries.
	c.http = c.newRetryingClient(transport, policy.MaxRetries, cfg.RequestTimeout/3, policy, logger)
	c.probe = c.newRetryingClient(transport, 0, cfg.RequestTimeout, policy, logger)
	return c, nil
}

func (c *tokenClient) newRetryingClient(transport http.RoundTripper, retries int, attemptTimeout time.Duration, policy retryPolicy, logger hclog.Logger) *retryablehttp.Client {
	client := &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport: transport,
			// A redirect would carry the form, secret included, to wherever
			// the Location points: the answer is judged as it is instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Timeout:       attemptTimeout,
		},
		RetryMax:     retries,
		RetryWaitMin: policy.WaitMin,
		RetryWaitMax: policy.WaitMax,
		CheckRetry:   c.checkRetry,
		Backoff:      c.backoff,
		// The last answer, not "giving up after N attempts": it is what we classify.
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	if logger != nil {
		// retryablehttp logs each failed attempt with the transport's error,
		// which can quote what the endpoint sent: attempts are ours to describe.
		client.Logger = quietLogger{logger}
	}
	return client
}

// quietLogger passes on retryablehttp's debug lines (method and URL) and
// drops its error lines, which quote transport errors.
type quietLogger struct{ hclog.Logger }

func (l quietLogger) Error(string, ...any) {}

// close drops idle connections of a client that a new config replaced.
func (c *tokenClient) close() { c.http.HTTPClient.CloseIdleConnections() }

// fetch performs one exchange, retries included unless it is a probe,
// bounded by request_timeout: the form goes out, at most maxResponseBytes
// come back, and the answer is judged by its status in one place.
// audience, when not empty, is sent as a fourth form field; empty, the form
// is the three fields Mirakl documents.
func (c *tokenClient) fetch(ctx context.Context, probe bool, audience string) (*fetchedToken, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {c.clientID},
		"client_secret": {c.clientSecret},
	}
	if audience != "" {
		form.Set("audience", audience)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, c.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		// validateTokenURL accepted the URL: nothing of it is worth repeating.
		return nil, errors.New("building the token request failed")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "vault-plugin-mirakl/"+Version)

	client := c.http
	if probe {
		client = c.probe
	}
	resp, err := client.Do(req)
	if resp != nil {
		defer func() { _ = resp.Body.Close() }()
	}
	if err != nil {
		return nil, c.transportFailure(ctx, resp, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, c.transportFailure(ctx, resp, err)
	}
	return c.judge(resp, body)
}

// judge turns a complete answer into a token or an UpstreamError.
func (c *tokenClient) judge(resp *http.Response, body []byte) (*fetchedToken, error) {
	failure := func(kind error, class string) *UpstreamError {
		return &UpstreamError{Kind: kind, Failure: class, Status: resp.StatusCode, ContentType: mediaType(resp), BodyBytes: len(body)}
	}
	if len(body) > maxResponseBytes {
		return nil, failure(ErrInvalidResponse, failTooLarge)
	}

	status := resp.StatusCode
	if status >= 300 && status < 400 {
		return nil, failure(ErrInvalidResponse, failRedirect)
	}
	if isTransientStatus(status) {
		upstream := failure(ErrUnavailable, "")
		upstream.RetryAfter, _ = retryAfter(resp, c.now())
		return nil, upstream
	}
	if status >= 400 && status < 500 {
		var refusal struct {
			Code        string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &refusal) != nil || refusal.Code == "" {
			return nil, failure(ErrInvalidResponse, failNoOAuthError)
		}
		upstream := failure(ErrCredentialsRefused, "")
		upstream.OAuthCode = failUnregisteredErr
		if oauthErrorCodes[refusal.Code] {
			upstream.OAuthCode = refusal.Code
		}
		upstream.description = c.normaliseDescription(refusal.Description)
		return nil, upstream
	}
	if status < 200 || status > 299 {
		return nil, failure(ErrInvalidResponse, failUnexpected)
	}

	var answer struct {
		AccessToken   string          `json:"access_token"`
		TokenType     string          `json:"token_type"`
		ExpiresIn     json.RawMessage `json:"expires_in"`
		TargetApp     string          `json:"target_app"`
		ResourceOwner string          `json:"resource_owner"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, failure(ErrInvalidResponse, failNotJSON)
	}
	tok := &fetchedToken{
		AccessToken:   answer.AccessToken,
		TokenType:     answer.TokenType,
		TargetApp:     answer.TargetApp,
		ResourceOwner: answer.ResourceOwner,
	}
	if class := tok.problem(); class != "" {
		return nil, failure(ErrInvalidResponse, class)
	}
	expiresIn, class, detail := parseExpiresIn(answer.ExpiresIn)
	if class != "" {
		upstream := failure(ErrInvalidResponse, class)
		upstream.Detail = detail
		return nil, upstream
	}
	tok.TokenType, tok.ExpiresIn = "Bearer", expiresIn
	return tok, nil
}

// problem is what makes a token unusable, as a fail* class ("" if nothing),
// but its lifetime: the one check of what a token holds, for an answer from
// Mirakl and for an entry restored from storage alike.
func (f *fetchedToken) problem() string {
	switch {
	case f.AccessToken == "":
		return failNoAccessToken
	case !isAccessToken(f.AccessToken):
		return failBadAccessToken
	case f.TokenType == "":
		return failNoTokenType
	case !strings.EqualFold(f.TokenType, "Bearer"):
		return failNotBearer
	case !isInfoField(f.TargetApp) || !isInfoField(f.ResourceOwner):
		return failBadInfoField
	}
	return ""
}

// usableLifetime: the range of lifetimes parseExpiresIn accepts.
func usableLifetime(d time.Duration) bool {
	return d >= minExpiresIn*time.Second && d <= maxExpiresIn*time.Second
}

// isAccessToken: RFC 6750's b64token (what may follow "Bearer " in a
// header), so that no app that puts it in a header can be made to inject one.
func isAccessToken(token string) bool {
	if len(token) > maxAccessTokenBytes {
		return false
	}
	body := strings.TrimRight(token, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		switch ch := body[i]; {
		case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9':
		case ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '+' || ch == '/':
		default:
			return false
		}
	}
	return true
}

// isInfoField: printable UTF-8 (no control or format characters), bounded.
func isInfoField(s string) bool {
	if len(s) > maxInfoFieldBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// transportFailure classifies a request that got no complete answer. The
// transport's own error is never repeated: Go quotes a malformed answer in it.
func (c *tokenClient) transportFailure(ctx context.Context, resp *http.Response, err error) error {
	var tooLong *retryAfterTooLongError
	if errors.As(err, &tooLong) {
		return &UpstreamError{Kind: ErrUnavailable, Failure: failRetryAfterLong, Status: tooLong.status, RetryAfter: tooLong.wait}
	}
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// The mount's state was replaced or went away: not Mirakl's doing.
		return errRequestCancelled
	}
	return &UpstreamError{Kind: ErrUnavailable, Status: status, Failure: classifyTransport(ctx, err)}
}

// errRequestCancelled: the config the request was for was replaced or deleted.
var errRequestCancelled = errors.New("token request cancelled: the configuration it was for was replaced")

func classifyTransport(ctx context.Context, err error) string {
	var verification *tls.CertificateVerificationError // wraps x509.UnknownAuthorityError and the like
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var recordErr tls.RecordHeaderError
	var netErr net.Error
	switch {
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return failTimeout
	case errors.As(err, &verification):
		return failUntrustedTLS
	case errors.As(err, &recordErr) || (errors.As(err, &opErr) && opErr.Op == "remote error"):
		return failTLSHandshake
	case errors.As(err, &dnsErr):
		return failDNS
	case errors.As(err, &opErr) && opErr.Op == "proxyconnect":
		return failProxy
	case errors.Is(err, syscall.ECONNREFUSED):
		return failRefused
	case errors.Is(err, syscall.ECONNRESET):
		return failReset
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return failClosed
	case strings.Contains(err.Error(), "malformed") || strings.Contains(err.Error(), "HTTP response to HTTPS client"):
		// net/http reports these as plain strings; matched here, never repeated.
		return failMalformed
	default:
		return failNetwork
	}
}

// parseExpiresIn accepts a number of seconds, as a JSON number or a numeric
// string, between minExpiresIn and maxExpiresIn. Vault would turn a zero lease
// TTL into its 768h default; a token of a second or two cannot be shared. A
// failure is a class, with the parsed number as its detail.
func parseExpiresIn(raw json.RawMessage) (expiresIn time.Duration, class, detail string) {
	text := strings.TrimSpace(string(raw))
	if text == "" || text == "null" {
		return 0, failNoExpiresIn, ""
	}
	if unquoted, err := strconv.Unquote(text); err == nil {
		text = strings.TrimSpace(unquoted)
	}
	seconds, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(seconds) {
		return 0, failExpiresInNaN, ""
	}
	if seconds < minExpiresIn {
		return 0, "expires_in is too short", fmt.Sprintf("%v; want at least %d seconds", seconds, minExpiresIn)
	}
	if seconds > maxExpiresIn {
		return 0, "expires_in is more than a year", fmt.Sprintf("%v seconds", seconds)
	}
	return time.Duration(seconds) * time.Second, "", ""
}

// normaliseDescription makes an error_description fit to show the writer
// who sent the secret: the secret removed first, from the whole text as it
// came (at most maxResponseBytes), then printable ASCII with runs of anything
// else as one space, the secret removed again as normalising would spell it,
// and only then cut short. Redaction comes before anything that could split
// or join the secret. Linear time.
func (c *tokenClient) normaliseDescription(text string) string {
	const redacted = "[redacted]"
	if c.clientSecret != "" {
		text = strings.ReplaceAll(text, c.clientSecret, redacted)
	}
	field := normaliseText(text)
	if secret := normaliseText(c.clientSecret); secret != "" {
		field = strings.ReplaceAll(field, secret, redacted)
	}
	if len(field) > maxDescriptionLen {
		field = field[:maxDescriptionLen] + "..."
	}
	return field
}

// normaliseText keeps printable ASCII and turns each run of anything else,
// spaces included, into one space, trimmed at both ends.
func normaliseText(text string) string {
	var b strings.Builder
	space := false
	for _, r := range text {
		if r < 0x20 || r > 0x7e || r == ' ' {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// mediaType is the answer's media type if it is one we know, else "other".
func mediaType(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	media, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case err != nil:
		return ""
	case contentTypes[media]:
		return media
	default:
		return "other"
	}
}

// tokenFingerprint identifies a token in lease data, logs and status without revealing it.
func tokenFingerprint(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return hex.EncodeToString(sum[:8])
}

// --- retries ---

// retryAfterTooLongError is Mirakl asking us to come back later than request_timeout allows.
type retryAfterTooLongError struct {
	status int
	wait   time.Duration
}

func (e *retryAfterTooLongError) Error() string { return failRetryAfterLong }

func isTransientStatus(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

type retryHooksKey struct{}

// retryHooks connect a request's in-request retries to the mount's gate
// (tokenCache.retryHooks): stop ends them, since another request of the
// mount has already failed and the gate spaces the attempts; failedAttempt
// is told of each attempt that is retried.
type retryHooks struct {
	stop          func() bool
	failedAttempt func(error)
}

func withRetryHooks(ctx context.Context, hooks retryHooks) context.Context {
	return context.WithValue(ctx, retryHooksKey{}, hooks)
}

// checkRetry retries transport failures and 429/5xx, never a refusal, and gives
// up at once when Retry-After points past the request's deadline.
func (c *tokenClient) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	hooks, _ := ctx.Value(retryHooksKey{}).(retryHooks)
	if hooks.stop != nil && hooks.stop() {
		return false, nil // the last answer is the request's
	}
	retry, retryErr := c.retryable(ctx, resp, err)
	if retry && hooks.failedAttempt != nil {
		hooks.failedAttempt(c.attemptFailure(ctx, resp, err))
	}
	return retry, retryErr
}

// attemptFailure is what a retried attempt says, as far as can be known
// before its body is read: the class of a transport failure, or the status.
func (c *tokenClient) attemptFailure(ctx context.Context, resp *http.Response, err error) error {
	if err != nil {
		return c.transportFailure(ctx, resp, err)
	}
	return &UpstreamError{Kind: ErrUnavailable, Status: resp.StatusCode}
}

// retryable: the failed attempt is worth another within the request.
func (c *tokenClient) retryable(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if err != nil {
		// A TLS handshake refused by either side (a certificate we do not
		// trust, or the server's alert: protocol version, handshake failure)
		// fails the same way next time. crypto/tls reports a peer's alert as a
		// net.OpError whose Op is "remote error".
		var verification *tls.CertificateVerificationError
		var opErr *net.OpError
		if errors.As(err, &verification) || (errors.As(err, &opErr) && opErr.Op == "remote error") {
			return false, nil
		}
		// The default policy knows the other permanent errors (URL, scheme).
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	if !isTransientStatus(resp.StatusCode) {
		return false, nil
	}
	if wait, ok := retryAfter(resp, c.now()); ok {
		if deadline, has := ctx.Deadline(); has {
			if left := time.Until(deadline); wait > left {
				return false, &retryAfterTooLongError{status: resp.StatusCode, wait: wait}
			}
		}
	}
	return true, nil
}

// backoff honours Retry-After, else waits an exponentially growing, jittered
// time so that many plugins behind one proxy do not retry in step.
func (c *tokenClient) backoff(waitMin, waitMax time.Duration, attempt int, resp *http.Response) time.Duration {
	if wait, ok := retryAfter(resp, c.now()); ok {
		return wait
	}
	return jittered(waitMin, waitMax, attempt)
}

// jittered is waitMin doubled per attempt up to waitMax, spread over its upper
// half: a floor, and no two clients in step.
func jittered(waitMin, waitMax time.Duration, attempt int) time.Duration {
	wait := waitMin << min(attempt, 16)
	if wait <= 0 || wait > waitMax {
		wait = waitMax
	}
	return wait/2 + rand.N(wait/2+1) //nolint:gosec // G404: jitter only spreads retries out; nothing depends on it being unpredictable.
}

// retryAfter reads a Retry-After header in seconds or as an HTTP date.
func retryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp == nil {
		return 0, false
	}
	value := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if value == "" {
		return 0, false
	}
	if seconds, err := strconv.ParseInt(value, 10, 64); err == nil && seconds >= 0 {
		// Beyond a day, a Duration could overflow; the gate caps it far lower.
		return time.Duration(min(seconds, 24*60*60)) * time.Second, true
	}
	if at, err := http.ParseTime(value); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}
