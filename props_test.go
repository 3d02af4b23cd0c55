package mirakl

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	"pgregory.net/rapid"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// propsChecks is how many histories the property test tries in the unit
// suite; make test-props asks for more with -rapid.checks.
const propsChecks = "60"

// The engine's promises, stated once and checked after every step of random
// histories of what Vault, readers, admins, time and Mirakl can do:
//
//  1. no answer, warning, error, status field or log line holds a client
//     secret in any spelling (an answer to a write that sent the secret may
//     repeat Mirakl's error_description, but never the secret raw), and none
//     holds a token but a read's own access_token;
//  2. no token handed out has expired; no lease, fresh or renewed, ends after
//     its token;
//  3. no request goes to Mirakl while the gate holds requests back, none with
//     a secret other than the stored one (or, during a write, the written
//     one), and while Mirakl is healthy a new token is fetched only once the
//     cached one has run through half its life;
//  4. a read that finds a cached token good enough for it gets that token;
//  5. a write that fails changes nothing stored;
//  6. when a history ends, its goroutines are gone;
//  7. a restart (a new backend on the same storage) serves the token the old
//     process had, if still good enough, without asking Mirakl;
//  8. mirakl/status and mirakl/metrics count the same requests, no more
//     than Mirakl saw, and the metrics hold nothing secret;
//  9. no read, renewal or periodic call waits on a hanging Mirakl while a
//     valid token is cached, and no lease is longer than the lifetime Mirakl
//     issued its token with, whatever the clocks did between a store and a
//     restore.
//
// The world includes what breaks at the edges: a first reader who hangs up
// during the load after a restart, Mirakl hanging until the history lets it
// go, refusals followed by recovery, slow storage, an entry restored from a
// node whose clock was skewed, host suspends (the wall clock jumps, the
// monotonic one does not) and wall clocks stepped back. Every step runs under
// a deadline: a step that hangs fails the run with its name.
//
// The operations go through the framework as Vault calls it: HandleRequest
// for paths and leases (with the lease's secret type as Vault stored it),
// RollbackOperation for the periodic function, InvalidateKey, Cleanup.
func TestProperties(t *testing.T) {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "rapid.checks" })
	if !given {
		if err := flag.Set("rapid.checks", propsChecks); err != nil {
			t.Fatal(err)
		}
	}
	baseline := runtime.NumGoroutine()
	rapid.Check(t, func(rt *rapid.T) {
		h := newHistory(rt)
		defer h.close()
		rt.Repeat(withDeadlines(h.actions()))
	})
	// Promise 6: once every history closed its backend and fakes.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseline+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before the histories, %d after\n%s", baseline, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// propsStepDeadline bounds one step of a history: far beyond what any step
// takes (an attempt's timeout is at most 5s here), so that a step that waits
// where it must not fails the run with its name instead of hanging it.
const propsStepDeadline = 2 * time.Minute

// withDeadlines runs each action under propsStepDeadline. A step past it
// ends the test binary with the step's name: rapid's T cannot be failed
// from another goroutine, and the step's own goroutine is the one stuck.
func withDeadlines(actions map[string]func(*rapid.T)) map[string]func(*rapid.T) {
	timed := make(map[string]func(*rapid.T), len(actions))
	for name, action := range actions {
		timed[name] = func(t *rapid.T) {
			timer := time.AfterFunc(propsStepDeadline, func() {
				panic(fmt.Sprintf("TestProperties: the step %q has not finished after %s: it waits where it must not", name, propsStepDeadline))
			})
			defer timer.Stop()
			action(t)
		}
	}
	return timed
}

// propsStorage is the history's storage: it honours the context as real
// storage does, and can be slow to write (the clock passes while it does).
type propsStorage struct {
	*logical.InmemStorage
	clock    *suspendableClock
	putDelay time.Duration
}

func (s *propsStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.InmemStorage.Get(ctx, key)
}

func (s *propsStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.clock.Advance(s.putDelay)
	return s.InmemStorage.Put(ctx, entry)
}

