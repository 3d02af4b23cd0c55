# mirakl-metrics: the Prometheus server that scrapes the mirakl/ mount's
# metrics through Vault (examples/prometheus/prometheus.yml). It reads the
# metrics and nothing else: no token, no config, no status. The metrics hold
# no secret, no token and no fingerprint.
#
# For another mount, add its <mount>/metrics path here (one scraper token for
# every mount), or copy this file and replace "mirakl/" with its path.
#
#   vault policy write mirakl-metrics examples/prometheus/mirakl-metrics.hcl

path "mirakl/metrics" {
  capabilities = ["read"]
}
