# mirakl-reader: applications (and their Vault Agents) that call the Mirakl
# Connect APIs. They get Bearer tokens and nothing else: not the config, not
# the client secret, not the tokens of other mounts (other Mirakl accounts).
#
# For another mount, copy this file and replace "mirakl/" with its path.
#
#   vault policy write mirakl-reader examples/policies/mirakl-reader.hcl

path "mirakl/token" {
  capabilities = ["read"]
}
