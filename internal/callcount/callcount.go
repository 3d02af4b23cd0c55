// Package callcount counts the calls a backend makes back into Vault: to its
// storage and to its system view. In an external plugin each of them is a
// gRPC round trip to the Vault server, which is why the benchmarks report
// them per read: they are the cost a profile of the plugin process shows
// and a wall-clock figure on a busy machine hides.
package callcount

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/helper/license"
	"github.com/hashicorp/vault/sdk/logical"
)

// Counter tallies calls by name ("storage.Get", "system.LocalMount", ...).
type Counter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *Counter) add(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = make(map[string]int)
	}
	c.calls[name]++
}

// Snapshot returns the counts so far.
func (c *Counter) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.calls)
}

// Total is the number of calls so far, of every kind.
func (c *Counter) Total() int {
	total := 0
	for _, n := range c.Snapshot() {
		total += n
	}
	return total
}

// Reset forgets the counts.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = nil
}

// Storage counts every call to the storage it wraps.
type Storage struct {
	logical.Storage
	Counter *Counter
}

func (s Storage) List(ctx context.Context, prefix string) ([]string, error) {
	s.Counter.add("storage.List")
	return s.Storage.List(ctx, prefix)
}

func (s Storage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	s.Counter.add("storage.Get")
	return s.Storage.Get(ctx, key)
}

func (s Storage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	s.Counter.add("storage.Put")
	return s.Storage.Put(ctx, entry)
}

func (s Storage) Delete(ctx context.Context, key string) error {
	s.Counter.add("storage.Delete")
	return s.Storage.Delete(ctx, key)
}

// SystemView counts the calls to the system view it wraps that a request
// could make (the others, such as plugin lookups, pass through uncounted).
type SystemView struct {
	logical.SystemView
	Counter *Counter
}

func (s SystemView) DefaultLeaseTTL() time.Duration {
	s.Counter.add("system.DefaultLeaseTTL")
	return s.SystemView.DefaultLeaseTTL()
}

func (s SystemView) MaxLeaseTTL() time.Duration {
	s.Counter.add("system.MaxLeaseTTL")
	return s.SystemView.MaxLeaseTTL()
}

func (s SystemView) Tainted() bool {
	s.Counter.add("system.Tainted")
	return s.SystemView.Tainted()
}

func (s SystemView) CachingDisabled() bool {
	s.Counter.add("system.CachingDisabled")
	return s.SystemView.CachingDisabled()
}

func (s SystemView) LocalMount() bool {
	s.Counter.add("system.LocalMount")
	return s.SystemView.LocalMount()
}

func (s SystemView) ReplicationState() consts.ReplicationState {
	s.Counter.add("system.ReplicationState")
	return s.SystemView.ReplicationState()
}

func (s SystemView) HasFeature(feature license.Features) bool {
	s.Counter.add("system.HasFeature")
	return s.SystemView.HasFeature(feature)
}

func (s SystemView) MlockEnabled() bool {
	s.Counter.add("system.MlockEnabled")
	return s.SystemView.MlockEnabled()
}

func (s SystemView) EntityInfo(entityID string) (*logical.Entity, error) {
	s.Counter.add("system.EntityInfo")
	return s.SystemView.EntityInfo(entityID)
}

func (s SystemView) GroupsForEntity(entityID string) ([]*logical.Group, error) {
	s.Counter.add("system.GroupsForEntity")
	return s.SystemView.GroupsForEntity(entityID)
}

func (s SystemView) PluginEnv(ctx context.Context) (*logical.PluginEnvironment, error) {
	s.Counter.add("system.PluginEnv")
	return s.SystemView.PluginEnv(ctx)
}

func (s SystemView) VaultVersion(ctx context.Context) (string, error) {
	s.Counter.add("system.VaultVersion")
	return s.SystemView.VaultVersion(ctx)
}

func (s SystemView) ClusterID(ctx context.Context) (string, error) {
	s.Counter.add("system.ClusterID")
	return s.SystemView.ClusterID(ctx)
}

// Config returns a copy of conf whose storage and system view count their
// calls into c.
func Config(conf *logical.BackendConfig, c *Counter) *logical.BackendConfig {
	counted := *conf
	counted.StorageView = Storage{Storage: conf.StorageView, Counter: c}
	counted.System = SystemView{SystemView: conf.System, Counter: c}
	return &counted
}
