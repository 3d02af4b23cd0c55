package mirakl

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// pathToken is mirakl/token, the default token; pathRoleToken is
// mirakl/token/:name, a role's. Both read through pathTokenRead.
func pathToken(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "token",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixMirakl,
		},
		Fields: map[string]*framework.FieldSchema{
			fieldMinTTL: readerMinTTLField(),
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: tokenReadOperation(b, "Get a Mirakl Bearer token under a lease that ends when the token expires.", "token"),
		},
		HelpSynopsis:    pathTokenHelpSynopsis,
		HelpDescription: pathTokenHelpDescription,
	}
}

func pathRoleToken(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "token/" + framework.GenericNameRegex(fieldName),
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixMirakl,
		},
		Fields: map[string]*framework.FieldSchema{
			fieldName: {
				Type:        framework.TypeString,
				Description: "Name of the role whose token to get.",
			},
			fieldMinTTL: readerMinTTLField(),
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: tokenReadOperation(b, "Get a role's Mirakl Bearer token, for its audience, under a lease that ends when the token expires.", "role-token"),
		},
		HelpSynopsis:    pathRoleTokenHelpSynopsis,
		HelpDescription: pathRoleTokenHelpDescription,
	}
}

func tokenReadOperation(b *backend, summary, suffix string) *framework.PathOperation {
	return &framework.PathOperation{
		Callback: b.pathTokenRead,
		Summary:  summary,
		// The active node's cache serves the whole cluster.
		ForwardPerformanceStandby:   true,
		ForwardPerformanceSecondary: true,
		DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "generate", OperationSuffix: suffix},
	}
}

func readerMinTTLField() *framework.FieldSchema {
	return &framework.FieldSchema{
		Type:        framework.TypeDurationSecond,
		Description: "Least life the returned token should have left (e.g. 30m; honoured up to half the token's lifetime); defaults to the role's min_ttl, else the config's. Given on the read and more than the cached token has, the read waits at most 3s for a new one, then gets the cached token with a warning.",
		Query:       true,
	}
}

func (b *backend) pathTokenRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	var readerMinTTL *time.Duration
	if v, ok := d.GetOk(fieldMinTTL); ok {
		// The framework already refused negative and unparsable values.
		ttl := time.Duration(v.(int)) * time.Second
		readerMinTTL = &ttl
	}

	role := roleName(d)
	var fetched bool
	tok, src, warnings, err := b.tokenFor(ctx, req.Storage, role, readerMinTTL, &fetched)
	b.metrics.tokenRead(src, role, fetched, err)
	switch {
	case errors.Is(err, errNotConfigured):
		return logical.ErrorResponse("this mount is not configured yet: run vault write %sconfig client_id=... client_secret=...", req.MountPoint), nil
	case errors.Is(err, errRoleNotFound):
		return logical.ErrorResponse("there is no role %q: vault list %sroles shows the roles", role, req.MountPoint), nil
	case err != nil:
		var upstream *UpstreamError
		if errors.As(err, &upstream) {
			return nil, logical.CodedError(http.StatusBadGateway, err.Error())
		}
		return nil, fmt.Errorf("getting a token: %w", err)
	}

	// Leases are counted in whole seconds: round down, so that no lease
	// outlives its token (servable leaves at least two seconds).
	left := max(tok.remaining(b.now()).Truncate(time.Second), time.Second)
	data := map[string]any{
		"access_token": tok.AccessToken,
		"token_type":   tok.TokenType,
		"expires_in":   int64(left.Seconds()),
		"expires_at":   tok.expiresAtText,
	}
	if tok.TargetApp != "" {
		data["target_app"] = tok.TargetApp
	}
	if tok.ResourceOwner != "" {
		data["resource_owner"] = tok.ResourceOwner
	}
	resp := b.Secret(secretTokenType).Response(data, leaseData(src, tok))
	// Renewable up to the token's expiry and no further (secretTokenRenew).
	resp.Secret.TTL = left
	resp.Secret.MaxTTL = left
	resp.Secret.Renewable = true
	for _, w := range warnings {
		resp.AddWarning(w)
	}
	return resp, nil
}

var errNotConfigured = errors.New("not configured")

// errNoLiveToken: every token this read could have had expired before it
// could be handed out (a token that lives seconds, and storage that takes
// longer to keep it).
var errNoLiveToken = errors.New("no token with life left could be handed out: every one expired before the read could return it")

