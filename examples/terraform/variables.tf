# --- the plugin binary, as registered in Vault's plugin catalog ---

variable "plugin_name" {
  description = "Name of the plugin in Vault's catalog; the mount's type."
  type        = string
  default     = "mirakl"
}

variable "plugin_version" {
  description = "Version of the release, as in its VERSION file and archive names (e.g. v0.1.0)."
  type        = string
  default     = "v0.1.0"
}

variable "plugin_command" {
  description = "File name of the plugin binary in the Vault server's plugin_directory."
  type        = string
  default     = "vault-plugin-mirakl"
}

variable "plugin_sha256" {
  description = "SHA-256 of the plugin binary (not of the archive): the line for <archive>/vault-plugin-mirakl in the release's SHA256SUMS."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.plugin_sha256))
    error_message = "plugin_sha256 must be 64 lower-case hex digits, as in SHA256SUMS."
  }
}

# --- the mount and its config ---

variable "mount_path" {
  description = "Where the engine is mounted; applications read <mount_path>/token."
  type        = string
  default     = "mirakl"
}

variable "client_id" {
  description = "Client ID of the Mirakl Connect integration."
  type        = string
}

variable "client_secret" {
  description = "Client secret of the Mirakl Connect integration. Write-only in Vault; pass it with TF_VAR_client_secret, never in a committed .tfvars file."
  type        = string
  sensitive   = true
}

variable "token_url" {
  description = "Mirakl's OAuth token endpoint."
  type        = string
  default     = "https://auth.mirakl.net/oauth/token"
}

variable "min_ttl_seconds" {
  description = "A cached token is handed out only while it has at least this many seconds left."
  type        = number
  default     = 600
}

variable "request_timeout_seconds" {
  description = "Upper bound, in seconds, on one token request to Mirakl, retries included."
  type        = number
  default     = 30
}

# --- roles: a token per Mirakl Connect company ---

variable "roles" {
  description = "Roles to create, by name: the audience (the Mirakl Connect company's id) of each. Applications read <mount_path>/token/<name> under the policy <mount_path>-role-<name>."
  type        = map(string)
  default     = {}
}
