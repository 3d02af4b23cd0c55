package mirakl

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathMetrics(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "metrics",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixMirakl,
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathMetricsRead,
				Summary:  "Show the mount's metrics in the Prometheus text format, without any secret.",
				// The active node holds the cache and makes the requests.
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "metrics"},
			},
		},
		HelpSynopsis:    pathMetricsHelpSynopsis,
		HelpDescription: pathMetricsHelpDescription,
	}
}

// pathMetricsRead answers from memory, as status does, with a raw body that
// Vault's HTTP layer sends as it is.
func (b *backend) pathMetricsRead(_ context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	body, err := b.metrics.exposition(req.MountPoint)
	if err != nil {
		return nil, fmt.Errorf("writing the metrics: %w", err)
	}
	return &logical.Response{Data: map[string]any{
		logical.HTTPContentType: string(metricsFormat),
		logical.HTTPRawBody:     body,
		logical.HTTPStatusCode:  http.StatusOK,
	}}, nil
}

const pathMetricsHelpSynopsis = `The mount's metrics, for Prometheus to scrape through Vault.`

const pathMetricsHelpDescription = `
Answers from the memory of the active node, without calling Mirakl, in the
Prometheus text exposition format (text/plain; version=0.0.4), as Vault's own
sys/metrics?format=prometheus does. Every series carries the mount's path in a
"mount" label, and the series of one token its role in a "role" label (none
for mirakl/token); none carries a secret, a token or a fingerprint.

  mirakl_token_requests_total{outcome,role}    requests to Mirakl: token, unavailable,
                                               refused, invalid_response, cancelled, error
  mirakl_token_request_duration_seconds        histogram of one request, retries included
  mirakl_token_reads_total{result,role}        reads of the token: cached, fetched, failed
  mirakl_token_expiry_timestamp_seconds{role}  the cached token's expiry (none while none is cached)
  mirakl_last_success_timestamp_seconds        the last request that brought a token
  mirakl_credentials_refused                   1 while Mirakl refuses the client, else 0
  mirakl_audience_refused{role}                1 while Mirakl refuses the role's audience, else 0
  mirakl_build_info{version}                   always 1
  mirakl_plugin_goroutines                     goroutines in the plugin process (every mount's)

The counters are those of mirakl/status, since the plugin started. Prometheus
scrapes it with a Vault token whose policy allows read on this path only
(metrics_path: /v1/mirakl/metrics, authorization.credentials_file); see
examples/prometheus.

  $ curl -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/mirakl/metrics"
`
