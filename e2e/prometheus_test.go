//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// scrapeTimeout bounds each wait for Prometheus to have scraped something:
// it scrapes every second here, and evaluates the rules as often.
const scrapeTimeout = 60 * time.Second

// A real Prometheus, with the README's scrape config, policy and alert rules
// (examples/prometheus), scrapes a mount's metrics through a real Vault with
// a token that may read them and nothing else; what it stores follows what
// the fake did, and an alert of the example rules fires on real metrics.
func TestPrometheusScrapesMountMetricsThroughVault(t *testing.T) {
	forEachServer(t, testPrometheusScrapesMountMetricsThroughVault)
}

func testPrometheusScrapesMountMetricsThroughVault(t *testing.T, server vaulttest.Kind) {
	// Tokens of 5 minutes: within the 10 minutes of MiraklTokenExpiringSoon,
	// and long enough that none is fetched again during the test.
	const expiresIn = 5 * time.Minute
	e := newEnvFor(t, server, vaulttest.Options{})
	acme := e.newAccount("acme", fakemirakl.WithExpiresIn(int(expiresIn.Seconds())))
	e.mount("mirakl")
	e.configure("mirakl", acme, "request_timeout=3s") // verifies: one request, a token cached
	root := e.root()

	// The scraper's token, of the example policy, in the file the example
	// scrape config names.
	root.MustRun(t, "policy", "write", "mirakl-metrics", filepath.Join(repoRoot, "examples/prometheus/mirakl-metrics.hcl"))
	scraperToken := strings.TrimSpace(root.MustRun(t, "token", "create", "-policy=mirakl-metrics", "-field=token"))
	dir := filepath.Join(e.dir, "prometheus")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tokenFile := writeFile(t, filepath.Join(dir, "vault-token"), scraperToken+"\n")
	writeFile(t, filepath.Join(dir, "mirakl-alerts.yml"), readExample(t, "prometheus/mirakl-alerts.yml"))
	config := writeFile(t, filepath.Join(dir, "prometheus.yml"), replaceAll(t, readExample(t, "prometheus/prometheus.yml"),
		"scrape_interval: 30s", "scrape_interval: 1s",
		"evaluation_interval: 30s", "evaluation_interval: 1s",
		"scheme: https", "scheme: http", // the dev server listens on plain HTTP
		"/etc/prometheus/vault-token", tokenFile,
		"vault.example.com:8200", strings.TrimPrefix(e.vault.Addr, "http://"),
	))
	prom := vaulttest.StartPrometheus(t, config, vaulttest.FreePort(t))
	e.extraLog = append(e.extraLog, prom.LogPath)
	p := newPromClient(t, prom.URL)

	p.waitFor("the first successful scrape of mirakl/metrics", `up{job="vault-mirakl",mount="mirakl"} == 1`, atLeast(1))

	t.Run("the example rules load", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rules, err := p.api.Rules(ctx, nil)
		if err != nil {
			t.Fatalf("GET /api/v1/rules: %v", err)
		}
		var names []string
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				if a, ok := r.(promv1.AlertingRule); ok {
					names = append(names, a.Name)
				}
			}
		}
		slices.Sort(names)
		want := []string{"MiraklAudienceRefused", "MiraklCredentialsRefused", "MiraklMetricsAbsent", "MiraklMetricsScrapeFailing", "MiraklTokenExpiringSoon", "MiraklTokenRequestsFailing"}
		if !slices.Equal(names, want) {
			t.Errorf("alerting rules loaded: %v, want %v", names, want)
		}
	})

	t.Run("every family is stored with the mount label", func(t *testing.T) {
		names := map[string]bool{}
		for _, s := range p.query(`count by (__name__) ({__name__=~"mirakl_.+", job="vault-mirakl", mount="mirakl"})`) {
			names[string(s.Metric[model.MetricNameLabel])] = true
		}
		for _, want := range []string{
			"mirakl_token_requests_total", "mirakl_token_request_duration_seconds_bucket", "mirakl_token_request_duration_seconds_count",
			"mirakl_token_reads_total", "mirakl_token_expiry_timestamp_seconds", "mirakl_last_success_timestamp_seconds",
			"mirakl_credentials_refused", "mirakl_build_info",
		} {
			if !names[want] {
				t.Errorf("Prometheus has no %s{mount=\"mirakl\"}; it has %v", want, names)
			}
		}
		if renamed := p.query(`{__name__=~"mirakl_.+", exported_mount!=""}`); len(renamed) > 0 {
			t.Errorf("series with exported_mount (honor_labels lost?): %v", renamed)
		}
		p.waitFor("the build info", fmt.Sprintf(`mirakl_build_info{mount="mirakl",version=%q}`, e.vault.Plugin().Version), atLeast(1))
	})

	t.Run("the requests counter and the expiry gauge", func(t *testing.T) {
		p.waitFor("the config write's request", `mirakl_token_requests_total{mount="mirakl",outcome="token"}`, equal(1))
		tok := readToken(t, root, "mirakl")
		issued, _ := acme.fake.IssuedAt(tok.accessToken())
		p.waitFor("the cached read", `mirakl_token_reads_total{mount="mirakl",result="cached"}`, equal(1))
		// The fake's issue time and the engine's differ by the exchange:
		// well under a second on loopback.
		expiry := float64(issued.Add(expiresIn).UnixNano()) / 1e9
		p.waitFor("the cached token's expiry", `mirakl_token_expiry_timestamp_seconds{mount="mirakl"}`,
			func(v float64) bool { return v > expiry-1 && v < expiry+1 })
		if got := p.value(`sum(mirakl_token_requests_total{mount="mirakl",outcome!="token"})`); got != 0 {
			t.Errorf("failed requests before any failure: %v", got)
		}
	})

	t.Run("the failure counter rises after the fake fails", func(t *testing.T) {
		acme.fake.FailRandomly(1, fakemirakl.HTMLError(http.StatusServiceUnavailable))
		defer acme.fake.FailRandomly(0, fakemirakl.Fault{})
		// An update verifies the credentials again, retrying within request_timeout.
		if r := root.Run(t, "write", "mirakl/config", "request_timeout=3s"); r.ExitCode == 0 || !strings.Contains(r.Output(), "unavailable") {
			t.Fatalf("a config write with Mirakl down: exit %d:\n%s", r.ExitCode, r.Output())
		}
		p.waitFor("the failed request", `mirakl_token_requests_total{mount="mirakl",outcome="unavailable"}`, equal(1))
		p.waitFor("its duration in the histogram", `mirakl_token_request_duration_seconds_count{mount="mirakl"}`, equal(2))
		// The token expires within 10 minutes and a request failed: the
		// example rule fires (it has no "for").
		p.waitFor("MiraklTokenExpiringSoon to fire",
			`ALERTS{alertname="MiraklTokenExpiringSoon",alertstate="firing",mount="mirakl",severity="critical"}`, equal(1))
		var status struct {
			Data map[string]any `json:"data"`
		}
		root.MustRunJSON(t, &status, "read", "-format=json", "mirakl/status")
		if status.Data["requests"] != float64(2) || status.Data["failures"] != float64(1) {
			t.Errorf("mirakl/status shows %v requests, %v failures; Prometheus 2 and 1", status.Data["requests"], status.Data["failures"])
		}
	})

	t.Run("the exposition as Vault serves it", func(t *testing.T) {
		status, header, body := getMetrics(t, e.vault.Addr, scraperToken)
		if status != http.StatusOK {
			t.Fatalf("GET /v1/mirakl/metrics with the scraper's token: HTTP %d: %s", status, body)
		}
		if got, want := header.Get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8"; got != want {
			t.Errorf("Content-Type %q, want %q", got, want)
		}
		// Kept for the leak check: no secret and no token in what Prometheus stores.
		e.extraLog = append(e.extraLog, writeFile(t, filepath.Join(dir, "exposition.txt"), body))

		check := exec.Command(vaulttest.PromtoolBin(t), "check", "metrics")
		check.Stdin = strings.NewReader(body)
		if out, err := check.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v:\n%s\nthe exposition:\n%s", err, out, body)
		}
	})

	t.Run("only the scraper's policy reads the metrics", func(t *testing.T) {
		_, readerToken := e.readerTokenFile("reader")
		reader, err := os.ReadFile(readerToken)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ who, token string }{
			{"the reader policy's token", strings.TrimSpace(string(reader))},
			{"no token", ""},
		} {
			if status, _, body := getMetrics(t, e.vault.Addr, c.token); status != http.StatusForbidden {
				t.Errorf("GET /v1/mirakl/metrics with %s: HTTP %d, want 403: %s", c.who, status, body)
			}
		}
		scraper := e.vault.CLIWithToken(scraperToken)
		denied(t, scraper.Run(t, "read", "mirakl/token"))
		denied(t, scraper.Run(t, "read", "mirakl/status"))
		denied(t, scraper.Run(t, "read", "mirakl/config"))
	})

	if prom.Exited() {
		t.Errorf("prometheus exited: %v", prom.ExitError())
	}
}

