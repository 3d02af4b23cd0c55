package mirakl

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	configStorageKey = "config"

	defaultTokenURL       = "https://auth.mirakl.net/oauth/token" //nolint:gosec // G101: Mirakl's public token endpoint, not a credential.
	defaultRequestTimeout = 30 * time.Second
	defaultMinTTL         = 10 * time.Minute
	// maxRequestTimeout bounds how long a reader can be kept waiting on Mirakl.
	maxRequestTimeout = 5 * time.Minute

	fieldClientID       = "client_id"
	fieldClientSecret   = "client_secret"
	fieldTokenURL       = "token_url"
	fieldRequestTimeout = "request_timeout"
	fieldMinTTL         = "min_ttl"
	fieldCACert         = "ca_cert"
	fieldVerify         = "verify"
	fieldAudience       = "audience"
)

// miraklConfig is the mount's stored configuration.
type miraklConfig struct {
	ClientID       string        `json:"client_id"`
	ClientSecret   string        `json:"client_secret"`
	TokenURL       string        `json:"token_url"`
	RequestTimeout time.Duration `json:"request_timeout"`
	MinTTL         time.Duration `json:"min_ttl"`
	CACert         string        `json:"ca_cert,omitempty"`
	// Audience, when set, is sent with every request for the mount's token
	// (the seller APIs' company): unset, the request is the three fields
	// Mirakl documents.
	Audience string `json:"audience,omitempty"`
}

func pathConfig(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "config",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixMirakl,
		},
		Fields: map[string]*framework.FieldSchema{
			fieldClientID: {
				Type:        framework.TypeString,
				Description: "Client ID of the Mirakl Connect integration. Required when the config is created. Printable ASCII, at most 256 bytes.",
				DisplayAttrs: &framework.DisplayAttributes{
					Name: "Client ID",
				},
			},
			fieldClientSecret: {
				Type:        framework.TypeString,
				Description: "Client secret of the Mirakl Connect integration. Required when the config is created; write-only, never returned. Printable ASCII, at most 1024 bytes.",
				DisplayAttrs: &framework.DisplayAttributes{
					Name:      "Client secret",
					Sensitive: true,
				},
			},
			fieldTokenURL: {
				Type:        framework.TypeString,
				Description: "Mirakl's OAuth token endpoint. An absolute https URL of at most 2048 bytes; plain http only for loopback hosts. Changing it requires client_secret in the same write.",
				Default:     defaultTokenURL,
				DisplayAttrs: &framework.DisplayAttributes{
					Name: "Token URL",
				},
			},
			fieldRequestTimeout: {
				Type:        framework.TypeDurationSecond,
				Description: "Upper bound on one token request to Mirakl, retries included (e.g. 30s; at most 5m).",
				Default:     int(defaultRequestTimeout.Seconds()),
			},
			fieldMinTTL: {
				Type:        framework.TypeDurationSecond,
				Description: "Least life a read wants the token to have left (e.g. 10m; at most 24h, and honoured up to half the token's lifetime). The next token is fetched in the background from min_ttl + 2m before expiry; a read that finds less gets the valid cached token with a warning, never a wait. Readers may ask for more with their own min_ttl.",
				Default:     int(defaultMinTTL.Seconds()),
				DisplayAttrs: &framework.DisplayAttributes{
					Name: "Minimum TTL",
				},
			},
			fieldCACert: {
				Type:        framework.TypeString,
				Description: "PEM certificates trusted in addition to the system roots, for a TLS-inspecting proxy in front of Mirakl; at most 64 KiB. Changing it requires client_secret in the same write.",
				DisplayAttrs: &framework.DisplayAttributes{
					Name: "CA certificate",
				},
			},
			fieldAudience: {
				Type:        framework.TypeString,
				Description: "Sent as the audience form field with every token request of mirakl/token, for the Mirakl Connect seller APIs: the company the token is for (its id, a URL or a word such as mirakl-connect). Unset (the default), the request is the three fields Mirakl documents. Printable ASCII without spaces, at most 256 bytes; changing it needs no client_secret and drops the cached token. Write an empty value to unset it.",
				DisplayAttrs: &framework.DisplayAttributes{
					Name: "Audience",
				},
			},
			fieldVerify: {
				Type:        framework.TypeBool,
				Description: "Exchange the credentials for a token before storing them, and refuse the write if Mirakl refuses them. The check is one request, made even while reads are held back after a failure, except while Mirakl's Retry-After holds. Not stored.",
				Default:     true,
			},
		},
		ExistenceCheck: b.pathConfigExistenceCheck,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.CreateOperation: &framework.PathOperation{
				Callback:                    b.pathConfigWrite,
				Summary:                     "Configure the Mirakl credentials.",
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "configure"},
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback:                    b.pathConfigWrite,
				Summary:                     "Change the fields named; the others keep their values.",
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "configure"},
			},
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathConfigRead,
				Summary:      "Read the configuration, without the client secret.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "configuration"},
			},
			logical.DeleteOperation: &framework.PathOperation{
				Callback:                    b.pathConfigDelete,
				Summary:                     "Delete the configuration and drop the cached token.",
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "delete", OperationSuffix: "configuration"},
			},
		},
		HelpSynopsis:    pathConfigHelpSynopsis,
		HelpDescription: pathConfigHelpDescription,
	}
}

