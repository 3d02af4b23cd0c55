# Registers the Mirakl secrets engine, mounts it, configures it and writes the
# policy of the applications that read tokens. See README.md for the inputs.

# The binary must already be in the server's plugin_directory (on every node).
resource "vault_plugin" "mirakl" {
  type    = "secret"
  name    = var.plugin_name
  command = var.plugin_command
  version = var.plugin_version
  sha256  = var.plugin_sha256
}

resource "vault_mount" "mirakl" {
  path           = var.mount_path
  type           = vault_plugin.mirakl.name
  plugin_version = vault_plugin.mirakl.version
  description    = "Mirakl Connect Bearer tokens"
}

# Replaced when the client secret changes, and only then (its state holds a
# sha256 of the secret, beside the secret itself in mirakl_config's): a new
# secret replaces mirakl_config instead of updating it. See the lifecycle
# below. Not input: terraform_data would copy it to output, which plans show.
resource "terraform_data" "client_secret_version" {
  triggers_replace = sha256(var.client_secret)
}

# Each write exchanges the credentials for a token and fails, storing nothing,
# if Mirakl refuses them or cannot be reached.
resource "vault_generic_endpoint" "mirakl_config" {
  path = "${vault_mount.mirakl.path}/config"

  # client_secret is write-only: reading the config returns every field but it.
  # ignore_absent_fields makes Terraform compare only the fields a read returns,
  # so it still notices drift in the others (hence durations in seconds, as
  # reads return them).
  ignore_absent_fields = true

  # The provider keeps the planned data_json in the state even when the write
  # fails, and no read shows client_secret: after a failed *update* that
  # changed the secret, the next plan would see nothing to do while Vault
  # still held the old secret. A failed *create* leaves the resource out of
  # the state, so the next plan writes it again; hence a new secret replaces
  # this resource. Replacing deletes first: disable_delete makes that delete
  # a no-op, so that Vault keeps the config it has until it accepts the new
  # one. (terraform destroy removes the config with the mount.)
  disable_delete = true
  lifecycle {
    replace_triggered_by = [terraform_data.client_secret_version]
  }

  data_json = jsonencode({
    client_id       = var.client_id
    client_secret   = var.client_secret
    token_url       = var.token_url
    min_ttl         = var.min_ttl_seconds
    request_timeout = var.request_timeout_seconds
  })
}

# Applications get this policy: read tokens, nothing else (not the config).
# It is the repository's examples/policies/mirakl-reader.hcl, written for a
# mount at mirakl/; the replace() points it at mount_path.
resource "vault_policy" "mirakl_reader" {
  name = "${var.mount_path}-reader"
  policy = replace(
    file("${path.module}/../policies/mirakl-reader.hcl"),
    "path \"mirakl/", "path \"${vault_mount.mirakl.path}/",
  )
}

# One role per Mirakl Connect company (var.roles): its applications read
# <mount_path>/token/<name>. Each write first fetches a token for the role's
# audience and fails, storing nothing, if Mirakl refuses it or cannot be
# reached; a role holds no secret, so a failed write is planned again.
resource "vault_generic_endpoint" "mirakl_role" {
  for_each = var.roles

  path = "${vault_mount.mirakl.path}/roles/${each.key}"
  # Reads return min_ttl too, which is not set here.
  ignore_absent_fields = true
  data_json = jsonencode({
    audience = each.value
  })

  # The check of the audience needs the credentials.
  depends_on = [vault_generic_endpoint.mirakl_config]
}

# Each company's team gets the policy of its role: that role's tokens,
# nothing else. It is the repository's examples/policies/mirakl-role-reader.hcl,
# written for the role acme at mirakl/.
resource "vault_policy" "mirakl_role_reader" {
  for_each = var.roles

  name = "${var.mount_path}-role-${each.key}"
  policy = replace(
    file("${path.module}/../policies/mirakl-role-reader.hcl"),
    "path \"mirakl/token/acme\"", "path \"${vault_mount.mirakl.path}/token/${each.key}\"",
  )
}

output "token_path" {
  description = "Where applications read Mirakl tokens (vault read <token_path>)."
  value       = "${vault_mount.mirakl.path}/token"
}

output "role_token_paths" {
  description = "Where each role's applications read its tokens, by role."
  value       = { for name, role in vault_generic_endpoint.mirakl_role : name => "${vault_mount.mirakl.path}/token/${name}" }
}
