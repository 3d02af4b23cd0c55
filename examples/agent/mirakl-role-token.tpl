{{ with secret "mirakl/token/acme" }}{{ .Data.access_token }}{{ end }}
