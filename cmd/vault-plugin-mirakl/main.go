// Command vault-plugin-mirakl is the Mirakl secrets engine, run by Vault as an external plugin.
package main

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	mirakl "github.com/vault-plugin-mirakl/vault-plugin-mirakl"
)

func main() {
	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}

	if err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: mirakl.Factory,
		// Only Vault versions without AutoMTLS use it.
		TLSProviderFunc: api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	}); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{Name: "vault-plugin-mirakl"}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}
