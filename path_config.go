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
)

// miraklConfig is the mount's stored configuration.
type miraklConfig struct {
	ClientID       string        `json:"client_id"`
	ClientSecret   string        `json:"client_secret"`
	TokenURL       string        `json:"token_url"`
	RequestTimeout time.Duration `json:"request_timeout"`
	MinTTL         time.Duration `json:"min_ttl"`
	CACert         string        `json:"ca_cert,omitempty"`
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
				Description: "Client ID of the Mirakl Connect integration. Required when the config is created.",
				DisplayAttrs: &framework.DisplayAttributes{
					Name: "Client ID",
				},
			},
			fieldClientSecret: {
				Type:        framework.TypeString,
				Description: "Client secret of the Mirakl Connect integration. Required when the config is created; write-only, never returned.",
				DisplayAttrs: &framework.DisplayAttributes{
					Name:      "Client secret",
					Sensitive: true,
				},
			},
			fieldTokenURL: {
				Type:        framework.TypeString,
				Description: "Mirakl's OAuth token endpoint. An absolute https URL; plain http only for loopback hosts. Changing it requires client_secret in the same write.",
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
				Description: "A cached token is handed out only while it has at least this much life left (e.g. 10m). Readers may ask for more with their own min_ttl.",
				Default:     int(defaultMinTTL.Seconds()),
				DisplayAttrs: &framework.DisplayAttributes{
					Name: "Minimum TTL",
				},
			},
			fieldCACert: {
				Type:        framework.TypeString,
				Description: "PEM certificates trusted in addition to the system roots, for a TLS-inspecting proxy in front of Mirakl. Changing it requires client_secret in the same write.",
				DisplayAttrs: &framework.DisplayAttributes{
					Name: "CA certificate",
				},
			},
			fieldVerify: {
				Type:        framework.TypeBool,
				Description: "Exchange the credentials for a token before storing them, and refuse the write if Mirakl refuses them. Not stored.",
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
	cfg.update(d)
	if err := cfg.validate(); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	if _, secretGiven := d.GetOk(fieldClientSecret); existing != nil && !secretGiven && cfg.movesSecretFrom(existing) {
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
	mount := newMountState(cfg, client)
	if d.Get(fieldVerify).(bool) {
		started := b.now()
		fetched, err := client.fetch(ctx)
		b.metrics.requestDone(started, b.now(), err)
		if err != nil {
			client.close()
			if errors.Is(err, ErrCredentialsRefused) {
				return logical.ErrorResponse("nothing was stored: %v", err), nil
			}
			return nil, logical.CodedError(http.StatusBadGateway,
				fmt.Sprintf("nothing was stored: could not check the credentials: %v (write verify=false to store them unchecked)", err))
		}
		mount.cache.succeeded(newCachedToken(fetched, b.now()))
	}

	entry, err := logical.StorageEntryJSON(configStorageKey, cfg)
	if err != nil {
		client.close()
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	if err := req.Storage.Put(ctx, entry); err != nil {
		client.close()
		return nil, fmt.Errorf("storing config: %w", err)
	}
	b.setMount(mount)
	return nil, nil
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
	}}, nil
}

func (b *backend) pathConfigDelete(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.configWrites.Lock()
	defer b.configWrites.Unlock()
	if err := req.Storage.Delete(ctx, configStorageKey); err != nil {
		return nil, fmt.Errorf("deleting config: %w", err)
	}
	b.setMount(nil)
	return nil, nil
}

// mountState is one config with what derives from it: the client that sends
// its secret and the cache of its tokens. A config change replaces it whole,
// so a request that the change overtook can only fill a cache nobody reads.
type mountState struct {
	config *miraklConfig
	client *tokenClient
	cache  *tokenCache
}

func newMountState(cfg *miraklConfig, client *tokenClient) *mountState {
	return &mountState{config: cfg, client: client, cache: &tokenCache{}}
}

// currentMount returns the mount's state, loading the config from storage
// once; nil means the mount is not configured.
func (b *backend) currentMount(ctx context.Context, s logical.Storage) (*mountState, error) {
	if mount := b.mount.Load(); mount != nil {
		return mount, nil
	}
	b.mountWrites.Lock()
	defer b.mountWrites.Unlock()
	if mount := b.mount.Load(); mount != nil {
		return mount, nil
	}
	cfg, err := readConfig(ctx, s)
	if err != nil || cfg == nil {
		return nil, err
	}
	client, err := newTokenClient(cfg, b.retries, b.now, b.Logger().Named("client"))
	if err != nil {
		return nil, fmt.Errorf("loading config: %w", err)
	}
	mount := newMountState(cfg, client)
	b.mount.Store(mount)
	return mount, nil
}

// loadedMount is the mount's state if it is in memory, without touching storage.
func (b *backend) loadedMount() *mountState { return b.mount.Load() }

// setMount replaces the mount's state (nil: load again from storage on next use).
func (b *backend) setMount(mount *mountState) {
	b.mountWrites.Lock()
	defer b.mountWrites.Unlock()
	if old := b.mount.Swap(mount); old != nil && old != mount {
		old.client.close()
	}
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

// update sets the fields the request names; the others keep their values.
func (c *miraklConfig) update(d *framework.FieldData) {
	// Surrounding whitespace is never part of a credential: it comes from
	// "client_secret=- <<<..." or @file, and Mirakl would refuse it.
	if v, ok := d.GetOk(fieldClientID); ok {
		c.ClientID = strings.TrimSpace(v.(string))
	}
	if v, ok := d.GetOk(fieldClientSecret); ok {
		c.ClientSecret = strings.TrimSpace(v.(string))
	}
	if v, ok := d.GetOk(fieldTokenURL); ok {
		c.TokenURL = strings.TrimSpace(v.(string))
	}
	if v, ok := d.GetOk(fieldRequestTimeout); ok {
		c.RequestTimeout = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk(fieldMinTTL); ok {
		c.MinTTL = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk(fieldCACert); ok {
		c.CACert = strings.TrimSpace(v.(string))
	}
}

// movesSecretFrom reports whether the secret would now go somewhere, or over
// a channel, that it was not written for.
func (c *miraklConfig) movesSecretFrom(old *miraklConfig) bool {
	return c.TokenURL != old.TokenURL || c.CACert != old.CACert
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
	if c.MinTTL < 0 {
		return errors.New("min_ttl must be zero or a positive duration, such as 10m")
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
the cached token; "vault write -f mirakl/config" gets a fresh one.

An update that changes token_url or ca_cert must carry client_secret too: the
stored secret is only ever sent to the endpoint it was written for, so that
whoever may update the config cannot redirect it to a server of their own.

  $ vault write mirakl/config client_id=... client_secret=...
  $ vault write mirakl/config min_ttl=15m
  $ vault read mirakl/config
`
