# mirakl-admin: the team that owns the Mirakl integration behind the mirakl/ mount.
#
# It writes and rotates the client credentials (the client secret is
# write-only: reading the config never shows it), reads tokens to check the
# setup, and revokes the mount's leases after a rotation or an incident.
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

# vault lease revoke -prefix mirakl/token: revoke every token lease of this
# mount (and drop its cached token), e.g. after rotating the client secret.
path "sys/leases/revoke-prefix/mirakl/token" {
  capabilities = ["update", "sudo"]
}