func (b *backend) pathConfigExistenceCheck(ctx context.Context, req *logical.Request, _ *framework.FieldData) (bool, error) {
	cfg, err := readConfig(ctx, req.Storage)
	if err != nil {
		return false, err
	}
	return cfg != nil, nil
}

// pathConfigWrite creates or updates the config. Nothing is stored, and
// nothing in memory changes, unless every field is valid and, when verify is
// on, Mirakl accepted the credentials.
func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	b.configWrites.Lock()
	defer b.configWrites.Unlock()
	existing, err := readConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	cfg := &miraklConfig{TokenURL: defaultTokenURL, RequestTimeout: defaultRequestTimeout, MinTTL: defaultMinTTL}
	if existing != nil {
		*cfg = *existing
	}
	if err := cfg.update(d); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	if err := cfg.validate(); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	_, secretGiven := d.GetOk(fieldClientSecret)
	if existing != nil && !secretGiven && cfg.movesSecretFrom(existing) {
		// Whoever may update the config is not necessarily trusted with the
		// write-only secret: without this, they could point the engine at
		// their own endpoint (or CA) and receive it.
		return logical.ErrorResponse("changing token_url or ca_cert requires client_secret in the same write: " +
			"the stored secret is sent only to the endpoint it was written for"), nil
	}

	client, err := newTokenClient(cfg, b.retries, b.now, b.Logger().Named("client"))
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	mount := b.newMountState(cfg, client)
	mount.defaultToken.restorePending.Store(false) // the write drops the stored tokens
	old := b.loadedMount()
	sameEndpoint := old != nil && existing != nil && !cfg.movesSecretFrom(old.config)
	if sameEndpoint {
		mount.gate.inherit(&old.gate, cfg.sameCredentials(old.config), b.now())
		if cfg.Audience == old.config.Audience {
			mount.defaultToken.cache.hold.inherit(&old.defaultToken.cache.hold, cfg.sameCredentials(old.config), b.now())
		}
	}
	if d.Get(fieldVerify).(bool) {
		if _, err := b.fetch(ctx, mount, mount.defaultToken, nil, forConfigCheck, 0); err != nil {
			mount.close()
			if sameEndpoint {
				// What the check learnt of the endpoint (an outage, Mirakl's
				// Retry-After) holds for the config in use too; a refusal only
				// if it was of the same credentials.
				old.gate.inherit(&mount.gate, cfg.sameCredentials(old.config), b.now())
			}
			return configCheckFailed(err, secretGiven)
		}
	}

	entry, err := logical.StorageEntryJSON(configStorageKey, cfg)
	if err != nil {
		mount.close()
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	// Every token goes with the old config, the roles' too: their next reads
	// fetch new ones with the new credentials (mount.go, token_store.go).
	if err := b.replaceMount(ctx, req.Storage, mount, func() error {
		if err := req.Storage.Put(ctx, entry); err != nil {
			return fmt.Errorf("storing config: %w", err)
		}
		return nil
	}); err != nil {
		mount.close()
		return nil, err
	}
	b.storeVerifiedToken(ctx, req.Storage, mount, mount.defaultToken) // token_store.go
	return nil, nil
}

// configCheckFailed is the answer to a write whose check failed: a 400 when
// Mirakl refused the credentials, a 502 when it could not be asked. Mirakl's
// error_description is shown only to a writer who sent the secret in this
// request; the stored secret's writer is not necessarily this one.
func configCheckFailed(err error, secretGiven bool) (*logical.Response, error) {
	return checkFailed(err, secretGiven, "the credentials")
}

// checkFailed answers a config or role write whose check of what (the
// credentials, a role's audience) failed.
func checkFailed(err error, secretGiven bool, what string) (*logical.Response, error) {
	message := err.Error()
	var upstream *UpstreamError
	var closed *GateClosedError
	held := errors.As(err, &closed) // by an earlier request's failure, not this one's
	if secretGiven && !held && errors.As(err, &upstream) {
		message = upstream.ForCredentialsWriter()
	}
	switch {
	case errors.Is(err, ErrCredentialsRefused) && !held:
		return logical.ErrorResponse("nothing was stored: %s", message), nil
	case errors.As(err, &upstream):
		return nil, logical.CodedError(http.StatusBadGateway,
			fmt.Sprintf("nothing was stored: could not check %s: %s (write verify=false to store them unchecked)", what, message))
	default:
		return nil, fmt.Errorf("checking %s: %w", what, err)
	}
}

