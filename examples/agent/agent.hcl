# Vault Agent that keeps a current Mirakl Bearer token in a file for an
# application, rendering a new one before the old one expires.
#
#   vault agent -config=agent.hcl
#
# Change the address and the three paths below. The token in token_file_path
# needs only the mirakl-reader policy (examples/policies/mirakl-reader.hcl);
# in production prefer an auth method such as approle or kubernetes to a
# token file.

vault {
  address = "https://vault.example.com:8200"
}

auto_auth {
  method "token_file" {
    config = {
      token_file_path = "/etc/vault-agent/vault-token"
    }
  }
}

template {
  source      = "/etc/vault-agent/mirakl-token.tpl"
  destination = "/run/secrets/mirakl-token"
  perms       = "0600"
}
