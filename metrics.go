package mirakl

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// The mount's metrics, as mirakl/metrics shows them. Alert rules
// (examples/prometheus) depend on these names and labels: renaming one
// breaks them.
const (
	metricTokenRequests  = "mirakl_token_requests_total" //nolint:gosec // G101: a metric name, not a credential
	metricRequestSeconds = "mirakl_token_request_duration_seconds"
	metricTokenReads     = "mirakl_token_reads_total"              //nolint:gosec // G101: a metric name, not a credential
	metricTokenExpiry    = "mirakl_token_expiry_timestamp_seconds" //nolint:gosec // G101: a metric name, not a credential
	metricLastSuccess    = "mirakl_last_success_timestamp_seconds"
	metricRefused        = "mirakl_credentials_refused"
	metricBuildInfo      = "mirakl_build_info"

	// labelMount is on every series: the mount's path, as the scraping
	// request names it.
	labelMount = "mount"
)

// requestOutcomes are the classes of describeOutcome, the one voice on how a
// request to Mirakl ended: each is a series from the start, so that rate() and
// increase() see the first failure.
var requestOutcomes = []string{"token", "unavailable", "refused", "invalid_response", "cancelled", "error"}

// Read results of mirakl/token: served from the cache, fetched from Mirakl
// while the reader waited, or no token.
const (
	readCached  = "cached"
	readFetched = "fetched"
	readFailed  = "failed"
)

// requestBuckets spans one token request, retries included: tens of
// milliseconds when Mirakl answers at once, up to request_timeout (at most 5m)
// when it does not.
var requestBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// metricsFormat is what Vault's own sys/metrics?format=prometheus answers.
var metricsFormat = expfmt.NewFormat(expfmt.TypeTextPlain)

// mountMetrics is the one count of a mount's dealings with Mirakl and its
// readers since the plugin started: mirakl/status and mirakl/metrics both show
// it. Counting is lock-free on the read path (a cached read adds one atomic
// increment); the registry is the mount's own, never Prometheus's global one.
type mountMetrics struct {
	registry *prometheus.Registry

	requests  map[string]prometheus.Counter // by outcome, one for each of requestOutcomes
	durations prometheus.Histogram
	// Reads by result, each bound to its label value once: counting a read
	// is then one atomic increment.
	readsCached, readsFetched, readsFailed prometheus.Counter

	// mu keeps the counts and the last request in step for status; only
	// requests to Mirakl take it, never a read.
	mu          sync.Mutex
	lastAt      time.Time
	lastErr     error // nil: the last request brought a token
	lastSuccess time.Time
}

// newMountMetrics registers the mount's metrics; the gauges are read from
// the backend's memory at each scrape.
func newMountMetrics(b *backend) *mountMetrics {
	m := &mountMetrics{
		registry: prometheus.NewRegistry(),
		requests: map[string]prometheus.Counter{},
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricTokenRequests,
		Help: "Token requests to Mirakl by how they ended (as mirakl/status names it), retries included in one request.",
	}, []string{"outcome"})
	for _, outcome := range requestOutcomes {
		m.requests[outcome] = requests.WithLabelValues(outcome)
	}
	m.durations = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    metricRequestSeconds,
		Help:    "Time one token request to Mirakl took, retries included.",
		Buckets: requestBuckets,
	})
	reads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricTokenReads,
		Help: "Reads of <mount>/token: served from the cache, fetched from Mirakl while the reader waited, or failed.",
	}, []string{"result"})
	m.readsCached = reads.WithLabelValues(readCached)
	m.readsFetched = reads.WithLabelValues(readFetched)
	m.readsFailed = reads.WithLabelValues(readFailed)
	m.registry.MustRegister(requests, m.durations, reads, &stateCollector{b: b, m: m})
	return m
}