// getMetrics is Prometheus's request: GET /v1/mirakl/metrics with the token
// as a Bearer credential ("" for none).
func getMetrics(t *testing.T, vaultAddr, token string) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, vaultAddr+"/v1/mirakl/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/mirakl/metrics: %v", err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	if _, err := io.Copy(&body, resp.Body); err != nil {
		t.Fatalf("reading /v1/mirakl/metrics: %v", err)
	}
	return resp.StatusCode, resp.Header, body.String()
}

// promClient queries the test's Prometheus through its HTTP API.
type promClient struct {
	t   *testing.T
	api promv1.API
}

func newPromClient(t *testing.T, url string) *promClient {
	t.Helper()
	c, err := promapi.NewClient(promapi.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	return &promClient{t: t, api: promv1.NewAPI(c)}
}

// query runs an instant query now and returns its samples.
func (p *promClient) query(q string) model.Vector {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, _, _, err := p.api.Query(ctx, q, time.Now())
	if err != nil {
		p.t.Fatalf("query %s: %v", q, err)
	}
	vector, ok := v.(model.Vector)
	if !ok {
		p.t.Fatalf("query %s: a %s, want a vector", q, v.Type())
	}
	return vector
}

// value is the one sample of q, failing the test unless there is exactly one.
func (p *promClient) value(q string) float64 {
	p.t.Helper()
	v := p.query(q)
	if len(v) != 1 {
		p.t.Fatalf("query %s: %d samples, want 1: %v", q, len(v), v)
	}
	return float64(v[0].Value)
}

// waitFor waits, up to scrapeTimeout, until q has exactly one sample and ok
// holds for its value; on timeout it says what it waited for and what q last
// returned.
func (p *promClient) waitFor(what, q string, ok func(float64) bool) {
	p.t.Helper()
	deadline := time.Now().Add(scrapeTimeout)
	for {
		last := p.query(q)
		if len(last) == 1 && ok(float64(last[0].Value)) {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out after %s waiting for %s: %s last returned %v", scrapeTimeout, what, q, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func equal(want float64) func(float64) bool   { return func(v float64) bool { return v == want } }
func atLeast(want float64) func(float64) bool { return func(v float64) bool { return v >= want } }