// roleName is the role a token read names: defaultRole for mirakl/token.
func roleName(d *framework.FieldData) string {
	if v, ok := d.GetOk(fieldName); ok {
		return v.(string)
	}
	return defaultRole
}

// tokenFor returns role's token (defaultRole: mirakl/token) for a reader that
// wants readerMinTTL of life (nil: the role's or config's min_ttl), with the
// source that served it and warnings for the reader; fetched is set when the
// reader waited for a new token from Mirakl (for the read counts).
//
// It is the one hand-out: whatever a read waited for (the config or the role
// to load, a request to Mirakl, storage), the token it returns is checked
// here, at the moment it leaves, to come from the configured credentials and
// the role as it is now, and to have life left.
func (b *backend) tokenFor(ctx context.Context, s logical.Storage, role string, readerMinTTL *time.Duration, fetched *bool) (*cachedToken, *tokenSource, []string, error) {
	var src *tokenSource
	for range 3 {
		mount, err := b.currentMount(ctx, s)
		if err != nil {
			return nil, src, nil, err
		}
		if mount == nil {
			return nil, src, nil, errNotConfigured
		}
		src, err = b.source(s, mount, role)
		if err != nil {
			return nil, nil, nil, err
		}
		tok, warnings, err := b.tokenFrom(ctx, mount, src, readerMinTTL, fetched)
		switch {
		case b.loadedMount() != mount || mount.sourceFor(role) != src:
			// The config or the role changed while this read waited (or
			// the role went idle): the token it got belongs to credentials
			// or an audience that are no longer configured.
		case err != nil:
			return nil, src, nil, err
		case tok.servable(b.now()):
			return tok, src, warnings, nil
		}
	}
	if b.loadedMount() == nil {
		return nil, src, nil, errNotConfigured
	}
	return nil, src, nil, errNoLiveToken
}

// fresherWait bounds how long a reader that asked on its own read for more
// life than the cached token has waits for the request started for it:
// beyond that it gets the cached token, with a warning.
const fresherWait = 3 * time.Second

// tokenFrom serves the mount's cached token whenever it is still valid, and
// refreshes it in the background ahead of time. No reader waits on Mirakl
// while a valid token is cached, with one exception: a reader that asked on
// its own read (min_ttl) for more life than the cached token has waits, for
// at most fresherWait, for a request started for it. The config's min_ttl
// shapes refresh ahead and warnings, never a wait. Every request goes through
// the mount's gate (tokenCache.request). fetched is set when the read got a
// token that a request brought for it.
func (b *backend) tokenFrom(ctx context.Context, mount *mountState, src *tokenSource, readerMinTTL *time.Duration, fetched *bool) (*cachedToken, []string, error) {
	want := src.minTTL
	if readerMinTTL != nil {
		want = *readerMinTTL
	}
	now := b.now()
	cached := src.cache.current()
	if cached == nil || !cached.servable(now) {
		tok, err := b.fetch(ctx, mount, src, cached, forReader, 0)
		if err != nil {
			return nil, nil, err
		}
		tok.markRead()
		*fetched = true
		return tok, minTTLWarnings(src, tok, b.now(), want), nil
	}
	cached.markRead()

	left := cached.remaining(now)
	if left < cached.reusableFor(want) && readerMinTTL != nil {
		return b.fresherFor(ctx, mount, src, cached, want, fetched)
	}
	if left < refreshPoint(src, cached) {
		b.refreshInBackground(mount, src)
	}
	return cached, minTTLWarnings(src, cached, now, want), nil
}

// fresherFor serves a reader that asked on its own read for more life (want)
// than the valid cached token has: it waits at most fresherWait for a request
// started for it (which is also the refresh ahead), and otherwise gets the
// cached token with a warning that says why.
func (b *backend) fresherFor(ctx context.Context, mount *mountState, src *tokenSource, cached *cachedToken, want time.Duration, fetched *bool) (*cachedToken, []string, error) {
	tok, err := b.fetch(ctx, mount, src, cached, forFresher, b.fresherWait)
	if err == nil && tok.fingerprint != cached.fingerprint {
		tok.markRead()
		*fetched = true
		return tok, minTTLWarnings(src, tok, b.now(), want), nil
	}
	var why string
	switch {
	case err == nil || errors.Is(err, errNothingNew):
		why = "Mirakl answered with this same token"
	case errors.Is(err, errStillWaiting):
		why = "a new one is on its way"
	default:
		why = fmt.Sprintf("a new one could not be had (%v)", err)
	}
	return cached, servingCached(cached.remaining(b.now()), want, why), nil
}

