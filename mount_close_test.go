package mirakl

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// heldWriter holds the first log line that contains needle until release
// is closed, and reports on reached when it does: a way to keep a request's
// goroutine at one point of its way.
type heldWriter struct {
	needle  []byte
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (w *heldWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, w.needle) {
		w.once.Do(func() {
			close(w.reached)
			<-w.release
		})
	}
	return len(p), nil
}

// Replacing a mount state waits until its request has ended: when a config
// delete returns, nothing of the old config is still running.
func TestConfigDeleteWaitsForTheOldRequest(t *testing.T) {
	t.Parallel()
	fake := fakemirakl.New(testClientID, testClientSecret, fakemirakl.WithTokenPrefix(testTokenPrefix))
	t.Cleanup(fake.Close)
	held := &heldWriter{needle: []byte("fetched a new token"), reached: make(chan struct{}), release: make(chan struct{})}
	storage := &logical.InmemStorage{}
	config := logical.TestBackendConfig()
	config.StorageView = storage
	config.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: held})
	b, err := newBackend(context.Background(), config, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupWithin(t, b) })
	request := func(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
		return b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: storage, MountPoint: "mirakl/"})
	}
	resp, err := request(logical.UpdateOperation, "config", map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": fake.TokenURL(), "verify": false})
	requireOK(t, resp, err)

	go func() { _, _ = request(logical.ReadOperation, "token", nil) }() // its request is held after it got the token
	receive(t, "the request to be held", held.reached)
	deleted := make(chan error, 1)
	go func() {
		_, err := request(logical.DeleteOperation, "config", nil)
		deleted <- err
	}()
	select {
	case err := <-deleted:
		t.Fatalf("the delete returned (%v) while the old config's request still ran", err)
	case <-time.After(200 * time.Millisecond): // a bound on a wrong answer, never on a right one
	}
	close(held.release)
	if err := receive(t, "the delete, once the old request ended", deleted); err != nil {
		t.Fatal(err)
	}
}