// arrival is one request as the recording front of the fake saw it.
type arrival struct{ secret string }

// history is one random history's world: a mount, its clock and storage,
// two Mirakl endpoints (the configured one and another), and what the
// history has seen.
type history struct {
	t       *rapid.T
	ctx     context.Context
	clock   *suspendableClock
	storage *propsStorage
	logs    *syncBuffer
	backend *backend

	fake, other *fakemirakl.Server
	fakeURL     string
	otherURL    string
	servers     []*httptest.Server

	mu        sync.Mutex
	arrivals  []arrival
	startedAt int // arrivals before the current backend started

	healthy  bool          // the fake answers with tokens (when the secret matches)
	accepted string        // the secret Mirakl accepts
	stored   *miraklConfig // what the history wrote last, successfully; nil if none
	secrets  []string      // every secret the history used
	leases   []*logical.Secret

	// hold, when not nil, keeps every request to Mirakl waiting until the
	// history closes it (Mirakl stuck).
	hold chan struct{}
}

// propsExpiresIn is the lifetime the fakes issue tokens with.
const propsExpiresIn = 600 * time.Second

const propsClientID = "props-client"

func newHistory(rt *rapid.T) *history {
	clock := &suspendableClock{base: time.Now()}
	h := &history{t: rt, ctx: context.Background(), healthy: true,
		clock: clock, storage: &propsStorage{InmemStorage: &logical.InmemStorage{}, clock: clock}, logs: &syncBuffer{}}
	first := h.newSecret()
	h.accepted = first
	h.fake = fakemirakl.NewHandler(propsClientID, first, fakemirakl.WithTokenPrefix(testTokenPrefix), fakemirakl.WithExpiresIn(int(propsExpiresIn.Seconds())))
	h.other = fakemirakl.NewHandler(propsClientID, first, fakemirakl.WithTokenPrefix(testTokenPrefix+"other-"), fakemirakl.WithExpiresIn(int(propsExpiresIn.Seconds())))
	h.fakeURL = h.serve(h.fake)
	h.otherURL = h.serve(h.other)
	h.start()
	return h
}

// serve puts a recording front before a fake: it notes the secret of every
// request, then lets the fake answer.
func (h *history) serve(fake *fakemirakl.Server) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		h.mu.Lock()
		h.arrivals = append(h.arrivals, arrival{secret: form.Get("client_secret")})
		h.mu.Unlock()
		fake.ServeHTTP(w, r)
	}))
	h.servers = append(h.servers, s)
	return s.URL + fakemirakl.TokenPath
}

// start makes the mount's backend, as Vault's Factory does.
func (h *history) start() {
	config := logical.TestBackendConfig()
	config.StorageView = h.storage
	config.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: h.logs})
	b, err := newBackend(h.ctx, config, h.clock.Now)
	if err != nil {
		h.t.Fatal(err)
	}
	b.retries = retryPolicy{MaxRetries: 1, WaitMin: time.Millisecond, WaitMax: 5 * time.Millisecond}
	b.fresherWait = 20 * time.Millisecond
	h.backend = b
	h.startedAt = h.arrivalCount()
}

func (h *history) close() {
	h.unstick()
	h.backend.Cleanup(h.ctx)
	for _, s := range h.servers {
		s.Close()
	}
	// The engine's requests are what Mirakl expects, whatever the history.
	for _, fake := range []*fakemirakl.Server{h.fake, h.other} {
		if v := fake.Violations(); len(v) > 0 {
			h.t.Fatalf("the fake saw requests Mirakl would refuse: %v", v)
		}
	}
}

func (h *history) newSecret() string {
	s := fmt.Sprintf(`props-SECRET-%d+/=&%%"<x>`, len(h.secrets))
	h.secrets = append(h.secrets, s)
	return s
}

func (h *history) arrivalCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.arrivals)
}

func (h *history) arrivalsSince(n int) []arrival {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.arrivals[n:])
}

