package mirakl

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// ReadMetricsRaw reads mirakl/metrics and checks that it is the raw answer
// Vault's HTTP layer sends as it is: a 200 with the text format's content type.
func (e *testEnv) ReadMetricsRaw() string {
	e.t.Helper()
	resp, err := e.request(logical.ReadOperation, "metrics", nil)
	requireOK(e.t, resp, err)
	if resp == nil || resp.Secret != nil || resp.Auth != nil {
		e.t.Fatalf("metrics: want a raw response without secret or auth, got %#v", resp)
	}
	if got := resp.Data[logical.HTTPStatusCode]; got != http.StatusOK {
		e.t.Fatalf("metrics: status %v, want 200", got)
	}
	if got, want := resp.Data[logical.HTTPContentType], "text/plain; version=0.0.4; charset=utf-8"; got != want {
		e.t.Fatalf("metrics: content type %q, want %q", got, want)
	}
	body, ok := resp.Data[logical.HTTPRawBody].([]byte)
	if !ok {
		e.t.Fatalf("metrics: raw body is %T, want []byte", resp.Data[logical.HTTPRawBody])
	}
	if len(resp.Data) != 3 {
		e.t.Fatalf("metrics: want only status, content type and body in the response, got %v", resp.Data)
	}
	return string(body)
}

// ReadMetrics reads mirakl/metrics and parses it as Prometheus does.
func (e *testEnv) ReadMetrics() scrape {
	e.t.Helper()
	families, err := parseExposition(e.ReadMetricsRaw())
	if err != nil {
		e.t.Fatalf("metrics: the exposition does not parse: %v", err)
	}
	return scrape{t: e.t, families: families}
}

func parseExposition(text string) (map[string]*dto.MetricFamily, error) {
	parser := expfmt.NewTextParser(model.LegacyValidation)
	return parser.TextToMetricFamilies(bytes.NewBufferString(text))
}

// scrape is one parsed exposition.
type scrape struct {
	t        *testing.T
	families map[string]*dto.MetricFamily
}

