# Vault Proxy in front of an application that reads mirakl/token often (on
# every call to Mirakl, say). With its cache on, the proxy keeps one lease
# per Mirakl token and answers every read from it, renewing the lease until
# the token nears its end; then its next read fetches the new token.
#
#   vault proxy -config=proxy.hcl
#   VAULT_ADDR=http://127.0.0.1:8100 vault read mirakl/token
#   VAULT_ADDR=http://127.0.0.1:8100 vault read mirakl/token/acme   # a role's
#
# Change the address, the token file and the listener below. The token in
# token_file_path needs only the mirakl-reader policy
# (examples/policies/mirakl-reader.hcl), or for a role's token that role's
# policy (examples/policies/mirakl-role-reader.hcl); in production prefer an auth method
# such as approle or kubernetes to a token file. A cached answer replays
# expires_in as it was when cached: applications should use expires_at.

vault {
  address = "https://vault.example.com:8200"
}

auto_auth {
  method "token_file" {
    config = {
      token_file_path = "/etc/vault-proxy/vault-token"
    }
  }
}

# The lease cache: one lease per token for every request of the application.
cache {}

# Requests without a Vault token of their own use the auto-auth token.
api_proxy {
  use_auto_auth_token = "force"
}

# Only the application on this host talks to the proxy.
listener "tcp" {
  address     = "127.0.0.1:8100"
  tls_disable = true
}
