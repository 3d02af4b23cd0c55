package mirakl

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

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
	// minExpiresIn refuses tokens too short-lived to be shared: every read would
	// be a request to Mirakl.
	minExpiresIn = 3
	// maxExpiresIn refuses lifetimes no OAuth server means (and that would overflow leases).
	maxExpiresIn = 366 * 24 * 60 * 60
	// maxOAuthFieldLen bounds the OAuth error and error_description we repeat.
	maxOAuthFieldLen = 200
)

// UpstreamError is every failure of a token request. It describes Mirakl's
// answer by status, content type and length, and repeats only the RFC 6749
// error fields of a refusal, scrubbed of the client secret: it never holds the
// secret, an access token or any other part of a body.
type UpstreamError struct {
	Kind        error         // one of ErrCredentialsRefused, ErrUnavailable, ErrInvalidResponse
	Status      int           // HTTP status, 0 when there was no answer
	ContentType string        // of the answer, when there was one
	BodyBytes   int           // length of the answer's body
	OAuthCode   string        // RFC 6749 "error"
	Description string        // RFC 6749 "error_description", or what was wrong
	RetryAfter  time.Duration // what Mirakl asked for with Retry-After, 0 if nothing
	Cause       error         // transport error, if any
}

func (e *UpstreamError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
		if e.OAuthCode == "" && (e.ContentType != "" || e.BodyBytes > 0) {
			contentType := e.ContentType
			if contentType == "" {
				contentType = "no Content-Type"
			}
			fmt.Fprintf(&b, " (%s, %d bytes)", contentType, e.BodyBytes)
		}
	}
	if e.OAuthCode != "" {
		fmt.Fprintf(&b, ", error %q", e.OAuthCode)
	}
	if e.Description != "" {
		sep := ": "
		if e.Status != 0 {
			sep = ", "
		}
		b.WriteString(sep + e.Description)
	}
	if e.Cause != nil {
		b.WriteString(": " + e.Cause.Error())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrUnavailable) and the like work.
func (e *UpstreamError) Is(target error) bool { return target == e.Kind }

func (e *UpstreamError) Unwrap() error { return e.Cause }

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
	http         *retryablehttp.Client
	// secretPattern finds the secret in what Mirakl sends back, for scrub.
	secretPattern *regexp.Regexp
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

	c := &tokenClient{
		clientID:      cfg.ClientID,
		clientSecret:  cfg.ClientSecret,
		tokenURL:      cfg.TokenURL,
		timeout:       cfg.RequestTimeout,
		now:           now,
		secretPattern: secretPattern(cfg.ClientSecret),
	}
	c.http = &retryablehttp.Client{
		HTTPClient: &http.Client{
			Transport: transport,
			// A redirect would carry the form, secret included, to wherever
			// the Location points: the answer is judged as it is instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			// One hung attempt must not eat the whole request_timeout: leave room for retries.
			Timeout: cfg.RequestTimeout / 3,
		},
		Logger:       logger,
		RetryMax:     policy.MaxRetries,
		RetryWaitMin: policy.WaitMin,
		RetryWaitMax: policy.WaitMax,
		CheckRetry:   c.checkRetry,
		Backoff:      c.backoff,
		// The last answer, not "giving up after N attempts": it is what we classify.
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	return c, nil
}

// close drops idle connections of a client that a new config replaced.
func (c *tokenClient) close() { c.http.HTTPClient.CloseIdleConnections() }