func (b *backend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := readConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, nil
	}
	return &logical.Response{Data: map[string]any{
		fieldClientID:       cfg.ClientID,
		fieldTokenURL:       cfg.TokenURL,
		fieldRequestTimeout: int64(cfg.RequestTimeout.Seconds()),
		fieldMinTTL:         int64(cfg.MinTTL.Seconds()),
		fieldCACert:         cfg.CACert,
		fieldAudience:       cfg.Audience,
	}}, nil
}

func (b *backend) pathConfigDelete(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.configWrites.Lock()
	defer b.configWrites.Unlock()
	// The roles stay (they are not secret); their tokens go with the config.
	err := b.replaceMount(ctx, req.Storage, nil, func() error {
		if err := req.Storage.Delete(ctx, configStorageKey); err != nil {
			return fmt.Errorf("deleting config: %w", err)
		}
		return nil
	})
	return nil, err
}

func readConfig(ctx context.Context, s logical.Storage) (*miraklConfig, error) {
	entry, err := s.Get(ctx, configStorageKey)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if entry == nil {
		return nil, nil
	}
	cfg := new(miraklConfig)
	if err := entry.DecodeJSON(cfg); err != nil {
		return nil, fmt.Errorf("decoding config: %w", err)
	}
	return cfg, nil
}

// Limits on what a config writer can make the engine hold and work through;
// every check on them is linear in the input.
const (
	maxClientIDBytes     = 256
	maxClientSecretBytes = 1024
	maxTokenURLBytes     = 2048
	maxCACertBytes       = 64 << 10
	maxAudienceBytes     = 256
	maxMinTTL            = 24 * time.Hour
)

// textRule is what a text field may hold: every text field of every path is
// checked by textField, against its rule, before anything is built from it.
type textRule struct {
	limit   int
	allowed func(rune) bool
	what    string
}

const credentialChars = "printable ASCII characters (RFC 6749, appendix A)" //nolint:gosec // G101: a description, not a credential

var (
	clientIDRule     = textRule{maxClientIDBytes, isVSChar, credentialChars}
	clientSecretRule = textRule{maxClientSecretBytes, isVSChar, credentialChars}
	tokenURLRule     = textRule{maxTokenURLBytes, isURLChar, "printable ASCII characters without spaces"}
	caCertRule       = textRule{maxCACertBytes, isPEMChar, "PEM text (printable ASCII and line breaks)"}
	// audienceRule: a company's id is a UUID, but integrators also send a URL
	// or a word (mirakl-connect); a form field of at most 256 bytes without
	// spaces or control characters holds each.
	audienceRule = textRule{maxAudienceBytes, isURLChar, "printable ASCII characters without spaces"}
)

// textField sets *dst to the field's value if the request names it, once it
// passes rule. A field beyond its length or character limits is refused
// before anything is built from it; every check is linear in the input.
func textField(d *framework.FieldData, field string, rule textRule, dst *string) error {
	v, ok := d.GetOk(field)
	if !ok {
		return nil
	}
	// Surrounding whitespace is never part of a value: it comes from
	// "client_secret=- <<<..." or @file, and Mirakl would refuse it.
	value := strings.TrimSpace(v.(string))
	if len(value) > rule.limit {
		return fmt.Errorf("%s is longer than %d bytes", field, rule.limit)
	}
	if strings.IndexFunc(value, func(r rune) bool { return !rule.allowed(r) }) >= 0 {
		return fmt.Errorf("%s may hold only %s", field, rule.what)
	}
	*dst = value
	return nil
}

