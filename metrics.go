package mirakl

import (
	"bytes"
	"fmt"
	"runtime"
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
	metricTokenRequests   = "mirakl_token_requests_total" //nolint:gosec // G101: a metric name, not a credential
	metricRequestSeconds  = "mirakl_token_request_duration_seconds"
	metricTokenReads      = "mirakl_token_reads_total"              //nolint:gosec // G101: a metric name, not a credential
	metricTokenExpiry     = "mirakl_token_expiry_timestamp_seconds" //nolint:gosec // G101: a metric name, not a credential
	metricLastSuccess     = "mirakl_last_success_timestamp_seconds"
	metricRefused         = "mirakl_credentials_refused"
	metricAudienceRefused = "mirakl_audience_refused"
	metricBuildInfo       = "mirakl_build_info"
	metricGoroutines      = "mirakl_plugin_goroutines"

	// labelMount is on every series: the mount's path, as the scraping
	// request names it.
	labelMount = "mount"
	// labelRole is on the series of one token: the role's name, empty (which
	// Prometheus reads as no label) for the default token, mirakl/token.
	labelRole = "role"
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
// The series of one token carry its role (roleMetrics): they exist for the
// default token from the start, and for a role from its first use until it is
// deleted, never for a name that no role has.
type mountMetrics struct {
	registry *prometheus.Registry

	requests  *prometheus.CounterVec // by outcome and role
	reads     *prometheus.CounterVec // by result and role
	durations prometheus.Histogram

	// mu keeps the counts and the last request in step for status; only
	// requests to Mirakl and a role's first use take it, never a read.
	mu                     sync.Mutex
	requestCount, failures uint64
	lastAt                 time.Time
	lastErr                error // nil: the last request brought a token
	lastSuccess            time.Time
	roles                  map[string]*roleMetrics
	defaultRoleMetrics     *roleMetrics
}

// roleMetrics is one token's series (token_source.go), each bound to its
// label values once: counting is then one atomic increment.
type roleMetrics struct {
	role                                   string
	requests                               map[string]prometheus.Counter // by outcome, one for each of requestOutcomes
	readsCached, readsFetched, readsFailed prometheus.Counter

	// under mountMetrics.mu
	requestCount, failures uint64
	lastAt                 time.Time
	lastErr                error
}

// newMountMetrics registers the mount's metrics; the gauges are read from
// the backend's memory at each scrape.
func newMountMetrics(b *backend) *mountMetrics {
	m := &mountMetrics{
		registry: prometheus.NewRegistry(),
		roles:    map[string]*roleMetrics{},
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricTokenRequests,
		Help: "Token requests to Mirakl by how they ended (as mirakl/status names it) and role, retries included in one request.",
	}, []string{"outcome", labelRole})
	m.durations = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    metricRequestSeconds,
		Help:    "Time one token request to Mirakl took, retries included.",
		Buckets: requestBuckets,
	})
	m.reads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricTokenReads,
		Help: "Reads of <mount>/token and <mount>/token/<role>: served from the cache, fetched from Mirakl while the reader waited, or failed.",
	}, []string{"result", labelRole})
	m.defaultRoleMetrics = m.forRole(defaultRole)
	m.registry.MustRegister(m.requests, m.durations, m.reads, &stateCollector{b: b, m: m})
	return m
}

// forRole is role's series, made on its first use.
func (m *mountMetrics) forRole(role string) *roleMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rm := m.roles[role]; rm != nil {
		return rm
	}
	rm := &roleMetrics{role: role, requests: map[string]prometheus.Counter{}}
	for _, outcome := range requestOutcomes {
		rm.requests[outcome] = m.requests.WithLabelValues(outcome, role)
	}
	rm.readsCached = m.reads.WithLabelValues(readCached, role)
	rm.readsFetched = m.reads.WithLabelValues(readFetched, role)
	rm.readsFailed = m.reads.WithLabelValues(readFailed, role)
	m.roles[role] = rm
	return rm
}

// dropRole removes a deleted role's series.
func (m *mountMetrics) dropRole(role string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.roles, role)
	m.requests.DeletePartialMatch(prometheus.Labels{labelRole: role})
	m.reads.DeletePartialMatch(prometheus.Labels{labelRole: role})
}

