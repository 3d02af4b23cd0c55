package mirakl

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	// roleStoragePrefix + a role's name keeps the role. A role holds no
	// secret: it is not seal-wrapped.
	roleStoragePrefix = "roles/"

	fieldName = "name"
)

// miraklRole is a named audience: mirakl/token/:name serves a token for it,
// exchanged with the config's credentials. It carries no URL and no CA, so
// that no role write can send the secret anywhere the config does not.
type miraklRole struct {
	Audience string `json:"audience"`
	// MinTTL, when not zero, replaces the config's min_ttl for the role.
	MinTTL time.Duration `json:"min_ttl,omitempty"`
}

// minTTL is the role's min_ttl, else the config's.
func (r *miraklRole) minTTL(cfg *miraklConfig) time.Duration {
	if r.MinTTL > 0 {
		return r.MinTTL
	}
	return cfg.MinTTL
}

func pathRoles(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "roles/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefixMirakl,
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback:     b.pathRolesList,
					Summary:      "List the roles.",
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list", OperationSuffix: "roles"},
				},
			},
			HelpSynopsis:    pathRolesListHelpSynopsis,
			HelpDescription: pathRolesListHelpDescription,
		},
		{
			Pattern: "roles/" + framework.GenericNameRegex(fieldName),
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefixMirakl,
			},
			Fields: map[string]*framework.FieldSchema{
				fieldName: {
					Type:        framework.TypeString,
					Description: "Name of the role: letters, digits, dots, dashes and underscores, beginning and ending with a letter or digit.",
				},
				fieldAudience: {
					Type:        framework.TypeString,
					Description: "Sent as the audience form field with every token request of the role: the Mirakl Connect company the token is for (its id, a URL or a word). Required when the role is created. Printable ASCII without spaces, at most 256 bytes.",
					DisplayAttrs: &framework.DisplayAttributes{
						Name: "Audience",
					},
				},
				fieldMinTTL: {
					Type:        framework.TypeDurationSecond,
					Description: "Least life a read of the role's token wants it to have left (at most 24h; honoured up to half the token's lifetime). 0 (the default): the config's min_ttl.",
					DisplayAttrs: &framework.DisplayAttributes{
						Name: "Minimum TTL",
					},
				},
				fieldVerify: {
					Type:        framework.TypeBool,
					Description: "Fetch the role's token before storing the role, and refuse the write if Mirakl refuses the audience. The check is one request, made even while reads are held back after a failure, except while Mirakl's Retry-After holds. Not stored.",
					Default:     true,
				},
			},
			ExistenceCheck: b.pathRoleExistenceCheck,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.CreateOperation: &framework.PathOperation{
					Callback:                    b.pathRoleWrite,
					Summary:                     "Create a role for an audience.",
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
					DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "write", OperationSuffix: "role"},
				},
				logical.UpdateOperation: &framework.PathOperation{
					Callback:                    b.pathRoleWrite,
					Summary:                     "Change the fields named; the others keep their values. Drops the role's token.",
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
					DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "write", OperationSuffix: "role"},
				},
				logical.ReadOperation: &framework.PathOperation{
					Callback:     b.pathRoleRead,
					Summary:      "Read a role.",
					DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "role"},
				},
				logical.DeleteOperation: &framework.PathOperation{
					Callback:                    b.pathRoleDelete,
					Summary:                     "Delete a role and drop its token.",
					ForwardPerformanceStandby:   true,
					ForwardPerformanceSecondary: true,
					DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "delete", OperationSuffix: "role"},
				},
			},
			HelpSynopsis:    pathRoleHelpSynopsis,
			HelpDescription: pathRoleHelpDescription,
		},
	}
}

func readRole(ctx context.Context, s logical.Storage, name string) (*miraklRole, error) {
	entry, err := s.Get(ctx, roleStoragePrefix+name)
	if err != nil {
		return nil, fmt.Errorf("reading role %q: %w", name, err)
	}
	if entry == nil {
		return nil, nil
	}
	r := new(miraklRole)
	if err := entry.DecodeJSON(r); err != nil {
		return nil, fmt.Errorf("decoding role %q: %w", name, err)
	}
	return r, nil
}

func (b *backend) pathRoleExistenceCheck(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	r, err := readRole(ctx, req.Storage, d.Get(fieldName).(string))
	return r != nil, err
}

func (b *backend) pathRolesList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, roleStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing roles: %w", err)
	}
	return logical.ListResponse(names), nil
}

func (b *backend) pathRoleRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	r, err := readRole(ctx, req.Storage, d.Get(fieldName).(string))
	if err != nil || r == nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		fieldAudience: r.Audience,
		fieldMinTTL:   int64(r.MinTTL.Seconds()),
	}}, nil
}