func (h *history) request(req *logical.Request) (*logical.Response, error) {
	return h.requestOn(h.ctx, req, false)
}

// requestOn sends req with ctx. While Mirakl is stuck, a request that must
// not wait on it (mayWait false) must return while it is still stuck; one
// that may lets Mirakl go first.
func (h *history) requestOn(ctx context.Context, req *logical.Request, mayWait bool) (*logical.Response, error) {
	req.Storage = h.storage
	req.MountPoint = "mirakl/"
	if h.hold != nil && mayWait {
		h.unstick()
	}
	type result struct {
		resp *logical.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := h.backend.HandleRequest(ctx, req)
		done <- result{resp, err}
	}()
	// A request that waited on a stuck Mirakl returns only when an attempt
	// times out, after request_timeout/3 at least: with request_timeout 5s,
	// a second tells it from one that did not wait (a few milliseconds).
	var wrongWait <-chan time.Time
	if h.hold != nil && !mayWait && h.stored != nil && h.stored.RequestTimeout >= 5*time.Second {
		wrongWait = time.After(time.Second)
	}
	var r result
	select {
	case r = <-done:
	case <-wrongWait:
		h.t.Fatalf("%s %s waited on a stuck Mirakl although it must not", req.Operation, req.Path)
	}
	h.settle()
	return r.resp, r.err
}

// settle waits for the requests a step started: the next step starts from
// rest. While Mirakl is stuck they wait for it, and the next step with them.
func (h *history) settle() {
	if h.hold != nil {
		return
	}
	if mount := h.backend.loadedMount(); mount != nil {
		mount.defaultToken.cache.running.Wait()
	}
}

// unstick lets a stuck Mirakl answer (as it is otherwise configured) and
// waits for the requests it held.
func (h *history) unstick() {
	if h.hold == nil {
		return
	}
	close(h.hold)
	h.hold = nil
	h.healthy = true
	for _, fake := range []*fakemirakl.Server{h.fake, h.other} {
		fake.FailRandomly(0, fakemirakl.Fault{})
	}
	h.settle()
}

func (h *history) status() map[string]any {
	resp, err := h.backend.HandleRequest(h.ctx, &logical.Request{Operation: logical.ReadOperation, Path: "status", Storage: h.storage, MountPoint: "mirakl/"})
	if err != nil || resp == nil {
		h.t.Fatalf("status: %v", err)
	}
	h.checkClean("status", resp, err, false)
	return resp.Data
}

// held reports whether the gate holds requests back now, by status.
func (h *history) held() bool { return h.status()["requests_held"] == true }

// cachedRemaining is what status says of the cached token: its remaining
// life and lifetime, ok false if none.
func (h *history) cached() (fingerprint string, remaining, lifetime time.Duration, ok bool) {
	s := h.status()
	fp, ok := s["token_fingerprint"].(string)
	if !ok {
		return "", 0, 0, false
	}
	issued, _ := time.Parse(time.RFC3339, s["token_issued_at"].(string))
	expires, _ := time.Parse(time.RFC3339, s["token_expires_at"].(string))
	// token_expires_in is the engine's own view by both clocks, in whole
	// seconds rounded down.
	left, _ := s["token_expires_in"].(int64)
	return fp, time.Duration(left) * time.Second, expires.Sub(issued), true
}

// validCached: status shows a cached token that the engine serves without
// asking Mirakl (at least 2s left; 3s, as status rounds down).
func (h *history) validCached() bool {
	_, remaining, _, ok := h.cached()
	return ok && remaining >= 3*time.Second
}

func (h *history) actions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"write config":     h.writeConfig,
		"delete config":    h.deleteConfig,
		"read token":       h.readToken,
		"renew lease":      h.renewLease,
		"revoke lease":     h.revokeLease,
		"periodic":         h.periodic,
		"invalidate":       h.invalidate,
		"advance clock":    h.advanceClock,
		"change Mirakl":    h.changeMirakl,
		"rotate at Mirakl": h.rotateAtMirakl,
		"restart":          h.restart,
		"storage speed":    h.storageSpeed,
		"":                 h.checkLogs,
	}
}

