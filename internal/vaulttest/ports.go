package vaulttest

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

// handedOut remembers every port given in this process, so that parallel
// tests never receive the same one between asking and binding.
var (
	portsMu   sync.Mutex
	handedOut = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on and that
// this process has not handed out before.
func FreePort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1)[0]
}

// freePorts returns n distinct free ports (see FreePort).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	ports := make([]int, 0, n)
	for attempts := 0; len(ports) < n; attempts++ {
		if attempts > 100*n {
			t.Fatalf("vaulttest: could not find %d free loopback ports", n)
		}
		p, err := probePort(0)
		if err != nil {
			t.Fatalf("vaulttest: finding a free port: %v", err)
		}
		// Vault's dev server puts its cluster listener on the next port up:
		// keep that one free as well.
		if handedOut[p] || handedOut[p+1] {
			continue
		}
		if _, err := probePort(p + 1); err != nil {
			continue
		}
		handedOut[p], handedOut[p+1] = true, true
		ports = append(ports, p)
	}
	return ports
}

// probePort binds 127.0.0.1:port (0: any) and releases it, returning the port.
func probePort(port int) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
