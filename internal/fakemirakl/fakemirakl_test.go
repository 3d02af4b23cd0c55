package fakemirakl

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	testID     = "fake-test-id"
	testSecret = "fake-test-secret"
)

// goodForm is the body a client of Mirakl sends.
func goodForm() url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {testID}, "client_secret": {testSecret}}
}

// post sends a token request as a client of Mirakl would, after edit has
// had its way with it.
func post(t *testing.T, s *Server, form url.Values, edit func(*http.Request)) (status int, answer map[string]any) {
	t.Helper()
	status, answer, err := postContext(context.Background(), s, form, edit)
	if err != nil {
		t.Fatal(err)
	}
	return status, answer
}

func postContext(ctx context.Context, s *Server, form url.Values, edit func(*http.Request)) (status int, answer map[string]any, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.TokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if edit != nil {
		edit(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(body, &answer)
	return resp.StatusCode, answer, nil
}

func newFake(t *testing.T) *Server {
	t.Helper()
	s := New(testID, testSecret)
	t.Cleanup(s.Close)
	return s
}

func TestGoodRequestGetsAToken(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	status, answer := post(t, s, goodForm(), func(r *http.Request) {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		r.Header.Set("Accept", "application/json, */*;q=0.5")
	})
	if status != http.StatusOK || answer["access_token"] == nil {
		t.Fatalf("HTTP %d %v", status, answer)
	}
	if v := s.Violations(); len(v) != 0 {
		t.Fatalf("violations of a good request: %v", v)
	}
	seen := s.Seen()
	if len(seen) != 1 || seen[0].Method != http.MethodPost || seen[0].Form.Get("client_id") != testID || seen[0].Accept != "application/json, */*;q=0.5" {
		t.Fatalf("seen: %+v", seen)
	}
	// Wrong credentials are Mirakl's refusal, not a protocol violation.
	form := goodForm()
	form.Set("client_secret", "wrong")
	if status, answer := post(t, s, form, nil); status != http.StatusUnauthorized || answer["error"] != "invalid_client" {
		t.Fatalf("wrong secret: HTTP %d %v", status, answer)
	}
	if v := s.Violations(); len(v) != 0 {
		t.Fatalf("a wrong secret counted as a violation: %v", v)
	}
}

// Each departure from what Mirakl expects is answered as Mirakl would and
// recorded, whatever fault was queued.
func TestViolationsAreRefusedAndRecorded(t *testing.T) {
	t.Parallel()
	with := func(edit func(url.Values)) url.Values {
		f := goodForm()
		edit(f)
		return f
	}
	cases := []struct {
		name   string
		form   url.Values
		edit   func(*http.Request)
		status int
		code   string
		want   string
	}{
		{"no Accept", goodForm(), func(r *http.Request) { r.Header.Del("Accept") }, 400, "invalid_request", `Accept "", want application/json`},
		{"Accept of another type", goodForm(), func(r *http.Request) { r.Header.Set("Accept", "text/html") }, 400, "invalid_request", "want application/json"},
		{"no Content-Type", goodForm(), func(r *http.Request) { r.Header.Del("Content-Type") }, 400, "invalid_request", "want application/x-www-form-urlencoded"},
		{"JSON Content-Type", goodForm(), func(r *http.Request) { r.Header.Set("Content-Type", "application/json") }, 400, "invalid_request", `Content-Type "application/json"`},
		{"GET", goodForm(), func(r *http.Request) { r.Method = http.MethodGet }, 405, "", "method GET, want POST"},
		{"credentials in the query", goodForm(), func(r *http.Request) { r.URL.RawQuery = "client_secret=" + testSecret }, 400, "invalid_request", "a query string"},
		{"Basic credentials", goodForm(), func(r *http.Request) { r.SetBasicAuth(testID, testSecret) }, 400, "invalid_request", "an Authorization header"},
		{"missing client_secret", with(func(f url.Values) { f.Del("client_secret") }), nil, 400, "invalid_request", `form field "client_secret" missing`},
		{"empty client_id", with(func(f url.Values) { f.Set("client_id", "") }), nil, 400, "invalid_request", `form field "client_id" missing or empty`},
		{"unexpected field", with(func(f url.Values) { f.Set("scope", "all") }), nil, 400, "invalid_request", `unexpected form field "scope"`},
		{"duplicate field", with(func(f url.Values) { f.Add("client_id", testID) }), nil, 400, "invalid_request", `form field "client_id" 2 times`},
		{"other grant", with(func(f url.Values) { f.Set("grant_type", "password") }), nil, 400, "unsupported_grant_type", `grant_type "password"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newFake(t)
			s.Enqueue(RawToken(`{"token_type":"Bearer","access_token":"from-a-fault","expires_in":3599}`))
			status, answer := post(t, s, tc.form, tc.edit)
			if status != tc.status || (tc.code != "" && answer["error"] != tc.code) {
				t.Fatalf("HTTP %d %v, want %d %s", status, answer, tc.status, tc.code)
			}
			v := s.TakeViolations()
			if len(v) != 1 || !strings.HasPrefix(v[0], "request 1: ") || !strings.Contains(v[0], tc.want) {
				t.Fatalf("violations %q, want one that says %q", v, tc.want)
			}
			if again := s.Violations(); len(again) != 0 {
				t.Fatalf("TakeViolations left %v", again)
			}
			if seen := s.Seen(); len(seen) != 1 || len(seen[0].Violations) != 1 {
				t.Fatalf("seen: %+v", seen)
			}
			if st := s.Stats(); st.Refused != 1 || st.Issued != 0 || st.Faults != 0 {
				t.Fatalf("stats %+v: a violation must be refused before any fault", st)
			}
			// The queued fault is still there for the next, good request.
			if status, answer := post(t, s, goodForm(), nil); status != 200 || answer["access_token"] != "from-a-fault" {
				t.Fatalf("the good request after: HTTP %d %v", status, answer)
			}
		})
	}
}

func TestHangHoldsUntilReleasedOrClientGone(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	release := make(chan struct{})
	s.Enqueue(Hang(release), Hang(release))

	// A client that gives up: the fake notices.
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() {
		_, _, err := postContext(ctx, s, goodForm(), nil)
		errs <- err
	}()
	waitSeen(t, s, "the held request to arrive", func(r []Request) bool { return len(r) == 1 })
	cancel()
	select {
	case err := <-errs:
		if err == nil {
			t.Fatal("a cancelled request got an answer")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the cancelled client to return")
	}
	waitSeen(t, s, "the fake to notice the client gone", func(r []Request) bool { return r[0].Done && r[0].ClientGone })

	// A client that waits gets its answer once released.
	answered := make(chan int, 1)
	go func() {
		status, _, _ := postContext(context.Background(), s, goodForm(), nil)
		answered <- status
	}()
	waitSeen(t, s, "the second held request", func(r []Request) bool { return len(r) == 2 })
	select {
	case status := <-answered:
		t.Fatalf("answered HTTP %d before the release", status)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case status := <-answered:
		if status != http.StatusOK {
			t.Fatalf("HTTP %d after the release", status)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the released answer")
	}
	if r := s.Seen()[1]; r.ClientGone {
		t.Fatalf("the waiting client counted as gone: %+v", r)
	}
}

// What the fake wrote of a huge answer is what the client read, give or
// take the sockets' buffers.
func TestHugeCountsWhatWasWritten(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	const size = 64 << 20
	s.Enqueue(Huge(size), Huge(1<<20))

	// A client that reads 64 KiB and hangs up.
	req, _ := http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader(goodForm().Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	client := &http.Client{Transport: &http.Transport{}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	client.CloseIdleConnections()
	if !strings.HasPrefix(string(head), `{"padding":"xxx`) || len(head) != 64<<10 {
		t.Fatalf("read %d bytes starting %.20q", len(head), head)
	}
	waitSeen(t, s, "the huge answer to end", func(r []Request) bool { return r[0].Done })
	if r := s.Seen()[0]; !r.WriteFailed || r.BytesWritten >= size/2 {
		t.Fatalf("wrote %d of %d bytes to a client that read 64 KiB, write failed %v", r.BytesWritten, size, r.WriteFailed)
	}

	// A client that reads it all: every byte written.
	status, _ := post(t, s, goodForm(), nil)
	if status != http.StatusOK {
		t.Fatalf("HTTP %d", status)
	}
	waitSeen(t, s, "the second answer to end", func(r []Request) bool { return len(r) == 2 && r[1].Done })
	if r := s.Seen()[1]; r.WriteFailed || r.BytesWritten != 1<<20 {
		t.Fatalf("wrote %d of %d bytes, write failed %v", r.BytesWritten, 1<<20, r.WriteFailed)
	}
}

func waitSeen(t *testing.T, s *Server, what string, cond func([]Request) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for seen := s.Seen(); len(seen) == 0 || !cond(seen); seen = s.Seen() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for %s; seen %+v", what, s.Seen())
		}
		time.Sleep(time.Millisecond)
	}
}

// The fake's record of a long run: every request with its times, status,
// outcome and token, and every token with its issue and expiry times, so
// that a soak can judge the engine afterwards.
func TestRecordsOutcomesAndTokens(t *testing.T) {
	t.Parallel()
	s := New(testID, testSecret, WithExpiresIn(90))
	t.Cleanup(s.Close)
	before := time.Now()
	if status, _ := post(t, s, goodForm(), nil); status != http.StatusOK {
		t.Fatalf("HTTP %d", status)
	}
	s.Enqueue(HTMLError(http.StatusServiceUnavailable))
	post(t, s, goodForm(), nil)
	wrong := goodForm()
	wrong.Set("client_secret", "wrong")
	post(t, s, wrong, nil)
	release := make(chan struct{})
	s.Enqueue(Hang(release))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := postContext(ctx, s, goodForm(), nil); err == nil {
		t.Fatal("a held request answered before its client gave up")
	}
	defer close(release)

	tokens := s.Tokens()
	if len(tokens) != 1 || tokens[0].ExpiresIn != 90 || tokens[0].IssuedAt.Before(before) ||
		!tokens[0].ExpiresAt.Equal(tokens[0].IssuedAt.Add(90*time.Second)) || tokens[0].Token != s.IssuedTokens()[0] {
		t.Fatalf("tokens: %+v", tokens)
	}
	want := []struct {
		status  int
		outcome string
		token   string
	}{
		{http.StatusOK, OutcomeIssued, tokens[0].Token},
		{http.StatusServiceUnavailable, OutcomeFault, ""},
		{http.StatusUnauthorized, OutcomeRefused, ""},
		{0, OutcomeClientGone, ""},
	}
	var seen []Request
	deadline := time.Now().Add(5 * time.Second)
	for { // the held request's handler notices a moment after its client left
		seen = s.Seen()
		if len(seen) == len(want) && seen[len(seen)-1].Done || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(seen) != len(want) {
		t.Fatalf("seen %d requests, want %d", len(seen), len(want))
	}
	for i, w := range want {
		r := seen[i]
		if !r.Done || r.Status != w.status || r.Outcome != w.outcome || r.Token != w.token ||
			r.Arrived.Before(before) || r.Finished.Before(r.Arrived) {
			t.Errorf("request %d: done %v status %d outcome %q token %q arrived %v finished %v; want status %d outcome %q token %q",
				i+1, r.Done, r.Status, r.Outcome, r.Token, r.Arrived, r.Finished, w.status, w.outcome, w.token)
		}
	}
}
