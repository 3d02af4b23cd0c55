package mirakl

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// What singleflight and the request counts hide: which context the shared
// request runs on, what it costs in goroutines, the failure count that
// spaces background attempts, and how much of an answer is read.

// releaser is a Hang fault's release, safe to call more than once.
func releaser(t *testing.T) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	return ch, release
}

type readResult struct {
	resp *logical.Response
	err  error
}

// readAsync reads mount/token with ctx in a goroutine.
func (e *testEnv) readAsync(ctx context.Context) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		resp, err := e.backend.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: e.storage, MountPoint: "mirakl/"})
		ch <- readResult{resp, err}
	}()
	return ch
}

// readWithin reads mount/token, failing the test if the read does not
// return within waitDeadline (as a read that waits on a hanging Mirakl would
// not) or fails.
func (e *testEnv) readWithin(what string) *logical.Response {
	e.t.Helper()
	r := receive(e.t, what, e.readAsync(e.ctx))
	requireOK(e.t, r.resp, r.err)
	return r.resp
}

// A reader that gives up while the shared request waits on Mirakl stops
// waiting; the request, which runs on the mount's context and not on the
// first reader's, goes on, and the readers beside it get its token.
func TestReaderCancelLeavesTheSharedRequestToTheOthers(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "request_timeout": "5m"})
	hold, release := releaser(t)
	env.fake.Enqueue(fakemirakl.Hang(hold))

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	leaving := env.readAsync(ctx) // the first reader: the shared request starts with it
	waitSeenAt(t, env.fake, "the shared request to reach Mirakl", func(r []fakemirakl.Request) bool { return len(r) == 1 })
	staying := make([]<-chan readResult, 5)
	for i := range staying {
		staying[i] = env.readAsync(context.Background())
	}
	// Time for the others to join the request. One that joins later finds
	// the token cached or starts its own request: the checks below hold
	// either way, so a slow machine weakens the test but cannot fail it.
	time.Sleep(50 * time.Millisecond)

	cancel()
	if r := receive(t, "the cancelled reader to stop waiting", leaving); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("the cancelled reader: %#v, %v; want its cancellation", r.resp, r.err)
	}
	release()
	var tokens []any
	for i, ch := range staying {
		r := receive(t, "a reader beside the cancelled one", ch)
		if r.err != nil || r.resp == nil || r.resp.IsError() {
			t.Fatalf("reader %d beside the cancelled one: %#v, %v", i, r.resp, r.err)
		}
		tokens = append(tokens, r.resp.Data["access_token"])
	}
	waitSeenAt(t, env.fake, "the shared request to end", func(r []fakemirakl.Request) bool { return r[0].Done })
	if seen := env.fake.Seen(); len(seen) != 1 || seen[0].ClientGone {
		t.Fatalf("the reader's cancellation reached the shared request: %+v", seen)
	}
	for i, tok := range tokens {
		if tok != tokens[0] {
			t.Fatalf("reader %d got another token", i)
		}
	}
}

// Background refreshes cost one goroutine per mount however many readers
// want one, and every goroutine ends once they settle.
// Not parallel: it counts the process's goroutines.
func TestGoroutinesReturnToBaseline(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(nil) // verify: the token is cached
	env.MustReadToken()
	baseline := settledGoroutines(t, env, -1)

	hold, release := releaser(t)
	env.fake.Enqueue(fakemirakl.Hang(hold))
	env.clock.Advance(48*time.Minute + 30*time.Second) // in the refresh window, above min_ttl
	for range 50 {
		env.readWithin("a read of the cached token") // each would start a refresh; the one running claims them all
	}
	waitSeenAt(t, env.fake, "the background request to reach Mirakl", func(r []fakemirakl.Request) bool { return len(r) == 2 })
	// The refresh, its flight, the connection's goroutines on both sides and
	// the client's timer: a few, not one per reader.
	if n := runtime.NumGoroutine(); n > baseline+15 {
		t.Fatalf("%d goroutines while one background request waits, %d before: one per reader?", n, baseline)
	}
	release()
	env.settle()

	// Cold reads, all at once, share one request.
	env.backend.forgetToken()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if resp, err := env.ReadToken(nil); err != nil || resp.IsError() {
				t.Errorf("cold read: %#v, %v", resp, err)
			}
		})
	}
	waitGroup(t, "the cold reads", &wg)
	env.settle()
	settledGoroutines(t, env, baseline)
}

// settledGoroutines closes the client's idle connections and waits for the
// goroutine count to stop changing, and, when want is not negative, to be
// at most want. It returns the count.
func settledGoroutines(t *testing.T, env *testEnv, want int) int {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	last, steady := -1, 0
	for {
		if mount := env.backend.loadedMount(); mount != nil {
			mount.client.close()
		}
		n := runtime.NumGoroutine()
		if n == last {
			steady++
		} else {
			last, steady = n, 0
		}
		if steady >= 5 && (want < 0 || n <= want) {
			return n
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("timed out after %s waiting for the goroutines to return to %d: %d remain\n%s", waitDeadline, want, n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// After a success, the failure count starts over: the next failure's
// backoff is the first step (5s, jittered down to as little as half), not
// the minute that five failures in a row had reached.
func TestBackoffStartsOverAfterASuccess(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.backend.retries = retryPolicy{MaxRetries: 0} // one request per attempt
	env.Configure(map[string]any{"verify": false, "request_timeout": "10s"})
	env.MustReadToken()
	env.clock.Advance(50 * time.Minute) // in the refresh window
	env.fake.FailRandomly(1, fakemirakl.HTMLError(http.StatusServiceUnavailable))
	for range 5 {
		env.MustReadToken()
		env.settle()
		env.clock.Advance(time.Minute) // past any backoff
	}
	if got := env.fake.Requests(); got != 6 {
		t.Fatalf("five minutes of outage made %d attempts, want 5", got-1)
	}

	env.fake.FailRandomly(0, fakemirakl.Fault{})
	env.MustReadToken()
	env.settle()
	if got := env.fake.Stats().Issued; got != 2 {
		t.Fatalf("the attempt after the outage did not bring a token (%d issued)", got)
	}

	env.clock.Advance(50 * time.Minute) // the new token in its refresh window
	env.fake.FailRandomly(1, fakemirakl.HTMLError(http.StatusServiceUnavailable))
	failedAt := env.clock.Now()
	env.MustReadToken()
	env.settle()
	status := env.ReadStatus()
	next, err := time.Parse(time.RFC3339, status["next_attempt"].(string))
	if err != nil {
		t.Fatalf("status: %v (%v)", status, err)
	}
	if wait := next.Sub(failedAt); wait > 5*time.Second {
		t.Fatalf("the first failure after a success waits %s for the next attempt, want the first step (at most 5s)", wait)
	}
}

// The limit on an answer fires while it is read, not after: of an answer of
// 64 MiB the engine reads its 256 KiB and hangs up, and the fake fails to
// write the rest.
func TestAnswerBeyondTheLimitIsNotReadToItsEnd(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "request_timeout": "30s"})
	const size = 64 << 20
	env.fake.Enqueue(fakemirakl.Huge(size))
	resp, err := env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "response body larger than 256 KiB")
	waitSeenAt(t, env.fake, "the huge answer to end", func(r []fakemirakl.Request) bool { return r[0].Done })
	// What the sockets buffer on loopback comes on top of what was read.
	if r := env.fake.Seen()[0]; !r.WriteFailed || r.BytesWritten > size/4 {
		t.Fatalf("the fake wrote %d of %d bytes (write failed: %v): the engine read past its limit", r.BytesWritten, size, r.WriteFailed)
	}
}
