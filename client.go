package mirakl

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// The three ways a token request fails. The handlers map them to HTTP statuses;
// tests and callers match them with errors.Is.
var (
	// ErrCredentialsRefused: Mirakl answered with an OAuth error (wrong client id
	// or secret, revoked integration, ...). Retrying cannot help.
	ErrCredentialsRefused = errors.New("Mirakl refused the credentials")
	// ErrUnavailable: Mirakl could not be reached, timed out, or kept answering
	// 429/5xx until request_timeout ran out.
	ErrUnavailable = errors.New("Mirakl token endpoint unavailable")
	// ErrInvalidResponse: Mirakl (or something in between) answered, but not with
	// a usable token.
	ErrInvalidResponse = errors.New("Mirakl answered something that is not a usable token")
)

const (
	// maxResponseBytes bounds what we read of a token response; real ones are a few KiB.
	maxResponseBytes = 256 << 10
	// maxExcerptBytes bounds how much of a bad answer an error message quotes.
	maxExcerptBytes = 200
	// maxExpiresIn rejects lifetimes no OAuth server means (and that would overflow leases).
	maxExpiresIn = 366 * 24 * 60 * 60
)

// UpstreamError is every failure of a token request. It never holds the
// client secret or an access token.
type UpstreamError struct {
	Kind        error  // one of ErrCredentialsRefused, ErrUnavailable, ErrInvalidResponse
	Status      int    // HTTP status, 0 when there was no answer
	OAuthCode   string // RFC 6749 "error"
	Description string // RFC 6749 "error_description", or what was wrong
	Excerpt     string // start of a non-token body, truncated and redacted
	Cause       error  // transport error, if any
}

func (e *UpstreamError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
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
	if e.Excerpt != "" {
		fmt.Fprintf(&b, " (body starts: %q)", e.Excerpt)
	}
	return b.String()
}

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

// tokenClient exchanges one set of credentials for tokens. It knows nothing of Vault.
type tokenClient struct {
	credentials clientcredentials.Config
	timeout     time.Duration
	retrying    *retryablehttp.Client
}

// retryPolicy bounds retries; tests shorten the waits.
type retryPolicy struct {
	MaxRetries int
	WaitMin    time.Duration
	WaitMax    time.Duration
}

var defaultRetryPolicy = retryPolicy{MaxRetries: 4, WaitMin: 250 * time.Millisecond, WaitMax: 5 * time.Second}

func newTokenClient(cfg *miraklConfig, policy retryPolicy, logger hclog.Logger) (*tokenClient, error) {
	transport := cleanhttp.DefaultPooledTransport() // honours HTTPS_PROXY / NO_PROXY
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CACert != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM([]byte(cfg.CACert)) {
			return nil, errors.New("ca_cert holds no PEM certificate")
		}
		tlsConfig.RootCAs = pool
	}
	transport.TLSClientConfig = tlsConfig

	retrying := retryablehttp.NewClient()
	retrying.HTTPClient = &http.Client{
		Transport: &userAgentTransport{base: transport},
		// One hung attempt must not eat the whole request_timeout: leave room for retries.
		Timeout: cfg.RequestTimeout / 3,
	}
	retrying.Logger = logger
	retrying.RetryMax = policy.MaxRetries
	retrying.RetryWaitMin = policy.WaitMin
	retrying.RetryWaitMax = policy.WaitMax
	retrying.CheckRetry = checkRetry
	retrying.Backoff = jitteredBackoff
	retrying.ErrorHandler = keepLastResponse

	return &tokenClient{
		credentials: clientcredentials.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			TokenURL:     cfg.TokenURL,
			// Mirakl wants the credentials in the form body; auto-detection would
			// try a Basic header first and double the requests.
			AuthStyle: oauth2.AuthStyleInParams,
		},
		timeout:  cfg.RequestTimeout,
		retrying: retrying,
	}, nil
}

// close drops idle connections of a client that a new config replaced.
func (c *tokenClient) close() { c.retrying.HTTPClient.CloseIdleConnections() }

