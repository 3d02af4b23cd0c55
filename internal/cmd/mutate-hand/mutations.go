package main

// mutation is one realistic bug: find (which must appear exactly once in
// file) becomes replace. why says what kind of bug it is, shown if it survives.
type mutation struct {
	name, file, find, replace, why string
}

var mutations = []mutation{
	// Wiring: what Vault calls, as it calls it.
	{"backend: invalidate misses the config key", "backend.go",
		"if key == configStorageKey || key == tokenStorageKey {", `if key == "config/" || key == tokenStorageKey {`, "wiring: Vault's InvalidateKey"},
	{"backend: periodic function not wired", "backend.go",
		"PeriodicFunc:   b.periodic,", "", "wiring: RollbackOperation"},
	{"backend: seal wrap names another key", "backend.go",
		"SealWrapStorage: []string{configStorageKey", `SealWrapStorage: []string{"config/"`, "constant Vault's storage depends on"},
	{"secret: lease type renamed", "secret_token.go",
		`const secretTokenType = "mirakl_token"`, `const secretTokenType = "mirakl-token"`, "constant Vault's stored leases depend on"},
	{"secret: lease expiry key renamed", "secret_token.go",
		`internalExpiresAt   = "token_expires_at"`, `internalExpiresAt   = "token_expiry"`, "constant Vault's stored leases depend on"},
	{"secret: renewal not capped at the token", "secret_token.go",
		"	resp.Secret.MaxTTL = left\n", "", "a lease outliving its token"},

	// Updates: a merge that drops a field nobody set in the test.
	{"config: update drops request_timeout", "path_config.go",
		"		c.RequestTimeout = time.Duration(v.(int)) * time.Second\n", "		_ = v\n", "a merge that drops a field"},
	{"config: update drops ca_cert", "path_config.go",
		`text(fieldCACert, maxCACertBytes, isPEMChar, "PEM text (printable ASCII and line breaks)", &c.CACert),`, "", "a merge that drops a field"},
	{"config: moving ca_cert without the secret", "path_config.go",
		"return c.TokenURL != old.TokenURL || c.CACert != old.CACert", "return c.TokenURL != old.TokenURL", "a check on one field only"},
	{"config: delete keeps the old state", "path_config.go",
		"		return nil, fmt.Errorf(\"deleting config: %w\", err)\n	}\n	b.setMount(nil)", "		return nil, fmt.Errorf(\"deleting config: %w\", err)\n	}", "a dropped statement"},
	{"config: description to a writer without the secret", "path_config.go",
		"if secretGiven && !held && errors.As(err, &upstream) {", "if !held && errors.As(err, &upstream) {", "what is repeated, and to whom"},

	// Contexts.
	{"token: a reader cannot give up", "path_token.go",
		"	case <-ctx.Done():\n		return nil, fmt.Errorf(\"gave up waiting for a token: %w\", ctx.Err())\n", "", "the wrong context"},
	{"cache: requests outlive their config", "token_cache.go",
		"f.token, f.err = send(c.ctx, probe)", "f.token, f.err = send(context.Background(), probe)", "the wrong context"},

	// Bookkeeping that a shared request hides.
	{"cache: close does not wait for the request", "token_cache.go",
		"	c.cancel()\n	c.running.Wait()", "	c.cancel()", "a goroutine left running"},
	{"cache: a finished flight is joined again", "token_cache.go",
		"		c.mu.Lock()\n		c.flight = nil\n		c.mu.Unlock()\n", "", "bookkeeping not reset"},
	{"gate: a success keeps the failure count", "gate.go",
		"g.failure, g.failedAt, g.failures, g.reopensAt, g.retryAfterUntil = nil, time.Time{}, 0, time.Time{}, time.Time{}",
		"g.failure, g.failedAt, g.reopensAt, g.retryAfterUntil = nil, time.Time{}, time.Time{}, time.Time{}", "a counter not reset after a success"},
	{"gate: Retry-After not capped", "gate.go",
		"asked := min(upstream.RetryAfter, maxRetryAfter)", "asked := upstream.RetryAfter", "a limit left out"},
	{"gate: a replaced secret's refusal carried over", "gate.go",
		"	if refused && !sameCredentials {\n", "	if false && refused && !sameCredentials {\n", "a rule forgotten on one path"},
	{"mount: the replaced state is not closed", "mount.go",
		"		old.close()\n", "", "a dropped statement"},

	// Limits that fire after the whole input was read.
	{"client: the whole answer is read", "client.go",
		"io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))", "io.ReadAll(resp.Body)", "a limit after the whole input"},
	{"client: token length unbounded", "client.go",
		"	if len(token) > maxAccessTokenBytes {\n		return false\n	}\n", "", "a limit left out"},

	// What the fake would ignore, and the one voice.
	{"client: no Accept header", "client.go",
		`	req.Header.Set("Accept", "application/json")` + "\n", "", "a request header the fake must check"},
	{"client: a transport error repeated", "client.go",
		"Failure: classifyTransport(ctx, err)}", "Failure: err.Error()}", "what is repeated of what came from outside"},
	{"client: an unregistered OAuth code repeated", "client.go",
		"		if oauthErrorCodes[refusal.Code] {\n", "		if true {\n", "what is repeated of what came from outside"},

	// Time and leases.
	{"clock: deadlines by the monotonic clock alone", "clock.go",
		"return min(deadline.Sub(now), deadline.Round(0).Sub(now.Round(0)))", "return deadline.Sub(now)", "time across a suspend"},
	{"token: lease rounded to nearest", "path_token.go",
		"left := max(tok.remaining(b.now()).Truncate(time.Second), time.Second)", "left := max(tok.remaining(b.now()).Round(time.Second), time.Second)", "a lease outliving its token"},
	{"token: a reader's own min_ttl never gets a fresher token", "path_token.go",
		"	if left < cached.reusableFor(want) && readerMinTTL != nil {", "	if false {", "min_ttl not meaning what it says"},
	// The stored token.
	{"store: a token of another config is served", "token_store.go",
		"	if !hmac.Equal(entry.ConfigBinding, configBinding(mount.config, entry.ConfigSalt)) {", "	if false && !hmac.Equal(entry.ConfigBinding, configBinding(mount.config, entry.ConfigSalt)) {", "a check left out"},
	{"store: an expired stored token is served", "token_store.go",
		"	if !tok.servable(now) {\n		b.Logger().Debug(\"ignoring the stored token: it has expired\"", "	if false {\n		b.Logger().Debug(\"ignoring the stored token: it has expired\"", "a check left out"},
	{"store: a replaced state's token is kept", "token_store.go",
		"	if b.mount.Load() != mount {\n		return // a config change", "	if false {\n		return // a config change", "a request that a config change overtook"},
	{"store: a delete keeps the stored token", "path_config.go",
		"	b.setMount(nil)\n	b.storeConfigToken(ctx, req.Storage, nil) // token_store.go\n", "	b.setMount(nil)\n", "a dropped statement on one path"},
	{"store: the binding leaves out token_url", "token_store.go",
		"cfg.ClientID, cfg.TokenURL, cfg.CACert}", "cfg.ClientID, cfg.CACert}", "a field left out"},

	// Metrics.
	{"metrics: a fetched read counted as cached", "metrics.go",
		"	case fetched:\n		m.readsFetched.Inc()\n", "", "a case dropped"},
	{"metrics: the duration left out", "metrics.go",
		"	m.durations.Observe(ended.Sub(started).Seconds())\n", "", "a dropped statement"},
	{"metrics: the mount label dropped", "metrics.go",
		"			metric.Label = append(metric.Label, mount)\n", "			_ = mount\n", "a label dropped"},

	{"status: a refusal shown as unavailable", "path_status.go",
		`			return "refused", upstream.Status`, `			return "unavailable", upstream.Status`, "a class mislabelled"},

	// The promises at the edges (issue 24): each bug put back as it was.
	{"edges: a reader's own min_ttl waits on any request, unbounded", "path_token.go",
		"tok, err := b.fetch(ctx, mount, cached, forFresher, b.fresherWait)", "tok, err := b.fetch(ctx, mount, cached, forFresher, 0)", "a reader waiting on a hanging Mirakl"},
	{"edges: a refusal stops background refreshes", "gate.go",
		"	case g.failure == nil:\n		return false, nil\n", "	case g.failure == nil:\n		return false, nil\n	case purpose == forBackground && g.refusedLocked():\n		return false, g.closedLocked(g.reopensAt.Add(time.Hour))\n", "a hold that became a stop"},
	{"edges: an outage retried, not probed", "path_token.go",
		"fetched, err := mount.client.fetch(ctx, probe)", "fetched, err := mount.client.fetch(ctx, false)", "retries multiplying the gate's schedule"},
	{"edges: a failed restore is not tried again", "mount.go",
		"	if mount.restorePending.Load() && b.restoreToken(ctx, s, mount) { // token_store.go\n		mount.restorePending.Store(false)\n	}", "	b.restoreToken(ctx, s, mount)\n	mount.restorePending.Store(false)", "one failure remembered for the life of the process"},
	{"edges: the load runs on the first reader's context", "mount.go",
		"func (b *backend) currentMount(_ context.Context, s logical.Storage) (*mountState, error) {\n	if mount := b.mount.Load(); mount != nil && !mount.restorePending.Load() {\n		return mount, nil\n	}\n	b.mountWrites.Lock()\n	defer b.mountWrites.Unlock()\n	if b.alive.Err() != nil {\n		return nil, errMountClosed\n	}\n	ctx, cancel := context.WithTimeout(b.alive, mountLoadTimeout)",
		"func (b *backend) currentMount(readerCtx context.Context, s logical.Storage) (*mountState, error) {\n	if mount := b.mount.Load(); mount != nil && !mount.restorePending.Load() {\n		return mount, nil\n	}\n	b.mountWrites.Lock()\n	defer b.mountWrites.Unlock()\n	if b.alive.Err() != nil {\n		return nil, errMountClosed\n	}\n	ctx, cancel := context.WithTimeout(readerCtx, mountLoadTimeout)", "the wrong context (a failed restore is retried: the state keeps working, but the first reader's cancel fails the load for all)"},
	{"edges: no check at hand-out", "path_token.go",
		"		case tok.servable(b.now()):\n", "		default:\n", "a check on one path only"},
	{"edges: a restored token keeps the storing node's clock", "token_store.go",
		"min(timeLeft(now, entry.ExpiresAt), lifetime)", "timeLeft(now, entry.ExpiresAt)", "trusting another node's clock"},
	{"edges: holds on the monotonic clock only", "gate.go",
		"	case !passed(now, g.reopensAt):", "	case now.Before(g.reopensAt):", "a deadline on one clock"},
	{"edges: cancelled counted as error", "path_status.go",
		"	case errors.Is(err, errRequestCancelled) || errors.Is(err, context.Canceled):", "	case errors.Is(err, context.Canceled):", "a class unreachable through its path"},
	{"edges: the description cut before the secret is looked for", "client.go",
		"	if c.clientSecret != \"\" {\n		text = strings.ReplaceAll(text, c.clientSecret, redacted)\n	}\n	field := normaliseText(text)", "	field := normaliseText(text[:min(len(text), 4*maxDescriptionLen)])", "redaction outrun"},
	{"edges: headers unbounded", "client.go",
		"	transport.MaxResponseHeaderBytes = maxResponseHeaderBytes\n", "", "a limit left at Go's default"},
	{"edges: the same token again shortens its life", "path_token.go",
		"current != nil && current.AccessToken == fetched.AccessToken {", "current != nil && current.AccessToken == fetched.AccessToken && current == nil {", "an answer taken at its word"},
	{"edges: a renewal by the wall clock alone", "secret_token.go",
		"			left = min(left, tok.remaining(now))", "			_ = tok", "a deadline on one clock"},
	{"edges: a renewal past the token's lifetime", "secret_token.go",
		"		left = min(left, lifetime)", "		_ = lifetime", "a lease longer than its token"},
	{"edges: the token write ignores the mount's end", "token_store.go",
		"ctx, cancel := context.WithTimeout(b.alive, storedTokenWriteTimeout)", "ctx, cancel := context.WithTimeout(context.Background(), storedTokenWriteTimeout)", "the wrong context"},
	{"edges: a delete not serialised with a write", "path_config.go",
		"	b.configWrites.Lock()\n	defer b.configWrites.Unlock()\n	if err := b.dropStoredToken(ctx, req.Storage); err != nil { // token_store.go\n		return nil, err\n	}\n	if err := req.Storage.Delete", "	if err := b.dropStoredToken(ctx, req.Storage); err != nil { // token_store.go\n		return nil, err\n	}\n	if err := req.Storage.Delete", "a lock on one path only"},
	{"edges: a failed save leaves its client open", "path_config.go",
		"	if err := req.Storage.Put(ctx, entry); err != nil {\n		mount.close()\n", "	if err := req.Storage.Put(ctx, entry); err != nil {\n", "a resource left open on one error path"},
	{"edges: concurrent first loads each build a state", "mount.go",
		"	mount := b.mount.Load()\n	if mount == nil {", "	var mount *mountState\n	if true {", "a double check dropped"},
}
