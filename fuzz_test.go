package mirakl

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// roundTripFunc answers every request in-process, so fuzzing needs no sockets.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzTokenResponse feeds arbitrary answers to the token client: it must
// return a usable token or one of the three upstream errors, never panic, and
// never put the secret in an error.
func FuzzTokenResponse(f *testing.F) {
	f.Add(200, "application/json", []byte(`{"token_type":"Bearer","access_token":"abc","expires_in":3599}`))
	f.Add(200, "application/json", []byte(`{"token_type":"Bearer","access_token":"abc","expires_in":"3599"}`))
	f.Add(200, "application/x-www-form-urlencoded", []byte(`access_token=abc&token_type=bearer&expires_in=60`))
	f.Add(401, "application/json", []byte(`{"error":"invalid_client","error_description":"fuzz-secret"}`))
	f.Add(503, "text/html", []byte(`<html>down</html>`))
	f.Add(200, "application/json", []byte(`{"token_type":"Bearer","access_token":"abc","expires_in":1e300}`))
	f.Add(200, "application/json", []byte(`{"access_token":"abc","expires_in":null}`))

	const secret = "fuzz-secret"
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte) {
		if status < 100 || status > 599 {
			return
		}
		cfg := &miraklConfig{ClientID: "id", ClientSecret: secret, TokenURL: "https://mirakl.invalid/oauth/token", RequestTimeout: time.Second}
		client, err := newTokenClient(cfg, retryPolicy{MaxRetries: 0}, time.Now, nil)
		if err != nil {
			t.Fatal(err)
		}
		client.http.HTTPClient.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{
				StatusCode: status,
				Header:     http.Header{"Content-Type": {contentType}},
				Body:       io.NopCloser(bytes.NewReader(body)),
				Request:    r,
			}, nil
		})
		tok, err := client.fetch(context.Background(), false, "")
		if err != nil {
			if !errors.Is(err, ErrCredentialsRefused) && !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("unclassified error: %v", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error echoes the secret: %v", err)
			}
			return
		}
		if tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.ExpiresIn < time.Second || tok.ExpiresIn > maxExpiresIn*time.Second {
			t.Fatalf("accepted an unusable token: %+v", tok)
		}
		if status < 200 || status > 299 {
			t.Fatalf("accepted a token from HTTP %d", status)
		}
	})
}

// FuzzConfigWrite sends arbitrary field values to mirakl/config: each write is
// either stored and reads back as written, or refused with a 400 that leaves
// storage as it was; none panics or echoes the secret.
func FuzzConfigWrite(f *testing.F) {
	f.Add("id", "https://auth.mirakl.net/oauth/token", "30s", "10m", "")
	f.Add("", "http://127.0.0.1:1/t", "0", "-1", "")
	f.Add(" id ", "http://example.com/t", "1h", "soon", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")
	f.Add("id", "https://user:pw@host/t", "99999999999999999999", "1e9", "x")
	f.Add("id", "::", "1.5", "", "")

	const secret = "fuzz-config-secret"
	f.Fuzz(func(t *testing.T, clientID, tokenURL, timeout, minTTL, caCert string) {
		b, err := newBackend(context.Background(), logical.TestBackendConfig(), time.Now)
		if err != nil {
			t.Fatal(err)
		}
		storage := &logical.InmemStorage{}
		resp, err := b.HandleRequest(context.Background(), &logical.Request{
			Operation: logical.CreateOperation,
			Path:      "config",
			Storage:   storage,
			Data: map[string]any{
				"client_id": clientID, "client_secret": secret, "token_url": tokenURL,
				"request_timeout": timeout, "min_ttl": minTTL, "ca_cert": caCert, "verify": false,
			},
		})
		stored, readErr := readConfig(context.Background(), storage)
		if readErr != nil {
			t.Fatal(readErr)
		}
		if err != nil || (resp != nil && resp.IsError()) {
			msg := ""
			if err != nil {
				msg = err.Error()
			} else {
				msg = resp.Error().Error()
			}
			if strings.Contains(msg, secret) {
				t.Fatalf("error echoes the secret: %s", msg)
			}
			if stored != nil {
				t.Fatalf("a refused write stored %+v", stored)
			}
			return
		}
		if stored == nil {
			t.Fatal("an accepted write stored nothing")
		}
		if problem := stored.validate(); problem != nil {
			t.Fatalf("stored an invalid config (%v): %+v", problem, stored)
		}
		if stored.ClientSecret != secret {
			t.Fatal("the stored secret differs from the written one")
		}
	})
}
