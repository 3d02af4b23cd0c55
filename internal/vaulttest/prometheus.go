package vaulttest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The environment variables that name Prometheus's binaries; by default they
// are looked up on PATH.
const (
	envPrometheusBin = "PROMETHEUS_BIN"
	envPromtoolBin   = "PROMTOOL_BIN"
)

const howToGetPrometheus = "install Prometheus, which brings promtool (Debian/Ubuntu: apt-get install prometheus, as .ci/run does), " +
	"or set " + envPrometheusBin + " and " + envPromtoolBin

// PrometheusBin is the prometheus binary ($PROMETHEUS_BIN, else on PATH); a
// missing one fails the test (never skips it).
func PrometheusBin(t testing.TB) string {
	t.Helper()
	return lookBin(t, envPrometheusBin, "prometheus")
}

// PromtoolBin is the promtool binary ($PROMTOOL_BIN, else on PATH), as PrometheusBin.
func PromtoolBin(t testing.TB) string {
	t.Helper()
	return lookBin(t, envPromtoolBin, "promtool")
}

func lookBin(t testing.TB, env, name string) string {
	t.Helper()
	if bin := os.Getenv(env); bin != "" {
		return bin
	}
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("vaulttest: %s not found (%v): %s", name, err, howToGetPrometheus)
	}
	return bin
}

// Prometheus is a Prometheus server of the test's own: its storage in a
// directory of the test, listening on a loopback port.
type Prometheus struct {
	*Process
	// URL is where its HTTP API answers, such as http://127.0.0.1:41234.
	URL string
}

// StartPrometheus runs prometheus with configPath, its storage and log
// (prometheus.log) in the config's directory, on 127.0.0.1:port, and waits
// until it is ready. It stops with the test.
func StartPrometheus(t testing.TB, configPath string, port int) *Prometheus {
	t.Helper()
	dir := filepath.Dir(configPath)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	p := &Prometheus{URL: "http://" + listen}
	p.Process = startProcess(t, t, "prometheus", filepath.Join(dir, "prometheus.log"), nil, PrometheusBin(t),
		"--config.file="+configPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen,
		"--log.level=debug",
	)
	p.waitReady(t)
	return p
}

// waitReady waits until /-/ready answers 200, the process dies or readyTimeout passes.
func (p *Prometheus) waitReady(t testing.TB) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		err := p.ready(client)
		if err == nil {
			return
		}
		if p.Exited() {
			t.Fatalf("vaulttest: prometheus exited (%v) while waiting for it to be ready; log %s:\n%s",
				p.ExitError(), p.LogPath, tailFile(p.LogPath, 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("vaulttest: prometheus was not ready at %s/-/ready in %s: %v", p.URL, readyTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *Prometheus) ready(client *http.Client) error {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, p.URL+"/-/ready", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