// fetch performs one exchange, retries included, bounded by request_timeout:
// the form goes out, at most maxResponseBytes come back, and the answer is
// judged by its status in one place.
func (c *tokenClient) fetch(ctx context.Context) (*fetchedToken, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {c.clientID},
		"client_secret": {c.clientSecret},
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, c.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("building the token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "vault-plugin-mirakl/"+Version)

	resp, err := c.http.Do(req)
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
	failure := func(kind error, description string) *UpstreamError {
		return &UpstreamError{Kind: kind, Status: resp.StatusCode, ContentType: mediaType(resp),
			BodyBytes: len(body), Description: description}
	}
	if len(body) > maxResponseBytes {
		return nil, failure(ErrInvalidResponse, fmt.Sprintf("response body larger than %d KiB", maxResponseBytes>>10))
	}

	status := resp.StatusCode
	if status >= 300 && status < 400 {
		return nil, failure(ErrInvalidResponse, "redirects are not followed: set token_url to the endpoint itself")
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
			return nil, failure(ErrInvalidResponse, "no OAuth error in the answer")
		}
		upstream := failure(ErrCredentialsRefused, c.scrub(refusal.Description))
		upstream.OAuthCode = c.scrub(refusal.Code)
		return nil, upstream
	}
	if status < 200 || status > 299 {
		return nil, failure(ErrInvalidResponse, "")
	}

	var answer struct {
		AccessToken   string          `json:"access_token"`
		TokenType     string          `json:"token_type"`
		ExpiresIn     json.RawMessage `json:"expires_in"`
		TargetApp     string          `json:"target_app"`
		ResourceOwner string          `json:"resource_owner"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, failure(ErrInvalidResponse, "the body is not a JSON token")
	}
	if answer.AccessToken == "" {
		return nil, failure(ErrInvalidResponse, "access_token is missing")
	}
	if answer.TokenType == "" {
		return nil, failure(ErrInvalidResponse, "token_type is missing (want Bearer)")
	}
	if !strings.EqualFold(answer.TokenType, "Bearer") {
		return nil, failure(ErrInvalidResponse, "token_type is not Bearer")
	}
	expiresIn, err := parseExpiresIn(answer.ExpiresIn)
	if err != nil {
		return nil, failure(ErrInvalidResponse, err.Error())
	}
	return &fetchedToken{
		AccessToken:   answer.AccessToken,
		TokenType:     "Bearer",
		ExpiresIn:     expiresIn,
		TargetApp:     answer.TargetApp,
		ResourceOwner: answer.ResourceOwner,
	}, nil
}

// transportFailure describes a request that got no complete answer.
func (c *tokenClient) transportFailure(ctx context.Context, resp *http.Response, err error) error {
	var tooLong *retryAfterTooLongError
	if errors.As(err, &tooLong) {
		return &UpstreamError{Kind: ErrUnavailable, Status: tooLong.status, Description: tooLong.Error(), RetryAfter: tooLong.wait}
	}
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// The mount went away (or a test ended): not Mirakl's doing.
		return fmt.Errorf("token request cancelled: %w", ctx.Err())
	}
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return &UpstreamError{Kind: ErrUnavailable, Status: status,
			Description: fmt.Sprintf("no token within request_timeout (%s)", c.timeout)}
	}
	upstream := &UpstreamError{Kind: ErrUnavailable, Status: status, Cause: err}
	var verification *tls.CertificateVerificationError // wraps x509.UnknownAuthorityError and the like
	if errors.As(err, &verification) {
		upstream.Description = "its TLS certificate is not trusted (behind a TLS-inspecting proxy, set ca_cert to the proxy's CA)"
	}
	return upstream
}

// parseExpiresIn accepts a number of seconds, as a JSON number or a numeric
// string, between minExpiresIn and maxExpiresIn. Vault would turn a zero lease
// TTL into its 768h default; a token of a second or two cannot be shared.
func parseExpiresIn(raw json.RawMessage) (time.Duration, error) {
	text := strings.TrimSpace(string(raw))
	if text == "" || text == "null" {
		return 0, errors.New("expires_in is missing")
	}
	if unquoted, err := strconv.Unquote(text); err == nil {
		text = strings.TrimSpace(unquoted)
	}
	seconds, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(seconds) {
		return 0, errors.New("expires_in is not a number")
	}
	if seconds < minExpiresIn {
		return 0, fmt.Errorf("expires_in is %v (want at least %d seconds)", seconds, minExpiresIn)
	}
	if seconds > maxExpiresIn {
		return 0, fmt.Errorf("expires_in is %v seconds, more than a year", seconds)
	}
	return time.Duration(seconds) * time.Second, nil
}

// scrub makes an OAuth error field safe to repeat: the client secret removed in
// every encoding an echoing server could use, printable ASCII only (RFC 6749
// limits these fields to it), and short.
func (c *tokenClient) scrub(field string) string {
	if c.secretPattern != nil {
		field = c.secretPattern.ReplaceAllString(field, "[redacted]")
	}
	field = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, field)
	if len(field) > maxOAuthFieldLen {
		field = field[:maxOAuthFieldLen] + "..."
	}
	return field
}

// secretPattern matches the secret as a server that echoes what it received
// may send it back: raw, form- or percent-encoded (either case of hex digits),
// JSON- or HTML-escaped, base64. Longer spellings come first so that none is left
// half-replaced.
func secretPattern(secret string) *regexp.Regexp {
	if secret == "" {
		return nil
	}
	jsonEscaped, _ := json.Marshal(secret)
	spellings := []string{
		secret,
		url.QueryEscape(secret),
		url.PathEscape(secret),
		strings.Trim(string(jsonEscaped), `"`),
		html.EscapeString(secret),
		base64.StdEncoding.EncodeToString([]byte(secret)),
		base64.RawURLEncoding.EncodeToString([]byte(secret)),
	}
	slices.SortFunc(spellings, func(a, b string) int { return len(b) - len(a) })
	spellings = slices.Compact(spellings)
	for i, s := range spellings {
		spellings[i] = regexp.QuoteMeta(s)
	}
	return regexp.MustCompile("(?i)" + strings.Join(spellings, "|"))
}

func mediaType(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	media, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return media
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
	left   time.Duration
}

func (e *retryAfterTooLongError) Error() string {
	return fmt.Sprintf("Mirakl asked to retry after %s, more than the %s left of request_timeout",
		e.wait.Round(time.Second), e.left.Round(time.Millisecond))
}

func isTransientStatus(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// checkRetry retries transport failures and 429/5xx, never a refusal, and gives
// up at once when Retry-After points past the request's deadline.
func (c *tokenClient) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
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
				return false, &retryAfterTooLongError{status: resp.StatusCode, wait: wait, left: left}
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
	if seconds, err := strconv.Atoi(value); err == nil && seconds >= 0 {
		return time.Duration(seconds) * time.Second, true
	}
	if at, err := http.ParseTime(value); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}