// servingCached is the warning of a read served the cached token with less
// life than it wanted, and why no newer one came.
func servingCached(left, want time.Duration, why string) []string {
	return []string{fmt.Sprintf("serving the cached token, which has %s left, less than the min_ttl of %s: %s", left.Truncate(time.Second), want, why)}
}

// refreshAheadMargin starts background refreshes this much before a token
// falls below min_ttl: Vault calls the periodic refresh about once a minute.
const refreshAheadMargin = 2 * time.Minute

// refreshPoint is the remaining life below which a token's successor is
// fetched in the background.
func refreshPoint(src *tokenSource, tok *cachedToken) time.Duration {
	return tok.reusableFor(src.minTTL + refreshAheadMargin)
}

// refreshAhead is part of the backend's periodic function (about once a
// minute, on the active node): it fetches the successor of each token that
// readers use before it falls below min_ttl. A token nobody read is left to
// expire, so an idle mount or role makes no requests; a role with nothing
// left to keep is forgotten, so that this work follows the roles in use.
func (b *backend) refreshAhead(context.Context, *logical.Request) error {
	if b.replicaOrStandby() {
		return nil // the primary's active node serves this mount's tokens
	}
	if mount := b.loadedMount(); mount != nil {
		now := b.now()
		mount.forgetIdleRoles(now)
		mount.eachSource(func(src *tokenSource) {
			if tok := src.cache.current(); tok != nil && tok.read.Load() && tok.servable(now) {
				b.refreshIfDue(src, tok.fingerprint)
			}
		})
	}
	return nil
}

// refreshIfDue starts the background refresh of src's cached token if it is
// the one with this fingerprint and has passed its refresh point.
func (b *backend) refreshIfDue(src *tokenSource, fingerprint string) {
	mount := b.loadedMount()
	if mount == nil || mount.sourceFor(src.role) != src {
		return
	}
	if tok := src.cache.current(); tok != nil && tok.fingerprint == fingerprint && tok.remaining(b.now()) < refreshPoint(src, tok) {
		b.refreshInBackground(mount, src)
	}
}

// refreshInBackground starts a request for src's next token that no reader
// waits for, unless one is in flight or the gate holds requests back.
func (b *backend) refreshInBackground(mount *mountState, src *tokenSource) {
	_, _, _ = src.cache.request(b.now(), forBackground, b.sender(mount, src, src.cache.current()))
}

// errStillWaiting: a reader that may wait only a bounded time stopped waiting.
var errStillWaiting = errors.New("still waiting for Mirakl")

// fetch gets a new token for purpose, in the mount's one shared request. The
// request runs on the mount state's context, not the caller's: a caller that
// gives up stops waiting, and the others still get the token. With a bound
// (not 0), the caller waits only for a request started for it, and at most
// that long.
func (b *backend) fetch(ctx context.Context, mount *mountState, src *tokenSource, seen *cachedToken, purpose requestPurpose, bound time.Duration) (*cachedToken, error) {
	f, started, err := src.cache.request(b.now(), purpose, b.sender(mount, src, seen))
	if err != nil {
		return nil, err
	}
	var timeout <-chan time.Time
	if bound > 0 {
		if !started {
			return nil, errStillWaiting
		}
		timer := time.NewTimer(bound)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-f.done:
		return f.token, f.err
	case <-timeout:
		return nil, errStillWaiting
	case <-ctx.Done():
		return nil, fmt.Errorf("gave up waiting for a token: %w", ctx.Err())
	}
}

