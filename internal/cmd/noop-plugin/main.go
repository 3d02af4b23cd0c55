// Command noop-plugin is the benchmark's floor: an external secrets plugin,
// built on the same SDK and served the same way as vault-plugin-mirakl, whose
// only path returns a constant under a lease (see internal/noopplugin).
package main

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/noopplugin"
)

func main() {
	meta := &api.PluginAPIClientMeta{}
	if err := meta.FlagSet().Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	if err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: noopplugin.Factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	}); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{Name: "noop-plugin"}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}