// requestDone counts a token request to Mirakl that ran from started to
// ended, and how it ended.
func (m *mountMetrics) requestDone(started, ended time.Time, err error) {
	outcome := "token"
	if err != nil {
		outcome, _ = describeOutcome(err) // its errors.As costs an allocation
	}
	counter, known := m.requests[outcome]
	if !known {
		counter = m.requests["error"] // a class added to describeOutcome but not to requestOutcomes
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	counter.Inc()
	m.durations.Observe(ended.Sub(started).Seconds())
	m.lastAt, m.lastErr = ended, err
	if err == nil {
		m.lastSuccess = ended
	}
}

// tokenRead counts a read of <mount>/token: every read calls it, so the
// cached case is one atomic increment.
func (m *mountMetrics) tokenRead(fetched bool, err error) {
	switch {
	case err != nil:
		m.readsFailed.Inc()
	case fetched:
		m.readsFetched.Inc()
	default:
		m.readsCached.Inc()
	}
}

// requestsSnapshot is what mirakl/status shows of the requests to Mirakl,
// from the same counters that mirakl/metrics exposes.
func (m *mountMetrics) requestsSnapshot() (requests, failures uint64, lastAt time.Time, lastErr error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for outcome, c := range m.requests {
		n := counterValue(c)
		requests += n
		if outcome != "token" {
			failures += n
		}
	}
	return requests, failures, m.lastAt, m.lastErr
}

func counterValue(c prometheus.Counter) uint64 {
	var v dto.Metric
	if err := c.Write(&v); err != nil {
		return 0 // a counter's Write does not fail
	}
	return uint64(v.GetCounter().GetValue())
}

// exposition is the mount's metrics in the Prometheus text format, every
// series labelled with the mount's path.
//
// The path comes from the scraping request rather than from the mount's
// setup, which does not know it (a BackendConfig has no path), and so stays
// right after `vault secrets move`.
func (m *mountMetrics) exposition(mountPath string) ([]byte, error) {
	families, err := m.registry.Gather()
	if err != nil {
		return nil, fmt.Errorf("gathering the metrics: %w", err)
	}
	name, value := labelMount, strings.TrimSuffix(mountPath, "/")
	mount := &dto.LabelPair{Name: &name, Value: &value}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, metricsFormat)
	for _, family := range families {
		for _, metric := range family.Metric {
			metric.Label = append(metric.Label, mount)
			slices.SortFunc(metric.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
		}
		if err := enc.Encode(family); err != nil {
			return nil, fmt.Errorf("encoding %s: %w", family.GetName(), err)
		}
	}
	return buf.Bytes(), nil
}

// stateCollector reads the gauges from memory at each scrape: the cached
// token's expiry, a refusal, the last success and the build.
type stateCollector struct {
	b *backend
	m *mountMetrics
}

var (
	descTokenExpiry = prometheus.NewDesc(metricTokenExpiry,
		"When the cached token expires (Unix seconds); no sample while no token is cached.", nil, nil)
	descLastSuccess = prometheus.NewDesc(metricLastSuccess,
		"When a token request to Mirakl last succeeded (Unix seconds); no sample before the first.", nil, nil)
	descRefused = prometheus.NewDesc(metricRefused,
		"1 while Mirakl's last answer refused the credentials and no request has succeeded since, else 0.", nil, nil)
	descBuildInfo = prometheus.NewDesc(metricBuildInfo,
		"The plugin's version, as a label; always 1.", []string{"version"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descTokenExpiry
	ch <- descLastSuccess
	ch <- descRefused
	ch <- descBuildInfo
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	refused := 0.0
	if mount := c.b.loadedMount(); mount != nil {
		if tok := mount.cache.current(); tok != nil {
			ch <- prometheus.MustNewConstMetric(descTokenExpiry, prometheus.GaugeValue, unixSeconds(tok.expiresAt))
		}
		if mount.cache.gate.status().refused {
			refused = 1
		}
	}
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.GaugeValue, refused)

	c.m.mu.Lock()
	lastSuccess := c.m.lastSuccess
	c.m.mu.Unlock()
	if !lastSuccess.IsZero() {
		ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, unixSeconds(lastSuccess))
	}
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, Version)
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