// sender is the one exchange with Mirakl for src, as its gates let it out.
// seen is the token the caller found, so that a request that ended just
// before is not repeated.
func (b *backend) sender(mount *mountState, src *tokenSource, seen *cachedToken) sendFunc {
	return func(ctx context.Context, probe bool) (*cachedToken, error) {
		cache := src.cache
		now := b.now()
		if current := cache.current(); current != nil && current != seen && current.remaining(now) > current.lifetime()/2 {
			return current, nil
		}
		started, gen := now, cache.generation()
		// Another token's request failing meanwhile ends this one's
		// in-request retries: the gate has its answer (client.go).
		hooks, attemptsEnded := cache.retryHooks(gen, b.now, mount.config.RequestTimeout)
		fetched, err := mount.client.fetch(withRetryHooks(ctx, hooks), probe, src.audience)
		attemptsEnded()
		now = b.now()
		b.metrics.requestDone(src.metrics, started, now, err)
		if err != nil {
			if !errors.Is(err, errRequestCancelled) {
				cache.failed(err, gen, now)
				b.Logger().Warn("token request to Mirakl failed", "role", src.role, "error", err)
			}
			return nil, err
		}
		if current := cache.current(); current != nil && current.AccessToken == fetched.AccessToken {
			// The same token again (a gateway that caches it, counting
			// expires_in down): it keeps the lifetime it was issued with.
			tok := current.answeredAgain(fetched, now)
			cache.answeredUnchanged(tok, now)
			if tok != current {
				b.tokenInstalled(mount, src, tok) // token_store.go
			}
			b.Logger().Debug("Mirakl answered with the cached token again", "role", src.role, "fingerprint", tok.fingerprint)
			return tok, nil
		}
		tok := newCachedToken(fetched, now)
		cache.install(tok)
		b.tokenInstalled(mount, src, tok) // token_store.go
		b.Logger().Debug("fetched a new token", "role", src.role, "fingerprint", tok.fingerprint, "expires_in_seconds", int64(fetched.ExpiresIn.Seconds()))
		return tok, nil
	}
}

// minTTLWarnings tells a reader that the token has less life than it wanted,
// and why.
func minTTLWarnings(src *tokenSource, t *cachedToken, now time.Time, want time.Duration) []string {
	left := t.remaining(now)
	if left >= want {
		return nil
	}
	if reusable := t.reusableFor(want); reusable < want {
		return []string{fmt.Sprintf("the token has %s left, less than the min_ttl of %s: Mirakl issues tokens that live %s, "+
			"and a token is shared until it has half its life (%s) left",
			left.Truncate(time.Second), want, t.lifetime().Round(time.Second), reusable.Round(time.Second))}
	}
	if failure := src.cache.lastFailure(); failure != nil {
		return servingCached(left, want, fmt.Sprintf("a new one could not be had (%v)", failure))
	}
	return []string{fmt.Sprintf("the token has %s left, less than the min_ttl of %s: a new one is on its way",
		left.Truncate(time.Second), want)}
}

const pathTokenHelpSynopsis = `Get a Mirakl Connect Bearer token.` //nolint:gosec // G101: help text, not a credential.

const pathTokenHelpDescription = `
Returns a Bearer token for the Mirakl Connect APIs, exchanged with the stored
client credentials. One token is cached per mount and shared by every reader
(each role's token, at mirakl/token/:name, likewise).
Its successor is fetched in the background before the token falls below
min_ttl, so readers do not wait on Mirakl while a valid token is cached: the
config's min_ttl shapes refresh ahead and warnings, never a wait. A reader that
asks on its own read for more life than the cached token has (min_ttl=...)
waits at most 3 seconds for a request started for it, then gets the cached
token with a warning; min_ttl is honoured up to half the token's lifetime.

The lease lasts as long as the token. It is renewable, but never past the
token's expiry: a renewal answers with the time the token has left, so that
Vault Proxy and Agent keep one lease per token and read again once renewals
stop growing. Revoking a lease changes nothing: the token stays valid at Mirakl
and cached for other readers. To replace the cached token, rewrite the config
("vault write -f mirakl/config"). Vault Agent re-reads the token before its
lease ends.

  $ vault read mirakl/token
  $ vault read mirakl/token min_ttl=30m
`

const pathRoleTokenHelpSynopsis = `Get a role's Mirakl Connect Bearer token, for the company its audience names.` //nolint:gosec // G101: help text, not a credential.

const pathRoleTokenHelpDescription = `
Returns a Bearer token for the role's audience (a Mirakl Connect seller
company), exchanged with the config's client credentials: every request for it
carries the role's audience as a fourth form field. Everything mirakl/token
promises holds for each role: one cached token per role shared by its readers,
one request in flight, refresh ahead only while the role is read, a lease as
long as the token's remaining life and renewable up to it, min_ttl on the read
(default: the role's min_ttl, else the config's), warnings.

A lease remembers its role: renewing it after the role was deleted or its
audience changed fails; revoking it always succeeds. Give each company's team a
policy on its own role's path, e.g. path "mirakl/token/acme" { capabilities =
["read"] }.

  $ vault read mirakl/token/acme
  $ vault read mirakl/token/acme min_ttl=30m
`