// fetch performs one exchange, retries included, bounded by request_timeout.
func (c *tokenClient) fetch(ctx context.Context) (*fetchedToken, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	// The recorder sits between x/oauth2 and the retrying transport, so it sees
	// the final answer: enough to quote a bad body and to enforce the size limit.
	answer := &answerRecorder{base: c.retrying.StandardClient().Transport}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: answer})

	tok, err := c.credentials.Token(ctx)
	if err != nil {
		return nil, c.classify(ctx, err, answer)
	}
	return c.validate(tok)
}

func (c *tokenClient) classify(ctx context.Context, err error, answer *answerRecorder) error {
	if answer.tooLarge {
		return &UpstreamError{Kind: ErrInvalidResponse, Status: answer.status,
			Description: fmt.Sprintf("response body larger than %d KiB", maxResponseBytes>>10)}
	}
	var tooLong *retryAfterTooLongError
	if errors.As(err, &tooLong) {
		return &UpstreamError{Kind: ErrUnavailable, Status: tooLong.status, Description: tooLong.Error()}
	}
	var retrieve *oauth2.RetrieveError
	if errors.As(err, &retrieve) {
		status := retrieve.Response.StatusCode
		switch {
		case status == http.StatusTooManyRequests || status >= 500:
			return &UpstreamError{Kind: ErrUnavailable, Status: status, OAuthCode: c.redact(retrieve.ErrorCode),
				Description: c.redact(retrieve.ErrorDescription), Excerpt: c.excerpt(retrieve.Body)}
		case retrieve.ErrorCode != "":
			return &UpstreamError{Kind: ErrCredentialsRefused, Status: status, OAuthCode: c.redact(retrieve.ErrorCode),
				Description: c.redact(retrieve.ErrorDescription)}
		default:
			return &UpstreamError{Kind: ErrInvalidResponse, Status: status, Excerpt: c.excerpt(retrieve.Body)}
		}
	}
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return &UpstreamError{Kind: ErrUnavailable, Status: answer.status,
			Description: fmt.Sprintf("no token within request_timeout (%s)", c.timeout)}
	}
	if answer.status != 0 {
		// An answer came but x/oauth2 could not read a token out of it.
		return &UpstreamError{Kind: ErrInvalidResponse, Status: answer.status,
			Description: c.redact(strings.TrimPrefix(err.Error(), "oauth2: ")), Excerpt: c.excerpt(answer.prefix.Bytes())}
	}
	upstream := &UpstreamError{Kind: ErrUnavailable, Cause: redactedError{c.redact(err.Error())}}
	var verification *tls.CertificateVerificationError // wraps x509.UnknownAuthorityError and the like
	if errors.As(err, &verification) {
		upstream.Description = "its TLS certificate is not trusted (behind a TLS-inspecting proxy, set ca_cert to the proxy's CA)"
	}
	return upstream
}

func (c *tokenClient) validate(tok *oauth2.Token) (*fetchedToken, error) {
	invalid := func(what string) error {
		return &UpstreamError{Kind: ErrInvalidResponse, Status: http.StatusOK, Description: what}
	}
	if !strings.EqualFold(tok.TokenType, "Bearer") {
		if tok.TokenType == "" {
			return nil, invalid("token_type is missing (want Bearer)")
		}
		return nil, invalid(fmt.Sprintf("token_type is %q (want Bearer)", truncate(tok.TokenType, 32)))
	}
	expiresIn, err := parseExpiresIn(tok.Extra("expires_in"))
	if err != nil {
		return nil, invalid(err.Error())
	}
	return &fetchedToken{
		AccessToken:   tok.AccessToken,
		TokenType:     "Bearer",
		ExpiresIn:     expiresIn,
		TargetApp:     extraString(tok, "target_app"),
		ResourceOwner: extraString(tok, "resource_owner"),
	}, nil
}

// parseExpiresIn accepts a positive number of seconds, as a JSON number or a
// numeric string. Anything else is refused: Vault would turn a zero lease TTL
// into its 768h default.
func parseExpiresIn(raw any) (time.Duration, error) {
	var seconds float64
	switch v := raw.(type) {
	case nil:
		return 0, errors.New("expires_in is missing")
	case float64:
		seconds = v
	case string:
		parsed, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, fmt.Errorf("expires_in %q is not a number", truncate(v, 32))
		}
		seconds = parsed
	default:
		return 0, fmt.Errorf("expires_in is a %T, not a number", raw)
	}
	switch {
	case seconds != seconds: // NaN
		return 0, errors.New("expires_in is not a number")
	case seconds < 1:
		return 0, fmt.Errorf("expires_in is %v (want a positive number of seconds)", seconds)
	case seconds > maxExpiresIn:
		return 0, fmt.Errorf("expires_in is %v seconds, more than a year", seconds)
	}
	return time.Duration(seconds) * time.Second, nil
}