// --- operations ---

func (h *history) writeConfig(t *rapid.T) {
	data := map[string]any{}
	secretGiven := false
	if h.stored == nil || rapid.Bool().Draw(t, "full") {
		data["client_id"] = propsClientID
		data["token_url"] = h.fakeURL
		// Short, so that no attempt waits out a Retry-After: histories
		// take milliseconds, and a mutant that made them wait would take
		// minutes rather than fail.
		data["request_timeout"] = rapid.SampledFrom([]string{"1s", "5s"}).Draw(t, "request_timeout of a full write")
	}
	// Mostly what an admin writes, now and then what an attacker or a typo does.
	switch rapid.IntRange(0, 9).Draw(t, "secret") {
	case 0, 1: // none
	case 2, 3, 4, 5:
		data["client_secret"] = h.accepted
		secretGiven = true
	case 6, 7:
		data["client_secret"] = h.secrets[rapid.IntRange(0, len(h.secrets)-1).Draw(t, "which secret")]
		secretGiven = true
	case 8:
		data["client_secret"] = h.newSecret()
		secretGiven = true
	case 9:
		data["client_secret"] = strings.Repeat("<", rapid.SampledFrom([]int{1025, 1 << 20}).Draw(t, "huge secret"))
	}
	if rapid.IntRange(0, 3).Draw(t, "endpoint") == 0 {
		data["token_url"] = rapid.SampledFrom([]string{h.fakeURL, h.fakeURL, h.otherURL, "ftp://example.com/", "https://auth.mirakl.net/ o"}).Draw(t, "token_url")
	}
	if rapid.Bool().Draw(t, "min_ttl") {
		data["min_ttl"] = rapid.SampledFrom([]string{"0s", "1m", "4m", "4m", "9m", "25h"}).Draw(t, "min_ttl value")
	}
	if rapid.IntRange(0, 3).Draw(t, "timeout") == 0 {
		data["request_timeout"] = rapid.SampledFrom([]string{"1s", "5s", "5s", "6m"}).Draw(t, "request_timeout value")
	}
	if rapid.IntRange(0, 19).Draw(t, "ca_cert") == 0 {
		data["ca_cert"] = "not a certificate"
	}
	verify := rapid.Bool().Draw(t, "verify")
	data["verify"] = verify

	before, _ := readConfig(h.ctx, h.storage)
	op := logical.CreateOperation
	if before != nil {
		op = logical.UpdateOperation
	}
	arrivals := h.arrivalCount()
	resp, err := h.requestOn(h.ctx, &logical.Request{Operation: op, Path: "config", Data: data}, true)
	h.checkClean("config write", resp, err, secretGiven)
	after, _ := readConfig(h.ctx, h.storage)

	failed := err != nil || (resp != nil && resp.IsError())
	if failed {
		// Promise 5: nothing stored changed.
		if !sameConfig(before, after) {
			t.Fatalf("a failed write (%v / %v) changed the stored config", err, resp)
		}
	} else {
		h.stored = after
		h.leases = nil // old leases stay valid at Vault, but their tokens are no longer ours to check
	}
	// Promise 3: a check sends the secret being written; nothing else goes out.
	written := ""
	if before != nil {
		written = before.ClientSecret
	}
	if s, ok := data["client_secret"].(string); ok {
		written = s
	}
	for _, a := range h.arrivalsSince(arrivals) {
		if a.secret != written {
			t.Fatalf("a config write sent a secret other than the one written")
		}
	}
	if !verify && h.arrivalCount() != arrivals {
		t.Fatal("a write with verify=false asked Mirakl")
	}
}