// pathRoleWrite creates or updates a role. Nothing is stored, and nothing in
// memory changes, unless every field is valid and, when verify is on, Mirakl
// issued a token for the audience. Every write drops the role's token: the
// next read gets the verified one, or a new one.
func (b *backend) pathRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	// Serialised with config writes: a role's token is bound to the config.
	b.configWrites.Lock()
	defer b.configWrites.Unlock()
	name := d.Get(fieldName).(string)
	existing, err := readRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	r := &miraklRole{}
	if existing != nil {
		*r = *existing
	}
	if err := textField(d, fieldAudience, audienceRule, &r.Audience); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	if v, ok := d.GetOk(fieldMinTTL); ok {
		r.MinTTL = time.Duration(v.(int)) * time.Second
	}
	if r.Audience == "" {
		return logical.ErrorResponse("audience is required: the Mirakl Connect company the role's tokens are for (its id, a URL or a word)"), nil
	}
	if err := validateMinTTL(r.MinTTL); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	entry, err := logical.StorageEntryJSON(roleStoragePrefix+name, r)
	if err != nil {
		return nil, fmt.Errorf("encoding role: %w", err)
	}

	mount, err := b.currentMount(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	var verified *tokenSource
	if d.Get(fieldVerify).(bool) {
		if mount == nil {
			return logical.ErrorResponse("this mount is not configured yet, so the role cannot be checked: write %sconfig first, or write the role with verify=false", req.MountPoint), nil
		}
		verified = b.newTokenSource(mount, name, r.Audience, r.minTTL(mount.config))
		verified.restorePending.Store(false) // the write drops the stored token
		if _, err := b.fetch(ctx, mount, verified, nil, forConfigCheck, 0); err != nil {
			verified.close()
			if existing == nil {
				b.metrics.dropRole(name) // no series for a role that was not created
			}
			return checkFailed(err, false, fmt.Sprintf("a token for the role's audience %q", r.Audience))
		}
	}
	if err := b.replaceRole(ctx, req.Storage, mount, name, verified, func() error {
		if err := req.Storage.Put(ctx, entry); err != nil {
			return fmt.Errorf("storing role: %w", err)
		}
		return nil
	}); err != nil {
		if verified != nil {
			verified.close()
		}
		return nil, err
	}
	if verified != nil {
		b.storeVerifiedToken(ctx, req.Storage, mount, verified) // token_store.go
	}
	return nil, nil
}

func (b *backend) pathRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	b.configWrites.Lock()
	defer b.configWrites.Unlock()
	name := d.Get(fieldName).(string)
	// The mount as loaded now, not only if loaded: a read may be loading the
	// role at this moment, and replaceRole must wait for it.
	mount, err := b.currentMount(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	err = b.replaceRole(ctx, req.Storage, mount, name, nil, func() error {
		if err := req.Storage.Delete(ctx, roleStoragePrefix+name); err != nil {
			return fmt.Errorf("deleting role: %w", err)
		}
		return nil
	})
	if err == nil {
		b.metrics.dropRole(name)
	}
	return nil, err
}

// replaceRole makes next (nil: load from storage on next use) the source of
// role in mount (nil: not loaded) after a role write or delete, as
// replaceMount does for the config: with no load of the role in between, it
// retires the role's source and drops its stored token, runs write, and
// installs next; then it closes the old source.
func (b *backend) replaceRole(ctx context.Context, s logical.Storage, mount *mountState, role string, next *tokenSource, write func() error) error {
	var old *tokenSource
	if mount != nil {
		mount.roles.loads.Lock()
		defer mount.roles.loads.Unlock()
		old = mount.roles.get(role)
	}
	err := b.dropStoredRoleToken(ctx, s, role, old)
	if err == nil {
		err = write()
	}
	if err != nil {
		reinstate(old)
		return err
	}
	if mount == nil {
		return nil
	}
	if next != nil {
		mount.roles.loaded.Store(role, next)
	} else {
		mount.roles.loaded.Delete(role)
	}
	if old != nil && old != next {
		old.close()
	}
	return nil
}

const pathRolesListHelpSynopsis = `List the roles: each names an audience (a Mirakl Connect company) that mirakl/token/:name serves tokens for.`

const pathRolesListHelpDescription = `
Lists the names of the roles. Each role is read at mirakl/roles/:name and its
token at mirakl/token/:name.

  $ vault list mirakl/roles
`

const pathRoleHelpSynopsis = `Manage a role: an audience (a Mirakl Connect company) whose tokens mirakl/token/:name serves.`

const pathRoleHelpDescription = `
A role names the audience that every token request of mirakl/token/:name
carries as a fourth form field: for the Mirakl Connect seller APIs, the company
the token is for. All roles share the config's client credentials and
endpoint; a role holds no URL and no CA, so no role write can send the secret
anywhere else. Give each company's team a policy on its own role's token path.

Unless verify=false, a write first fetches a token for the audience; if Mirakl
refuses it, the write fails with Mirakl's answer and nothing is stored. Every
write or delete drops the role's cached and stored token. A config write or
delete drops every role's token (the roles themselves stay); their next reads
fetch new ones.

Requests to Mirakl pass one gate per mount: no answer, 5xx, 429 and
invalid_client hold back every role's requests (about one a minute during an
outage, however many roles are read), while any other OAuth error to a
role's request (a company that withdrew its consent) holds back that role's
only.

Fields: audience (required; printable ASCII without spaces, at most 256
bytes), min_ttl (optional; else the config's).

  $ vault write mirakl/roles/acme audience=2f6a3c1e-9b4d-4e7a-8c1f-5d2b7e9a0c3d
  $ vault read mirakl/token/acme
  $ vault delete mirakl/roles/acme
`