func extraString(tok *oauth2.Token, key string) string {
	s, _ := tok.Extra(key).(string)
	return s
}

// excerpt quotes the start of a non-token body for an error message.
func (c *tokenClient) excerpt(body []byte) string {
	text := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, string(bytes.TrimSpace(body)))
	return truncate(c.redact(strings.Join(strings.Fields(text), " ")), maxExcerptBytes)
}

// redact removes the client secret and any access_token value from what
// came back, in case a proxy echoes the request or a broken answer (cut short,
// malformed) still carries a token that an error would otherwise quote.
func (c *tokenClient) redact(s string) string {
	if secret := c.credentials.ClientSecret; secret != "" {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return accessTokenValue.ReplaceAllString(s, "${1}[redacted]")
}

// accessTokenValue matches the value of an access_token in JSON or a form body.
var accessTokenValue = regexp.MustCompile(`(?i)(access_token"?\s*[:=]\s*"?)[^"&,}\s]+`)

type redactedError struct{ msg string }

func (e redactedError) Error() string { return e.msg }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// tokenFingerprint identifies a token in lease data and logs without revealing it.
func tokenFingerprint(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return hex.EncodeToString(sum[:8])
}

// --- transport ---

type userAgentTransport struct{ base http.RoundTripper }

func (t *userAgentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("User-Agent", "vault-plugin-mirakl/"+Version)
	return t.base.RoundTrip(req)
}

// answerRecorder notes the final answer's status and the first bytes of its
// body, and fails the read of a body larger than maxResponseBytes.
type answerRecorder struct {
	base     http.RoundTripper
	status   int
	prefix   bytes.Buffer
	tooLarge bool
}

func (a *answerRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	a.status = resp.StatusCode
	resp.Body = &limitedBody{ReadCloser: resp.Body, recorder: a, left: maxResponseBytes}
	return resp, nil
}

var errBodyTooLarge = errors.New("response body too large")

type limitedBody struct {
	io.ReadCloser
	recorder *answerRecorder
	left     int
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if room := maxExcerptBytes*4 - b.recorder.prefix.Len(); room > 0 {
		b.recorder.prefix.Write(p[:min(n, room)])
	}
	b.left -= n
	if b.left < 0 {
		b.recorder.tooLarge = true
		return n, errBodyTooLarge
	}
	return n, err
}

// retryAfterTooLongError: Mirakl asked us to come back later than request_timeout allows.
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
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
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
		// The default policy knows the other permanent errors (URL, scheme, redirects).
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	if !isTransientStatus(resp.StatusCode) {
		return false, nil
	}
	if wait, ok := retryAfter(resp, time.Now()); ok {
		if deadline, has := ctx.Deadline(); has {
			if left := time.Until(deadline); wait > left {
				return false, &retryAfterTooLongError{status: resp.StatusCode, wait: wait, left: left}
			}
		}
	}
	return true, nil
}

// jitteredBackoff honours Retry-After, else waits an exponentially growing,
// jittered time so that many plugins behind one proxy do not retry in step.
func jitteredBackoff(waitMin, waitMax time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil {
		if wait, ok := retryAfter(resp, time.Now()); ok {
			return wait
		}
	}
	wait := waitMin << min(attempt, 16)
	if wait <= 0 || wait > waitMax {
		wait = waitMax
	}
	// Full jitter over the upper half keeps a floor while spreading retries.
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

// keepLastResponse hands the last answer to x/oauth2 when retries run out, so
// the error names Mirakl's status and body rather than "giving up".
func keepLastResponse(resp *http.Response, err error, _ int) (*http.Response, error) {
	var tooLong *retryAfterTooLongError
	if errors.As(err, &tooLong) || resp == nil {
		if resp != nil {
			_ = resp.Body.Close()
		}
		return nil, err
	}
	return resp, nil
}