func sameConfig(a, b *miraklConfig) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func (h *history) deleteConfig(t *rapid.T) {
	if rapid.IntRange(0, 3).Draw(t, "delete now") != 0 {
		t.Skip("deletes are rarer than writes")
	}
	arrivals := h.arrivalCount()
	resp, err := h.requestOn(h.ctx, &logical.Request{Operation: logical.DeleteOperation, Path: "config"}, true)
	h.checkClean("config delete", resp, err, false)
	h.stored = nil
	if h.arrivalCount() != arrivals {
		t.Fatal("a config delete asked Mirakl")
	}
}

func (h *history) readToken(t *rapid.T) {
	data := map[string]any{}
	var want time.Duration
	if h.stored != nil {
		want = h.stored.MinTTL
	}
	if rapid.Bool().Draw(t, "reader min_ttl") {
		want = rapid.SampledFrom([]time.Duration{0, time.Minute, 4 * time.Minute, 9 * time.Minute, time.Hour}).Draw(t, "reader min_ttl value")
		data["min_ttl"] = int(want.Seconds())
	}
	fingerprint, remaining, lifetime, cached := h.cached()
	goodEnough := cached && remaining >= 2*time.Second && remaining >= min(want, lifetime/2)
	held := h.held()
	now := h.clock.Now()
	mayWait := !h.validCached()
	h.expectRequests(func() {
		resp, err := h.requestOn(h.ctx, &logical.Request{Operation: logical.ReadOperation, Path: "token", Data: data}, mayWait)
		h.checkClean("token read", resp, err, false)
		if err != nil || resp == nil || resp.IsError() {
			if goodEnough {
				t.Fatalf("a read that found a good enough token failed: %v / %v", err, resp)
			}
			return
		}
		tok, _ := resp.Data["access_token"].(string)
		if goodEnough && tokenFingerprint(tok) != fingerprint {
			t.Fatal("a read that found a good enough cached token got another one") // promise 4
		}
		h.checkLease("read", now, resp.Secret)
		h.leases = append(h.leases, resp.Secret)
	}, held)
}

// checkLease: promise 2 for a lease answered at now.
func (h *history) checkLease(what string, now time.Time, secret *logical.Secret) {
	if secret == nil {
		h.t.Fatalf("%s: no lease", what)
	}
	expiresAt, ok := leaseExpiry(secret)
	if !ok {
		h.t.Fatalf("%s: the lease does not carry its token's expiry", what)
	}
	if !now.Before(expiresAt) {
		h.t.Fatalf("%s: handed out a token that expired at %s (now %s)", what, expiresAt, now)
	}
	if end := now.Add(secret.TTL); end.After(expiresAt) || secret.TTL < time.Second {
		h.t.Fatalf("%s: a lease of %s ends after its token (%s left)", what, secret.TTL, expiresAt.Sub(now))
	}
	if secret.TTL > propsExpiresIn { // promise 9
		h.t.Fatalf("%s: a lease of %s for a token issued for %s", what, secret.TTL, propsExpiresIn)
	}
}

func (h *history) pickLease(t *rapid.T) *logical.Secret {
	if len(h.leases) == 0 {
		t.Skip("no lease")
	}
	lease := h.leases[rapid.IntRange(0, len(h.leases)-1).Draw(t, "lease")]
	stored := *lease
	// As Vault keeps it in its lease entry: the type by name, not by our constant.
	stored.InternalData = map[string]any{}
	for k, v := range lease.InternalData {
		stored.InternalData[k] = v
	}
	stored.InternalData["secret_type"] = "mirakl_token"
	stored.IssueTime = h.clock.Now().Add(-time.Second)
	return &stored
}

func (h *history) renewLease(t *rapid.T) {
	secret := h.pickLease(t)
	now := h.clock.Now()
	held := h.held()
	h.expectRequests(func() {
		resp, err := h.request(&logical.Request{Operation: logical.RenewOperation, Secret: secret})
		h.checkClean("renew", resp, err, false)
		if err == nil && resp != nil && !resp.IsError() {
			h.checkLease("renew", now, resp.Secret)
		}
	}, held)
}

