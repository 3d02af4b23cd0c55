{{ with secret "mirakl/token" }}{{ .Data.access_token }}{{ end }}
