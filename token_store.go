package mirakl

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// The mount's token is kept in the mount's storage as well as in memory, so
// that a valid token outlives the process that fetched it: after a Vault
// restart, a plugin crash, a reload, an upgrade or a failover, the mount's
// first read serves the stored token instead of asking Mirakl, which may be
// down at that very moment.
//
// The active node writes the entry whenever a token is installed (fetched, or
// verified by a config write), and once more from the periodic function when
// a reader got the token since; never on a cached read. The mount state reads
// it once, when it loads from storage. A write that fails never fails a read:
// the token is served from memory, and the periodic function tries again.

const (
	// tokenStorageKey is seal-wrapped, like the config (PathsSpecial).
	tokenStorageKey = "token"
	// roleTokenStoragePrefix + a role's name keeps the role's token, likewise.
	roleTokenStoragePrefix = "tokens/"
	storedTokenVersion     = 1
	// storedTokenWriteTimeout bounds a write of the token, which the readers
	// of a newly fetched token wait for.
	storedTokenWriteTimeout = 10 * time.Second
	storedTokenSaltBytes    = 16
	storedTokenBindingLabel = "vault-plugin-mirakl stored token binding v1" //nolint:gosec // G101: a domain-separation label, not a credential.
)

// storedTokenEntry is the token as kept in storage. Its times are wall-clock
// UTC, so that a new process, or another node, places them on its own clock.
type storedTokenEntry struct {
	Version       int       `json:"version"`
	AccessToken   string    `json:"access_token"`
	TokenType     string    `json:"token_type"`
	TargetApp     string    `json:"target_app,omitempty"`
	ResourceOwner string    `json:"resource_owner,omitempty"`
	IssuedAt      time.Time `json:"issued_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	// Read: a reader got the token, so its successor is fetched ahead.
	Read bool `json:"read"`
	// The config the token was issued for: an HMAC keyed with that config's
	// client secret (see configBinding), with a salt of its own.
	ConfigSalt    []byte `json:"config_salt"`
	ConfigBinding []byte `json:"config_binding"`
}

// tokenStore is what the backend knows of the stored tokens.
type tokenStore struct {
	// storage is the mount's storage view from the backend's setup: token
	// fetches outside any request (background refreshes) have no other.
	storage logical.Storage

	// mu serialises the writes of the entries, and what they decide on:
	// only a token source that no change retired writes, so that a request
	// that a config or role change overtook cannot store its token after
	// the change dropped the entry (tokenSource.stored and retired).
	mu sync.Mutex
}

// configBinding identifies the config and audience a token was issued for,
// without holding anything that reveals the secret: an HMAC-SHA256 keyed with
// the client secret over the other fields that decide who issues tokens to
// whom (client_id, token_url, ca_cert, the audience sent: the config's for
// the default token, the role's for a role's), and a random salt per entry. Keyed with
// the secret, it cannot be computed, or matched to a config, without the
// secret; salted, two entries of the same config (another mount, cluster or
// backup) cannot be linked. It is no more a guess-check of the secret than
// the config entry beside it, which holds the secret itself under the same
// barrier and seal wrap. min_ttl and request_timeout are left out: they do not
// change which token Mirakl issues (a config write drops the token anyway).
func configBinding(cfg *miraklConfig, audience string, salt []byte) []byte {
	// A JSON array keeps the fields apart, whatever they hold.
	fields := []string{storedTokenBindingLabel, hex.EncodeToString(salt), cfg.ClientID, cfg.TokenURL, cfg.CACert}
	if audience != "" {
		// Only when set, so that entries stored before audience existed
		// still bind to a config without one.
		fields = append(fields, "audience", audience)
	}
	message, _ := json.Marshal(fields)
	mac := hmac.New(sha256.New, []byte(cfg.ClientSecret))
	mac.Write(message)
	return mac.Sum(nil)
}

// writesTokenStorage: this node is the one that fetches this mount's tokens
// and may write its storage. Performance standbys forward token reads to the
// active node and DR secondaries serve nothing; on a performance secondary
// only a local mount has storage of its own (a replicated mount's reads go to
// the primary, and its storage is read-only here).
func (b *backend) writesTokenStorage() bool {
	state := b.System().ReplicationState()
	switch {
	case state.HasState(consts.ReplicationPerformanceStandby | consts.ReplicationDRSecondary):
		return false
	case state.HasState(consts.ReplicationPerformanceSecondary):
		return b.System().LocalMount()
	}
	return true
}

// tokenInstalled keeps tok, just installed in src's cache, in storage. It
// never fails: a token that cannot be stored is served from memory.
func (b *backend) tokenInstalled(mount *mountState, src *tokenSource, tok *cachedToken) {
	if b.tokens.storage == nil || !b.writesTokenStorage() {
		return
	}
	ctx, cancel := context.WithTimeout(b.alive, storedTokenWriteTimeout)
	defer cancel()
	b.tokens.mu.Lock()
	defer b.tokens.mu.Unlock()
	b.storeLocked(ctx, b.tokens.storage, mount, src, tok)
}

// storeLocked writes tok as src's token if no change retired src and tok is
// its current token. Callers hold tokens.mu.
func (b *backend) storeLocked(ctx context.Context, s logical.Storage, mount *mountState, src *tokenSource, tok *cachedToken) {
	if src.retired.Load() || b.mount.Load() != mount || mount.sourceFor(src.role) != src {
		// A config or role change replaced src (its tokens are not to be
		// kept), or a write's check has not installed it yet (it stores the
		// token once it has), or src went idle.
		return
	}
	if current := src.cache.current(); current != tok {
		return // a newer token was installed, and is stored in its turn
	}
	read := tok.read.Load()
	salt := make([]byte, storedTokenSaltBytes)
	if _, err := rand.Read(salt); err != nil {
		b.Logger().Warn("could not keep the new token in storage: it is served from memory only", "role", src.role, "error", err)
		return
	}
	entry, err := logical.StorageEntryJSON(src.storageKey(), &storedTokenEntry{
		Version:       storedTokenVersion,
		AccessToken:   tok.AccessToken,
		TokenType:     tok.TokenType,
		TargetApp:     tok.TargetApp,
		ResourceOwner: tok.ResourceOwner,
		IssuedAt:      tok.issuedAt.UTC(),
		ExpiresAt:     tok.expiresAt.UTC(),
		Read:          read,
		ConfigSalt:    salt,
		ConfigBinding: configBinding(mount.config, src.audience, salt),
	})
	if err == nil {
		err = s.Put(ctx, entry)
	}
	if err != nil {
		// The error comes from storage, or from encoding: neither quotes the entry.
		b.Logger().Warn("could not keep the new token in storage: it is served from memory, and a restart before the next attempt costs a new token",
			"role", src.role, "error", err)
		return
	}
	src.stored, src.storedRead = tok, read
}

// restoreToken installs src's stored token in src, just loaded from storage
// with mount, if it belongs to mount's config and src's audience and has life
// left, unless src already has a token. An entry that does not is ignored (the next
// token replaces it), and logged without its content. A stored entry passes
// the same checks as an answer from Mirakl, and its remaining life never
// exceeds the lifetime it was issued with, whatever the clock of the node
// that stored it said. It reports false when storage could not be read, so
// that the caller tries again.
func (b *backend) restoreToken(ctx context.Context, s logical.Storage, mount *mountState, src *tokenSource) bool {
	if src.cache.current() != nil {
		return true // a newer token than any stored one
	}
	raw, err := s.Get(ctx, src.storageKey())
	if err != nil {
		b.Logger().Warn("could not read the stored token: the next read looks again", "role", src.role, "error", err)
		return false
	}
	if raw == nil {
		return true
	}
	var entry storedTokenEntry
	if err := raw.DecodeJSON(&entry); err != nil || entry.Version != storedTokenVersion || len(entry.ConfigSalt) != storedTokenSaltBytes {
		b.Logger().Warn("ignoring the stored token: the entry is unreadable; the next token replaces it")
		return true
	}
	lifetime := entry.ExpiresAt.Sub(entry.IssuedAt)
	stored := &fetchedToken{
		AccessToken:   entry.AccessToken,
		TokenType:     entry.TokenType,
		ExpiresIn:     lifetime,
		TargetApp:     entry.TargetApp,
		ResourceOwner: entry.ResourceOwner,
	}
	if stored.problem() != "" || entry.TokenType != "Bearer" || !usableLifetime(lifetime) {
		b.Logger().Warn("ignoring the stored token: the entry is unreadable (not a usable token); the next token replaces it")
		return true
	}
	if !hmac.Equal(entry.ConfigBinding, configBinding(mount.config, src.audience, entry.ConfigSalt)) {
		b.Logger().Info("ignoring the stored token: it was issued for another config or audience; the next token replaces it", "role", src.role)
		return true
	}
	now := b.now()
	tok := placedToken(stored, now, min(timeLeft(now, entry.ExpiresAt), lifetime), lifetime)
	if !tok.servable(now) {
		b.Logger().Debug("ignoring the stored token: it has expired", "expired_at", formatTime(entry.ExpiresAt))
		return true
	}
	tok.read.Store(entry.Read)
	src.cache.restore(tok)
	b.tokens.mu.Lock()
	src.stored, src.storedRead = tok, entry.Read
	b.tokens.mu.Unlock()
	b.Logger().Debug("serving the stored token", "role", src.role, "expires_at", tok.expiresAtText)
	return true
}

// dropStoredTokens retires the tokens of mount (the state a config write or
// delete replaces; nil: none in memory) and deletes the stored ones, the
// default token's and every role's, before the change stores anything, so
// that the tokens of a config being replaced (or rewritten to replace the
// tokens after an incident) cannot come back after a restart. A failure is
// the caller's to return, after reinstate: nothing has changed yet.
func (b *backend) dropStoredTokens(ctx context.Context, s logical.Storage, mount *mountState) error {
	b.tokens.mu.Lock()
	defer b.tokens.mu.Unlock()
	if mount != nil {
		mount.retire()
	}
	keys, err := s.List(ctx, roleTokenStoragePrefix)
	if err != nil {
		return fmt.Errorf("listing the stored role tokens: %w", err)
	}
	for _, key := range append([]string{tokenStorageKey}, prefixed(roleTokenStoragePrefix, keys)...) {
		if err := s.Delete(ctx, key); err != nil {
			return fmt.Errorf("dropping the stored tokens: %w", err)
		}
	}
	return nil
}

// dropStoredRoleToken retires src (the source a role write or delete
// replaces; nil: none in memory) and deletes role's stored token.
func (b *backend) dropStoredRoleToken(ctx context.Context, s logical.Storage, role string, src *tokenSource) error {
	b.tokens.mu.Lock()
	defer b.tokens.mu.Unlock()
	if src != nil {
		src.retired.Store(true)
	}
	if err := s.Delete(ctx, roleTokenStoragePrefix+role); err != nil {
		return fmt.Errorf("dropping the role's stored token: %w", err)
	}
	return nil
}

// reinstate undoes a retire after a change that failed before it replaced
// anything: the sources go on storing their tokens.
func reinstate(sources ...*tokenSource) {
	for _, src := range sources {
		if src != nil {
			src.retired.Store(false)
		}
	}
}

func prefixed(prefix string, keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = prefix + k
	}
	return out
}

// storeVerifiedToken follows a config or role write that just installed
// src: it stores the token the write verified src with, if any. A failure is
// logged: the write is done, and the token is served from memory.
func (b *backend) storeVerifiedToken(ctx context.Context, s logical.Storage, mount *mountState, src *tokenSource) {
	if !b.writesTokenStorage() {
		return
	}
	if tok := src.cache.current(); tok != nil {
		b.tokens.mu.Lock()
		defer b.tokens.mu.Unlock()
		b.storeLocked(ctx, s, mount, src, tok)
	}
}

// periodic is the backend's periodic function (about once a minute, on the
// active node). It loads the mount state, and so the stored tokens, if no
// request has since the process started (or restores a token again if
// storage failed the last time): a restarted mount refreshes ahead
// the tokens its readers use, before any of them reads again. It stores each
// token whose last write failed, or that a reader got since it was stored,
// so that the next process knows it is in use. Then it refreshes ahead.
func (b *backend) periodic(ctx context.Context, req *logical.Request) error {
	if s := req.Storage; s != nil && b.writesTokenStorage() {
		mount, err := b.currentMount(ctx, s)
		if err != nil {
			b.Logger().Warn("could not load the config", "error", err)
		}
		if mount != nil && !mount.roles.restored.Load() {
			b.restoreRoleTokens(s, mount)
		}
	}
	b.keepTokensStored()
	return b.refreshAhead(ctx, req)
}

// restoreRoleTokens loads, once per mount state, the roles whose tokens are
// stored, with their tokens: the roles in use before a restart are refreshed
// ahead as the default token is. Roles whose stored token has expired are
// forgotten again by refreshAhead; the work is once per load, not per call.
func (b *backend) restoreRoleTokens(s logical.Storage, mount *mountState) {
	ctx, cancel := context.WithTimeout(b.alive, mountLoadTimeout)
	defer cancel()
	names, err := s.List(ctx, roleTokenStoragePrefix)
	if err != nil {
		b.Logger().Warn("could not list the stored role tokens: the next periodic call looks again", "error", err)
		return
	}
	for _, name := range names {
		if _, err := b.source(s, mount, name); err != nil && !errors.Is(err, errRoleNotFound) {
			b.Logger().Warn("could not load a role with a stored token: the next periodic call looks again", "role", name, "error", err)
			return
		}
	}
	mount.roles.restored.Store(true)
}

// keepTokensStored stores each token whose last write failed, or that a
// reader got since it was stored.
func (b *backend) keepTokensStored() {
	mount := b.loadedMount()
	if mount == nil || b.tokens.storage == nil || !b.writesTokenStorage() {
		return
	}
	now := b.now()
	mount.eachSource(func(src *tokenSource) {
		tok := src.cache.current()
		if tok == nil || !tok.servable(now) {
			return
		}
		b.tokens.mu.Lock()
		upToDate := src.stored == tok && (src.storedRead || !tok.read.Load())
		b.tokens.mu.Unlock()
		if !upToDate {
			b.tokenInstalled(mount, src, tok)
		}
	})
}
