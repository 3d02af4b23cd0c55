# mirakl-terraform: the Vault token that applies this configuration, with the
# default inputs (plugin_name mirakl, mount_path mirakl). With other inputs,
# replace "secret/mirakl" with "secret/<plugin_name>" and "mirakl" with
# mount_path in the other paths.
#
#   vault policy write mirakl-terraform examples/terraform/terraform-policy.hcl
#   export VAULT_TOKEN=$(vault token create -policy=mirakl-terraform -field=token)

# vault_plugin: the catalog entry. The catalog's endpoints want sudo.
path "sys/plugins/catalog/secret/mirakl" {
  capabilities = ["create", "read", "update", "delete", "sudo"]
}

# vault_mount: enable, read, tune (description, plugin_version), disable.
path "sys/mounts/mirakl" {
  capabilities = ["create", "read", "update", "delete", "sudo"]
}

path "sys/mounts/mirakl/tune" {
  capabilities = ["read", "update", "sudo"]
}

# vault_generic_endpoint: the config.
path "mirakl/config" {
  capabilities = ["create", "read", "update", "delete"]
}

# vault_policy: the applications' policy.
path "sys/policies/acl/mirakl-reader" {
  capabilities = ["create", "read", "update", "delete"]
}

# The provider works with a short-lived child token of its own (unless
# skip_child_token is set in the provider block).
path "auth/token/create" {
  capabilities = ["update"]
}
