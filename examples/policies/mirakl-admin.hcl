# mirakl-admin: the team that owns the Mirakl integration behind the mirakl/ mount.
#
# It writes and rotates the client credentials (the client secret is
# write-only: reading the config never shows it), manages the roles (one per
# Mirakl Connect company), reads tokens to check the setup, watches the
# engine's dealings with Mirakl (mirakl/status), and cleans up the mount's
# leases.
#
# "update" on mirakl/config does not let anyone send the stored secret
# elsewhere: a write that changes token_url or ca_cert must carry
# client_secret too. To replace the cached token (after a rotation or an
# incident), rewrite the config: vault write -f mirakl/config.
#
# One mount is one Mirakl account: for another mount, copy this file and
# replace "mirakl/" with that mount's path.
#
#   vault policy write mirakl-admin examples/policies/mirakl-admin.hcl

path "mirakl/config" {
  capabilities = ["create", "read", "update", "delete"]
}

path "mirakl/token" {
  capabilities = ["read"]
}

path "mirakl/status" {
  capabilities = ["read"]
}

# Roles: one per Mirakl Connect company (audience). A role holds no URL and
# no CA, so writing one cannot send the secret anywhere.
path "mirakl/roles/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "mirakl/roles" {
  capabilities = ["list"]
}

# Each role's token and status, to check a role's setup.
path "mirakl/token/*" {
  capabilities = ["read"]
}

path "mirakl/status/*" {
  capabilities = ["read"]
}

# vault lease revoke -prefix mirakl/token: end every token lease of this mount.
# The cached token stays (Mirakl cannot revoke it); rewrite the config for a
# new one.
path "sys/leases/revoke-prefix/mirakl/token" {
  capabilities = ["update", "sudo"]
}
