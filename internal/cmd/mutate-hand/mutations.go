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
		"f.token, f.err = send(c.ctx)", "f.token, f.err = send(context.Background())", "the wrong context"},

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
	{"token: remaining by the monotonic clock alone", "token_cache.go",
		"return min(t.expiresAt.Sub(now), t.expiresAt.Round(0).Sub(now.Round(0)))", "return t.expiresAt.Sub(now)", "time across a suspend"},
	{"token: lease rounded to nearest", "path_token.go",
		"left := max(tok.remaining(b.now()).Truncate(time.Second), time.Second)", "left := max(tok.remaining(b.now()).Round(time.Second), time.Second)", "a lease outliving its token"},
	{"token: a healthy reader below min_ttl does not wait", "path_token.go",
		"	if failure == nil {\n		tok, err := b.fetch(ctx, mount, cached, forReader)", "	if false {\n		tok, err := b.fetch(ctx, mount, cached, forReader)", "min_ttl not meaning what it says"},
	// The stored token.
	{"store: a token of another config is served", "token_store.go",
		"	if !hmac.Equal(entry.ConfigBinding, configBinding(mount.config, entry.ConfigSalt)) {", "	if false && !hmac.Equal(entry.ConfigBinding, configBinding(mount.config, entry.ConfigSalt)) {", "a check left out"},
	{"store: an expired stored token is served", "token_store.go",
		"if now := b.now(); !tok.servable(now) {", "if now := b.now(); false && !tok.servable(now) {", "a check left out"},
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
}
