terraform {
  # terraform_data needs 1.4, replace_triggered_by 1.2; the tests run 1.11.
  required_version = ">= 1.5.0"

  required_providers {
    vault = {
      source = "hashicorp/vault"
      # vault_plugin, vault_mount.plugin_version and
      # vault_generic_endpoint.ignore_absent_fields are all in 4.x and later;
      # the tests run 5.11.0.
      version = ">= 4.0.0"
    }
  }
}

# The provider reads VAULT_ADDR and VAULT_TOKEN (or its other auth settings)
# from the environment; the token needs the capabilities listed in README.md.
provider "vault" {}
