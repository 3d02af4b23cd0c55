# mirakl-terraform: the Vault token that applies this configuration, upgrades
# the plugin with it and destroys it; nothing more. For the default inputs
# (plugin_name mirakl, mount_path mirakl): with others, put plugin_name in
# place of "secret/mirakl" and mount_path in place of the other "mirakl".
#
#   vault policy write mirakl-terraform terraform-policy.hcl
#   export VAULT_TOKEN=$(vault token create -policy=mirakl-terraform -field=token)

# vault_plugin: register, read, deregister. The catalog wants sudo.
path "sys/plugins/catalog/secret/mirakl" {
  capabilities = ["read", "update", "delete", "sudo"]
}

# vault_mount: enable, read, disable; tune changes description and
# plugin_version in place.
path "sys/mounts/mirakl" {
  capabilities = ["read", "update", "delete"]
}

path "sys/mounts/mirakl/tune" {
  capabilities = ["update"]
}

# vault_generic_endpoint: the config. No delete: with disable_delete the
# resource never deletes it (the mount's disable does).
path "mirakl/config" {
  capabilities = ["create", "read", "update"]
}

# vault_generic_endpoint: the roles (var.roles). Each write checks the
# role's audience with Mirakl.
path "mirakl/roles/*" {
  capabilities = ["create", "read", "update", "delete"]
}

# vault_policy: the applications' policy, and one per role.
path "sys/policies/acl/mirakl-reader" {
  capabilities = ["read", "update", "delete"]
}

path "sys/policies/acl/mirakl-role-*" {
  capabilities = ["read", "update", "delete"]
}

# The provider works with a short-lived child token of its own (unless the
# provider block sets skip_child_token).
path "auth/token/create" {
  capabilities = ["update"]
}