func (h *history) revokeLease(t *rapid.T) {
	secret := h.pickLease(t)
	arrivals := h.arrivalCount()
	resp, err := h.request(&logical.Request{Operation: logical.RevokeOperation, Secret: secret})
	h.checkClean("revoke", resp, err, false)
	if err != nil || (resp != nil && resp.IsError()) {
		t.Fatalf("a revoke failed: %v / %v", err, resp)
	}
	if h.arrivalCount() != arrivals {
		t.Fatal("a revoke asked Mirakl")
	}
}

func (h *history) periodic(*rapid.T) {
	held := h.held()
	h.expectRequests(func() {
		resp, err := h.request(&logical.Request{Operation: logical.RollbackOperation, Path: ""})
		h.checkClean("periodic", resp, err, false)
	}, held)
}

func (h *history) invalidate(t *rapid.T) {
	arrivals := h.arrivalCount()
	h.backend.InvalidateKey(h.ctx, rapid.SampledFrom([]string{"config", "token", "status"}).Draw(t, "key"))
	h.settle()
	if h.arrivalCount() != arrivals {
		h.t.Fatal("an invalidation asked Mirakl")
	}
}

// restart: the plugin process ends (Vault restarts, the process is killed
// or reloaded) and a new one serves the mount from the same storage. Promise
// 7: the token it had, if still good enough, is what the first read gets,
// whatever Mirakl is doing, and it asks Mirakl only for a successor that was
// due anyway.
func (h *history) restart(t *rapid.T) {
	h.unstick()
	fingerprint, remaining, lifetime, cached := h.cached()
	h.backend.Cleanup(h.ctx)
	// The node that stored the token may have had another clock: the entry
	// says so, and the new process must not give the token more life than
	// it was issued with.
	skew := rapid.SampledFrom([]time.Duration{0, 0, 0, 30 * time.Minute, -30 * time.Second}).Draw(t, "clock skew of the storing node")
	if skew != 0 {
		h.skewStoredToken(skew)
	}
	h.start()
	if rapid.IntRange(0, 3).Draw(t, "the first reader hangs up") == 0 {
		// A reader who gives up during the first load: it may fail, the
		// mount must not lose its stored token for it.
		ctx, cancel := context.WithCancel(h.ctx)
		cancel()
		resp, err := h.requestOn(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "token"}, false)
		h.checkClean("token read", resp, err, false)
		if err == nil && resp != nil && !resp.IsError() {
			h.leases = append(h.leases, resp.Secret)
		}
	}
	if skew < 0 {
		remaining += skew
	}
	if !cached || h.stored == nil || remaining < 2*time.Second || remaining < min(h.stored.MinTTL, lifetime/2) {
		return
	}
	arrivals := h.arrivalCount()
	resp, err := h.request(&logical.Request{Operation: logical.ReadOperation, Path: "token"})
	h.checkClean("token read", resp, err, false)
	if err != nil || resp == nil || resp.IsError() {
		h.t.Fatalf("the first read after a restart failed: %v / %v", err, resp)
	}
	if tok, _ := resp.Data["access_token"].(string); tokenFingerprint(tok) != fingerprint {
		h.t.Fatal("the first read after a restart got another token than the one stored")
	}
	// Only a token past its refresh point has its successor fetched, in the
	// background, as before the restart.
	if refreshPoint := min(h.stored.MinTTL+refreshAheadMargin, lifetime/2); h.arrivalCount() != arrivals && remaining >= refreshPoint {
		h.t.Fatalf("the first read after a restart asked Mirakl, with %s of the token's %s left", remaining, lifetime)
	}
	h.leases = append(h.leases, resp.Secret)
}

// skewStoredToken moves the stored entry's times by skew, as a node whose
// wall clock was that far off would have written them.
func (h *history) skewStoredToken(skew time.Duration) {
	raw, err := h.storage.InmemStorage.Get(h.ctx, tokenStorageKey)
	if err != nil || raw == nil {
		return
	}
	var entry storedTokenEntry
	if err := raw.DecodeJSON(&entry); err != nil {
		h.t.Fatalf("the stored token does not decode: %v", err)
	}
	entry.IssuedAt, entry.ExpiresAt = entry.IssuedAt.Add(skew), entry.ExpiresAt.Add(skew)
	skewed, err := logical.StorageEntryJSON(tokenStorageKey, &entry)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.storage.InmemStorage.Put(h.ctx, skewed); err != nil {
		h.t.Fatal(err)
	}
}