// requestDone counts a token request of rm's token to Mirakl that ran from
// started to ended, and how it ended.
func (m *mountMetrics) requestDone(rm *roleMetrics, started, ended time.Time, err error) {
	outcome := "token"
	if err != nil {
		outcome, _ = describeOutcome(err) // its errors.As costs an allocation
	}
	counter, known := rm.requests[outcome]
	if !known {
		counter = rm.requests["error"] // a class added to describeOutcome but not to requestOutcomes
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	counter.Inc()
	m.durations.Observe(ended.Sub(started).Seconds())
	m.requestCount++
	rm.requestCount++
	if err != nil {
		m.failures++
		rm.failures++
	}
	m.lastAt, m.lastErr = ended, err
	rm.lastAt, rm.lastErr = ended, err
	if err == nil {
		m.lastSuccess = ended
	}
}

// tokenRead counts a read of role's token, served by src (nil: the read
// failed before it had one): every read calls it, so the cached case is one
// atomic increment. A read of a role that does not exist is not counted, so
// that no reader can make series of names no role has.
func (m *mountMetrics) tokenRead(src *tokenSource, role string, fetched bool, err error) {
	rm := m.defaultRoleMetrics
	switch {
	case src != nil:
		rm = src.metrics
	case role != defaultRole:
		return
	}
	switch {
	case err != nil:
		rm.readsFailed.Inc()
	case fetched:
		rm.readsFetched.Inc()
	default:
		rm.readsCached.Inc()
	}
}

// requestsSnapshot is what mirakl/status shows of the mount's requests to
// Mirakl, from the same counts that mirakl/metrics exposes.
func (m *mountMetrics) requestsSnapshot() (requests, failures uint64, lastAt time.Time, lastErr error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requestCount, m.failures, m.lastAt, m.lastErr
}

// roleSnapshot is the same for one token.
func (m *mountMetrics) roleSnapshot(rm *roleMetrics) (requests, failures uint64, lastAt time.Time, lastErr error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return rm.requestCount, rm.failures, rm.lastAt, rm.lastErr
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
			// A new slice: the collectors own the one they gave. The default
			// token's role is empty, which Prometheus reads as no label: it
			// is written as none.
			labels := make([]*dto.LabelPair, 0, len(metric.Label)+1)
			for _, l := range metric.Label {
				if l.GetValue() != "" {
					labels = append(labels, l)
				}
			}
			metric.Label = append(labels, mount)
			slices.SortFunc(metric.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
		}
		if err := enc.Encode(family); err != nil {
			return nil, fmt.Errorf("encoding %s: %w", family.GetName(), err)
		}
	}
	return buf.Bytes(), nil
}

// stateCollector reads the gauges from memory at each scrape: each token's
// expiry and audience refusal, a refusal of the client, the last success, the
// build and the process's goroutines.
type stateCollector struct {
	b *backend
	m *mountMetrics
}

var (
	descTokenExpiry = prometheus.NewDesc(metricTokenExpiry,
		"When the cached token expires (Unix seconds), by role; no sample while no token is cached.", []string{labelRole}, nil)
	descLastSuccess = prometheus.NewDesc(metricLastSuccess,
		"When a token request to Mirakl last succeeded (Unix seconds); no sample before the first.", nil, nil)
	descRefused = prometheus.NewDesc(metricRefused,
		"1 while Mirakl's last answer refused the client credentials (for every role) and no request has succeeded since, else 0.", nil, nil)
	descAudienceRefused = prometheus.NewDesc(metricAudienceRefused,
		"1 while Mirakl refuses a token for the role's audience (an OAuth error other than invalid_client to a request that carried it); only for roles in memory.", []string{labelRole}, nil)
	descBuildInfo = prometheus.NewDesc(metricBuildInfo,
		"The plugin's version, as a label; always 1.", []string{"version"}, nil)
	// Vault's telemetry counts its own goroutines, not a plugin's: a leak in
	// the process that serves every mount would show nowhere else.
	descGoroutines = prometheus.NewDesc(metricGoroutines,
		"Goroutines in the plugin process, which serves every mount of the plugin: the same value under each mount.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descTokenExpiry
	ch <- descLastSuccess
	ch <- descRefused
	ch <- descAudienceRefused
	ch <- descBuildInfo
	ch <- descGoroutines
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	refused := 0.0
	if mount := c.b.loadedMount(); mount != nil {
		if mount.gate.status().refused {
			refused = 1
		}
		mount.eachSource(func(src *tokenSource) {
			if tok := src.cache.current(); tok != nil {
				ch <- prometheus.MustNewConstMetric(descTokenExpiry, prometheus.GaugeValue, unixSeconds(tok.expiresAt), src.role)
			}
			if src.audience != "" {
				ch <- prometheus.MustNewConstMetric(descAudienceRefused, prometheus.GaugeValue, boolValue(src.cache.hold.status().refused), src.role)
			}
		})
	}
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.GaugeValue, refused)

	c.m.mu.Lock()
	lastSuccess := c.m.lastSuccess
	c.m.mu.Unlock()
	if !lastSuccess.IsZero() {
		ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, unixSeconds(lastSuccess))
	}
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, Version)
	ch <- prometheus.MustNewConstMetric(descGoroutines, prometheus.GaugeValue, float64(runtime.NumGoroutine()))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