// update sets the fields the request names; the others keep their values.
func (c *miraklConfig) update(d *framework.FieldData) error {
	for _, err := range []error{
		textField(d, fieldClientID, clientIDRule, &c.ClientID),
		textField(d, fieldClientSecret, clientSecretRule, &c.ClientSecret),
		textField(d, fieldTokenURL, tokenURLRule, &c.TokenURL),
		textField(d, fieldCACert, caCertRule, &c.CACert),
		textField(d, fieldAudience, audienceRule, &c.Audience),
	} {
		if err != nil {
			return err
		}
	}
	if v, ok := d.GetOk(fieldRequestTimeout); ok {
		c.RequestTimeout = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk(fieldMinTTL); ok {
		c.MinTTL = time.Duration(v.(int)) * time.Second
	}
	return nil
}

// isVSChar: RFC 6749's VSCHAR, the characters of a client id and secret.
func isVSChar(r rune) bool { return r >= 0x20 && r <= 0x7e }

func isURLChar(r rune) bool { return r > 0x20 && r <= 0x7e }

func isPEMChar(r rune) bool { return isVSChar(r) || r == '\n' || r == '\r' || r == '\t' }

// movesSecretFrom reports whether the secret would now go somewhere, or over
// a channel, that it was not written for.
func (c *miraklConfig) movesSecretFrom(old *miraklConfig) bool {
	return c.TokenURL != old.TokenURL || c.CACert != old.CACert
}

// sameCredentials reports whether c asks for tokens as old did: the same
// client id and secret, for the same audience (a refusal may concern it).
func (c *miraklConfig) sameCredentials(old *miraklConfig) bool {
	return c.ClientID == old.ClientID && c.ClientSecret == old.ClientSecret && c.Audience == old.Audience
}

// validate says what the writer must fix, if anything.
func (c *miraklConfig) validate() error {
	if c.ClientID == "" {
		return errors.New("client_id is required: the client ID Mirakl gave you")
	}
	if c.ClientSecret == "" {
		return errors.New("client_secret is required: the client secret Mirakl gave you")
	}
	if c.RequestTimeout <= 0 || c.RequestTimeout > maxRequestTimeout {
		return fmt.Errorf("request_timeout must be a positive duration of at most %s, such as 30s", maxRequestTimeout)
	}
	if err := validateMinTTL(c.MinTTL); err != nil {
		return err
	}
	if problem := validateTokenURL(c.TokenURL); problem != "" {
		return errors.New(problem)
	}
	if c.CACert != "" {
		if problem := validatePEM(c.CACert); problem != "" {
			return errors.New(problem)
		}
	}
	return nil
}

func validateMinTTL(minTTL time.Duration) error {
	if minTTL < 0 || minTTL > maxMinTTL {
		return fmt.Errorf("min_ttl must be zero or a positive duration of at most %s, such as 10m", maxMinTTL)
	}
	return nil
}

func validateTokenURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return fmt.Sprintf("token_url %q is not an absolute URL, such as %s", raw, defaultTokenURL)
	}
	if u.User != nil {
		return "token_url must not carry credentials; set client_id and client_secret instead"
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		if isLoopback(u.Hostname()) {
			return ""
		}
		return fmt.Sprintf("token_url must use https (plain http is accepted only for loopback hosts), not %q", raw)
	default:
		return fmt.Sprintf("token_url must be an https URL, not %q", raw)
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validatePEM(data string) string {
	rest := []byte(data)
	count := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Sprintf("ca_cert must hold only CERTIFICATE blocks, found %q", block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Sprintf("ca_cert certificate %d cannot be parsed: %v", count+1, err)
		}
		count++
	}
	if count == 0 || strings.TrimSpace(string(rest)) != "" {
		return "ca_cert must be one or more PEM certificates (-----BEGIN CERTIFICATE----- ...)"
	}
	return ""
}

const pathConfigHelpSynopsis = `Configure the Mirakl Connect credentials the engine exchanges for tokens.`

const pathConfigHelpDescription = `
Stores the client ID and client secret that Mirakl issued for your integration.
The client secret is write-only: reads show every other field.

Unless verify=false, a write first exchanges the new credentials for a token;
if Mirakl refuses them, the write fails with Mirakl's answer and nothing is
stored. An update changes only the fields it names. Any write or delete drops
the cached token and cancels the requests of the old config; "vault write -f
mirakl/config" gets a fresh one.

After a failed request, the engine holds further requests to Mirakl back
(a backoff from 5s to 1m; after a refusal 30s doubling to 5m; Mirakl's
Retry-After up to 5m): reads that find no valid token fail at once with the
last failure and the time of the next attempt, and each attempt the hold
lets out is a single HTTP request. Background refreshes go on at that pace,
after a refusal too. A config write with verify is
an admin's explicit "try now": it makes its one request even then, except
while Mirakl's Retry-After holds (then it fails at once; verify=false stores
without asking). A write that keeps token_url carries the hold over, except a
refusal of credentials that the write replaces.

An update that changes token_url or ca_cert must carry client_secret too: the
stored secret is only ever sent to the endpoint it was written for, so that
whoever may update the config cannot redirect it to a server of their own.

For the Mirakl Connect seller APIs, audience names the company every token
request is for (a fourth form field); unset, the request is the three fields
Mirakl documents. Changing it needs no client_secret (the secret goes to the
same endpoint) and drops the cached and stored token.

Fields are bounded: client_id 256 bytes, client_secret 1024 bytes (both
printable ASCII), token_url 2048 bytes, ca_cert 64 KiB, audience 256 bytes
(printable ASCII without spaces), min_ttl 24h, request_timeout 5m.

  $ vault write mirakl/config client_id=... client_secret=...
  $ vault write mirakl/config min_ttl=15m
  $ vault write mirakl/config audience=2f6a3c1e-9b4d-4e7a-8c1f-5d2b7e9a0c3d
  $ vault read mirakl/config
`