// advanceClock passes time: as it does, as a host suspend does (the wall
// clock jumps, the monotonic one stays), or steps the wall clock back.
func (h *history) advanceClock(t *rapid.T) {
	d := rapid.SampledFrom([]time.Duration{
		time.Second, 3 * time.Second, 30 * time.Second, time.Minute, 4 * time.Minute, 5 * time.Minute, 6 * time.Minute, 11 * time.Minute,
	}).Draw(t, "advance")
	switch rapid.IntRange(0, 9).Draw(t, "how") {
	case 0:
		h.clock.Suspend(d) // longer than a hold, for the longer ones
	case 1:
		h.clock.Suspend(-d) // the wall clock stepped back
	default:
		h.clock.Advance(d)
	}
}

// storageSpeed: storage writes take a while (the clock passes while a new
// token is kept), or not.
func (h *history) storageSpeed(t *rapid.T) {
	h.storage.putDelay = rapid.SampledFrom([]time.Duration{0, 0, time.Second, 5 * time.Second}).Draw(t, "token write takes")
}

func (h *history) changeMirakl(t *rapid.T) {
	h.unstick()
	// Hanging costs real time (an attempt's timeout): drawn more rarely.
	modes := []string{"healthy", "healthy", "healthy", "429", "429 long", "503", "refusing", "malformed", "echoing", "slow", "healthy", "hanging", "stuck"}
	mode := rapid.SampledFrom(modes).Draw(t, "Mirakl")
	if mode == "stuck" {
		// Every request waits until the history lets Mirakl go (a read that
		// finds no valid token, a write, a restart, another change).
		h.healthy = false
		h.hold = make(chan struct{})
		for _, fake := range []*fakemirakl.Server{h.fake, h.other} {
			fake.FailRandomly(1, fakemirakl.Hang(h.hold))
		}
		return
	}
	h.healthy = mode == "healthy" || mode == "slow"
	echo := func(body string) string {
		raw, _ := json.Marshal(map[string]string{"error": "invalid_request", "error_description": "got " + body})
		return string(raw)
	}
	faults := map[string]fakemirakl.Fault{
		"429":       fakemirakl.RateLimited("60"),
		"429 long":  fakemirakl.RateLimited("31536000"),
		"503":       fakemirakl.HTMLError(503),
		"refusing":  fakemirakl.OAuthError(401, "invalid_client", "refused"),
		"malformed": fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"x\r\ny","expires_in":60}`),
		"echoing":   {Status: 400, ContentType: "application/json", Echo: echo},
		"slow":      fakemirakl.Slow(20 * time.Millisecond),
		"hanging":   fakemirakl.Slow(400 * time.Millisecond), // beyond an attempt's timeout at request_timeout=1s
	}
	for _, fake := range []*fakemirakl.Server{h.fake, h.other} {
		if f, ok := faults[mode]; ok && mode != "slow" {
			fake.FailRandomly(1, f)
		} else {
			fake.FailRandomly(0, fakemirakl.Fault{})
		}
		if mode == "slow" {
			fake.FailRandomly(1, faults["slow"])
		}
	}
}

// rotateAtMirakl: Mirakl now accepts another secret of the history's (the
// stored one is refused until the admin writes the new one).
func (h *history) rotateAtMirakl(t *rapid.T) {
	if rapid.Bool().Draw(t, "rotate now") {
		t.Skip("rotations are rarer than the rest")
	}
	secret := h.secrets[rapid.IntRange(0, len(h.secrets)-1).Draw(t, "accepted secret")]
	h.accepted = secret
	h.fake.SetCredentials(propsClientID, secret)
	h.other.SetCredentials(propsClientID, secret)
}

// --- checks ---

// expectRequests runs a read, renewal or periodic step and checks promise 3
// on what arrived at Mirakl meanwhile.
func (h *history) expectRequests(step func(), held bool) {
	_, remaining, lifetime, cached := h.cached()
	arrivals := h.arrivalCount()
	issued := len(h.fake.IssuedTokens()) + len(h.other.IssuedTokens())
	step()
	got := h.arrivalsSince(arrivals)
	if held && len(got) > 0 {
		h.t.Fatalf("%d requests went to Mirakl while the gate held them back", len(got))
	}
	for _, a := range got {
		if h.stored == nil || a.secret != h.stored.ClientSecret {
			h.t.Fatal("a request carried a secret other than the stored one")
		}
	}
	newTokens := len(h.fake.IssuedTokens()) + len(h.other.IssuedTokens()) - issued
	if newTokens > 0 && cached && remaining > lifetime/2 {
		h.t.Fatalf("a new token was fetched while the cached one had %s of its %s left", remaining, lifetime)
	}
}

// checkClean is promise 1 for one answer. secretGiven: the request carried
// the secret itself, so Mirakl's error_description may come back to it.
func (h *history) checkClean(what string, resp *logical.Response, err error, secretGiven bool) {
	for _, text := range visibleTexts(resp, err, what == "token read") {
		for _, needle := range h.needles(secretGiven) {
			if strings.Contains(text, needle) {
				h.t.Fatalf("%s: an answer holds a secret or a token (%q): %s", what, needle, text)
			}
		}
	}
}

func (h *history) needles(secretGiven bool) []string {
	needles := append(h.fake.IssuedTokens(), h.other.IssuedTokens()...)
	for _, s := range h.secrets {
		if secretGiven {
			needles = append(needles, s)
		} else {
			needles = append(needles, secretSpellings(s)...)
			needles = append(needles, url.QueryEscape(url.QueryEscape(s)))
		}
	}
	if secretGiven {
		return needles
	}
	return append(needles, "props-SECRET")
}

// checkLogs runs after every step: promise 1 for the plugin's logs, and
// mirakl/status against what arrived at Mirakl since the process started:
// each request it counts is one to two attempts (MaxRetries is 1 here).
func (h *history) checkLogs(*rapid.T) {
	logs := h.logs.String()
	for _, needle := range h.needles(false) {
		if strings.Contains(logs, needle) {
			h.t.Fatalf("the logs hold a secret or a token (%q)", needle)
		}
	}
	status := h.status()
	requests, _ := status["requests"].(uint64)
	failures, _ := status["failures"].(uint64)
	attempts := float64(h.arrivalCount() - h.startedAt) // float: no conversion can overflow
	if attempts > 2*float64(requests) || failures > requests {
		h.t.Fatalf("status counts %d requests (%d failed), Mirakl saw %.0f attempts", requests, failures, attempts)
	}
	if outcome, ok := status["last_request_outcome"]; ok && outcome == "token" && requests == failures {
		h.t.Fatal("status says the last request brought a token, and counts no success")
	}

	// mirakl/metrics: the same counts as status, and nothing secret.
	resp, err := h.backend.HandleRequest(h.ctx, &logical.Request{Operation: logical.ReadOperation, Path: "metrics", Storage: h.storage, MountPoint: "mirakl/"})
	if err != nil || resp == nil {
		h.t.Fatalf("metrics: %v", err)
	}
	body, _ := resp.Data[logical.HTTPRawBody].([]byte)
	for _, needle := range h.needles(false) {
		if bytes.Contains(body, []byte(needle)) {
			h.t.Fatalf("the metrics hold a secret or a token (%q)", needle)
		}
	}
	var total float64
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "mirakl_token_requests_total{") {
			var n float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &n); err == nil {
				total += n
			}
		}
	}
	if total != float64(requests) {
		h.t.Fatalf("the metrics count %.0f requests, status %d", total, requests)
	}
}
