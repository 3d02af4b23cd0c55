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
	// JSON, so that Vault logs our lines at their level rather than all as debug.
	logger := hclog.New(&hclog.LoggerOptions{Name: "vault-plugin-mirakl", JSONFormat: true})
	// First, so that a Vault that dies from here on takes the plugin with it.
	exitWithParent(logger, os.Getppid())

	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(logger, err)
	}

	if err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: mirakl.Factory,
		// Only Vault versions without AutoMTLS use it.
		TLSProviderFunc: api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	}); err != nil {
		fatal(logger, err)
	}
}

func fatal(logger hclog.Logger, err error) {
	logger.Error("plugin shutting down", "error", err)
	os.Exit(1)
}
