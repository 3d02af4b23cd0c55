// Command fake-mirakl serves the fake Mirakl token endpoint (the one every
// test uses) on loopback, for the local demo (`make dev`).
//
// It prints the token URL to put in token_url on its first line of standard
// output, then serves until interrupted.
//
//	go run ./internal/cmd/fake-mirakl -client-id demo-client -client-secret demo-secret
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on (port 0: any free port)")
	clientID := flag.String("client-id", "demo-client", "the client ID the fake accepts")
	clientSecret := flag.String("client-secret", "demo-secret", "the client secret the fake accepts")
	expiresIn := flag.Int("expires-in", 3599, "expires_in of issued tokens, in seconds (Mirakl: 3599)")
	tokenPrefix := flag.String("token-prefix", "fake-mirakl-", "prefix of issued access tokens")
	flag.Parse()

	if err := run(*addr, *clientID, *clientSecret, *expiresIn, *tokenPrefix); err != nil {
		log.SetFlags(0)
		log.Fatalf("fake-mirakl: %v", err)
	}
}

func run(addr, clientID, clientSecret string, expiresIn int, tokenPrefix string) error {
	if expiresIn <= 0 {
		return fmt.Errorf("-expires-in must be a positive number of seconds, not %d", expiresIn)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	// A fake that hands out tokens for any password must not be reachable
	// from the network.
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr must be a loopback IP address such as 127.0.0.1:8300, not %q", addr)
	}

	fake := fakemirakl.NewHandler(clientID, clientSecret,
		fakemirakl.WithExpiresIn(expiresIn), fakemirakl.WithTokenPrefix(tokenPrefix))
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	server := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()

	fmt.Printf("http://%s%s\n", listener.Addr(), fakemirakl.TokenPath)
	log.Printf("fake-mirakl: serving on %s for client %q, tokens live %ds; counters at http://%s/_fake/stats",
		listener.Addr(), clientID, expiresIn, listener.Addr())

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
