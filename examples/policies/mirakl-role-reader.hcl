# mirakl-acme: the applications (and Vault Agents) of one company's team, that
# call the Mirakl Connect APIs for the company behind the role acme. They get
# that role's Bearer tokens and nothing else: not another role's tokens, not
# the default token, not the roles themselves (whoever may write a role may
# point it at another company), not the config.
#
# The exact path, no glob: "mirakl/token/acme*" would also grant a future
# role acme-eu. Renewing the token's lease needs no line here: every Vault
# token has sys/leases/renew through Vault's default policy.
#
# For another role, copy this file and replace "acme" with its name; for
# another mount, replace "mirakl/" with its path.
#
#   vault write mirakl/roles/acme audience=<the company's id>
#   vault policy write mirakl-acme examples/policies/mirakl-role-reader.hcl
#   vault token create -policy=mirakl-acme

path "mirakl/token/acme" {
  capabilities = ["read"]
}