// value is the sample of the series name{labels}, and whether there is one.
// labels are name, value pairs; the mount label is checked on every series.
func (s scrape) value(name string, labels ...string) (float64, bool) {
	s.t.Helper()
	family, ok := s.families[name]
	if !ok {
		return 0, false
	}
	want := map[string]string{labelMount: "mirakl"}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range family.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(want) {
			continue
		}
		match := true
		for k, v := range want {
			match = match && got[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// must is the sample of name{labels}, failing the test if there is none.
func (s scrape) must(name string, labels ...string) float64 {
	s.t.Helper()
	v, ok := s.value(name, labels...)
	if !ok {
		s.t.Fatalf("no sample of %s%v in the exposition", name, labels)
	}
	return v
}

// expect checks each series against its wanted value.
func (s scrape) expect(when string, want map[string]float64) {
	s.t.Helper()
	for series, v := range want {
		name, labels := splitSeries(series)
		if got := s.must(name, labels...); got != v {
			s.t.Errorf("%s: %s = %v, want %v", when, series, got, v)
		}
	}
}

// splitSeries turns `name{a="x",b="y"}` into name and its label pairs.
func splitSeries(series string) (string, []string) {
	name, rest, ok := strings.Cut(series, "{")
	if !ok {
		return series, nil
	}
	var labels []string
	for pair := range strings.SplitSeq(strings.TrimSuffix(rest, "}"), ",") {
		k, v, _ := strings.Cut(pair, "=")
		labels = append(labels, k, strings.Trim(v, `"`))
	}
	return name, labels
}

// Each family moves with what the fake did, and status counts the same.
func TestMetricsFollowRequestsAndReads(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	unix := func(t time.Time) float64 { return float64(t.Unix()) }
	counts := func(token, unavailable, refused, cached, fetched, failed float64) map[string]float64 {
		return map[string]float64{
			`mirakl_token_requests_total{outcome="token"}`:            token,
			`mirakl_token_requests_total{outcome="unavailable"}`:      unavailable,
			`mirakl_token_requests_total{outcome="refused"}`:          refused,
			`mirakl_token_requests_total{outcome="invalid_response"}`: 0,
			`mirakl_token_requests_total{outcome="cancelled"}`:        0,
			`mirakl_token_requests_total{outcome="error"}`:            0,
			`mirakl_token_request_duration_seconds`:                   token + unavailable + refused,
			`mirakl_token_reads_total{result="cached"}`:               cached,
			`mirakl_token_reads_total{result="fetched"}`:              fetched,
			`mirakl_token_reads_total{result="failed"}`:               failed,
		}
	}
	sameAsStatus := func(when string) {
		t.Helper()
		s, status := env.ReadMetrics(), env.ReadStatus()
		var requests, failures float64
		for _, outcome := range requestOutcomes {
			n := s.must(metricTokenRequests, "outcome", outcome)
			requests += n
			if outcome != "token" {
				failures += n
			}
		}
		if status["requests"] != uint64(requests) || status["failures"] != uint64(failures) {
			t.Errorf("%s: status shows %v requests, %v failures; metrics %v, %v", when, status["requests"], status["failures"], requests, failures)
		}
	}

	// Before any config: every series that alerts rate() is there at 0.
	s := env.ReadMetrics()
	s.expect("before any config", counts(0, 0, 0, 0, 0, 0))
	s.expect("before any config", map[string]float64{
		`mirakl_credentials_refused`:                   0,
		`mirakl_build_info{version="` + Version + `"}`: 1,
	})
	if v, ok := s.value(metricGoroutines); !ok || v < 1 {
		t.Errorf("%s = %v (present: %v), want the process's goroutines", metricGoroutines, v, ok)
	}
	for _, absent := range []string{metricTokenExpiry, metricLastSuccess} {
		if v, ok := s.value(absent); ok {
			t.Errorf("before any token: %s = %v, want no sample", absent, v)
		}
	}
	if _, err := env.ReadToken(nil); err != nil {
		t.Fatal(err)
	}
	env.ReadMetrics().expect("after a read of an unconfigured mount", counts(0, 0, 0, 0, 0, 1))

	// A config write verifies the credentials: one request, a token cached.
	verifiedAt := env.clock.Now()
	env.Configure(nil)
	env.ReadMetrics().expect("after the config write", map[string]float64{
		`mirakl_token_requests_total{outcome="token"}`: 1,
		`mirakl_token_expiry_timestamp_seconds`:        unix(verifiedAt.Add(3599 * time.Second)),
		`mirakl_last_success_timestamp_seconds`:        unix(verifiedAt),
	})

	env.MustReadToken()
	env.MustReadToken()
	env.ReadMetrics().expect("after two cached reads", counts(1, 0, 0, 2, 0, 1))

	env.clock.Advance(time.Hour) // the token expired: the next read waits for a new one
	fetchedAt := env.clock.Now()
	env.MustReadToken()
	env.ReadMetrics().expect("after a read that fetched", counts(2, 0, 0, 2, 1, 1))
	env.ReadMetrics().expect("after a read that fetched", map[string]float64{
		`mirakl_token_expiry_timestamp_seconds`: unix(fetchedAt.Add(3599 * time.Second)),
		`mirakl_last_success_timestamp_seconds`: unix(fetchedAt),
	})
	sameAsStatus("after a fetch")

	// Mirakl is down while nothing valid is cached: the read fails.
	env.clock.Advance(time.Hour)
	env.fake.FailRandomly(1, fakemirakl.HTMLError(http.StatusServiceUnavailable))
	if resp, err := env.ReadToken(nil); err == nil && !resp.IsError() {
		t.Fatal("a read with Mirakl down and the token expired succeeded")
	}
	s = env.ReadMetrics()
	s.expect("after Mirakl failed", counts(2, 1, 0, 2, 1, 2))
	s.expect("after Mirakl failed", map[string]float64{
		`mirakl_last_success_timestamp_seconds`: unix(fetchedAt),
		// The expired token is still the cached one: an alert sees how long ago.
		`mirakl_token_expiry_timestamp_seconds`: unix(fetchedAt.Add(3599 * time.Second)),
		`mirakl_credentials_refused`:            0,
	})
	sameAsStatus("after a failure")

	// Mirakl refuses the credentials: the gauge says so until a config write.
	env.fake.FailRandomly(0, fakemirakl.Fault{})
	env.fake.SetCredentials(testClientID, "rotated-at-mirakl")
	env.clock.Advance(time.Minute) // past the backoff
	if resp, err := env.ReadToken(nil); err == nil && !resp.IsError() {
		t.Fatal("a read with refused credentials succeeded")
	}
	env.ReadMetrics().expect("after a refusal", counts(2, 1, 1, 2, 1, 3))
	env.clock.Advance(time.Hour) // long past the 30s hold: background attempts stay stopped
	env.ReadMetrics().expect("an hour after a refusal", map[string]float64{`mirakl_credentials_refused`: 1})
	sameAsStatus("after a refusal")

	env.fake.SetCredentials(testClientID, testClientSecret)
	env.Configure(nil)
	env.ReadMetrics().expect("after a new config", map[string]float64{
		`mirakl_credentials_refused`:                   0,
		`mirakl_token_requests_total{outcome="token"}`: 3,
	})
	sameAsStatus("after a new config")
}

// The mount label is the path the request came in by, whatever the mount is called.
func TestMetricsLabelEverySeriesWithTheMount(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(nil)
	resp, err := env.backend.HandleRequest(env.ctx, &logical.Request{
		Operation: logical.ReadOperation, Path: "metrics", Storage: env.storage, MountPoint: "team-a/mirakl-acme/",
	})
	requireOK(t, resp, err)
	families, err := parseExposition(string(resp.Data[logical.HTTPRawBody].([]byte)))
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for name, family := range families {
		for _, m := range family.Metric {
			series++
			mounts := 0
			for _, l := range m.Label {
				if l.GetName() == labelMount {
					mounts++
					if l.GetValue() != "team-a/mirakl-acme" {
						t.Errorf("%s: mount=%q, want team-a/mirakl-acme", name, l.GetValue())
					}
				}
			}
			if mounts != 1 {
				t.Errorf("%s %v: %d mount labels, want 1", name, m.Label, mounts)
			}
		}
	}
	if len(families) != 8 || series < 13 {
		t.Errorf("%d families with %d series: want the README's 9 families but mirakl_audience_refused (no audience here)", len(families), series)
	}
}

// No secret, token or fingerprint appears in the exposition, in any spelling.
func TestMetricsHoldNoSecret(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(nil)
	env.MustReadToken()
	env.backend.forgetToken()
	env.MustReadToken()
	env.fake.SetCredentials(testClientID, "rotated-at-mirakl")
	env.backend.forgetToken()
	_, _ = env.ReadToken(nil) // refused: the fake's answer quotes nothing of ours, but a message might

	text := env.ReadMetricsRaw()
	needles := append(secretSpellings(testClientSecret), testClientID, testTokenPrefix)
	for _, token := range env.fake.IssuedTokens() {
		needles = append(needles, token, tokenFingerprint(token))
	}
	for _, n := range needles {
		if strings.Contains(text, n) {
			t.Errorf("the exposition contains %q:\n%s", n, text)
		}
	}
}
