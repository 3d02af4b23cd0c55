package mirakl

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// Every failure class of the one voice (the fail* constants of client.go) is
// reachable, and reached here through the path that produces it: a token
// read through HandleRequest, answered 502 with the class in its message. A
// class added to client.go without a case here fails the test.
func TestEveryFailureClassIsReachable(t *testing.T) {
	t.Parallel()
	answer := func(status int, contentType, body string) func(string) string {
		return func(string) string {
			return "HTTP/1.1 " + strconv.Itoa(status) + " X\r\nContent-Type: " + contentType + "\r\nContent-Length: " +
				strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
		}
	}
	token := func(fields string) func(string) string { return answer(200, "application/json", "{"+fields+"}") }
	// dialing makes the transport's dial fail with err, as the network would.
	dialing := func(err error) func(*testEnv, *mountState) {
		return func(_ *testEnv, m *mountState) {
			m.client.http.HTTPClient.Transport.(*http.Transport).DialContext = func(context.Context, string, string) (net.Conn, error) { return nil, err }
		}
	}
	cases := map[string]struct {
		raw     func(body string) string    // a raw answer from a loopback server
		fault   *fakemirakl.Fault           // or the fake's fault
		tweak   func(*testEnv, *mountState) // or a change to the transport
		timeout string
	}{
		failTimeout: {fault: &fakemirakl.Fault{Delay: 10 * 1e9}, timeout: "1s"},
		failRefused: {},
		failReset:   {fault: &fakemirakl.Fault{Reset: true}},
		failClosed:  {raw: func(string) string { return "" }},
		failDNS:     {tweak: dialing(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "auth.mirakl.net", IsNotFound: true}})},
		failProxy: {tweak: func(_ *testEnv, m *mountState) {
			m.client.http.HTTPClient.Transport.(*http.Transport).Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: "127.0.0.1:1"})
		}},
		failUntrustedTLS:    {tweak: func(e *testEnv, m *mountState) {}},
		failTLSHandshake:    {raw: func(string) string { return "\x15\x03\x01\x00\x02\x02\x28" }},
		failMalformed:       {raw: func(string) string { return "HTTP/1.1 2OO OK\r\n\r\n" }},
		failRetryAfterLong:  {fault: &fakemirakl.Fault{Status: 429, Header: map[string]string{"Retry-After": "3600"}, Body: "slow down", ContentType: "text/plain"}},
		failNetwork:         {tweak: dialing(errors.New("something else"))},
		failRedirect:        {raw: answer(307, "text/plain", "moved")},
		failTooLarge:        {fault: &fakemirakl.Fault{BodySize: maxResponseBytes + 1}},
		failNoOAuthError:    {raw: answer(400, "text/html", "<html>bad</html>")},
		failUnexpected:      {raw: answer(501, "text/plain", "not implemented")},
		failNotJSON:         {raw: answer(200, "application/json", "hello")},
		failNoAccessToken:   {raw: token(`"token_type":"Bearer","expires_in":60`)},
		failBadAccessToken:  {raw: token(`"access_token":"a b","token_type":"Bearer","expires_in":60`)},
		failNoTokenType:     {raw: token(`"access_token":"abc","expires_in":60`)},
		failNotBearer:       {raw: token(`"access_token":"abc","token_type":"MAC","expires_in":60`)},
		failNoExpiresIn:     {raw: token(`"access_token":"abc","token_type":"Bearer"`)},
		failExpiresInNaN:    {raw: token(`"access_token":"abc","token_type":"Bearer","expires_in":"soon"`)},
		failBadInfoField:    {raw: token(`"access_token":"abc","token_type":"Bearer","expires_in":60,"target_app":"\u0007"`)},
		failUnregisteredErr: {raw: answer(401, "application/json", `{"error":"no_such_thing"}`)},
	}
	for _, class := range failureClassesOf(t) {
		tc, ok := cases[class]
		if !ok {
			t.Errorf("the failure class %s has no case here: add one that reaches it", class)
			continue
		}
		t.Run(class, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			config := map[string]any{"verify": false, "request_timeout": "5s"}
			if tc.timeout != "" {
				config["request_timeout"] = tc.timeout
			}
			switch class {
			case failUntrustedTLS: // the fake's own CA, which the engine does not trust
				untrusted := fakemirakl.NewTLS(testClientID, testClientSecret)
				t.Cleanup(untrusted.Close)
				config["token_url"] = untrusted.TokenURL()
			case failTLSHandshake: // a TLS alert where a ServerHello should be
				config["token_url"] = "https://" + tcpReplier(t, tc.raw("")) + fakemirakl.TokenPath
			case failProxy: // reached only through the (closed) proxy
				config["token_url"] = "https://127.0.0.1:9/oauth/token"
			case failRefused: // a port nobody listens on any more
				config["token_url"] = "http://" + closedPort(t) + fakemirakl.TokenPath
			default:
				if tc.raw != nil {
					config["token_url"] = rawServer(t, tc.raw)
				}
			}
			env.Configure(config)
			if tc.fault != nil {
				env.fake.FailRandomly(1, *tc.fault)
			}
			if tc.tweak != nil {
				mount, err := env.backend.currentMount(env.ctx, env.storage)
				if err != nil {
					t.Fatal(err)
				}
				tc.tweak(env, mount)
			}
			resp, err := env.request(logical.ReadOperation, "token", nil)
			want := class
			if class == failUnregisteredErr {
				want = "an unregistered OAuth error code"
			}
			requireStatus(t, resp, err, http.StatusBadGateway, want)
		})
	}
}

// failureClassesOf lists the values of client.go's fail* constants.
func failureClassesOf(t *testing.T) []string {
	t.Helper()
	file, err := parser.ParseFile(token.NewFileSet(), "client.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var classes []string
	for _, decl := range file.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			for i, name := range spec.(*ast.ValueSpec).Names {
				if !strings.HasPrefix(name.Name, "fail") || i >= len(spec.(*ast.ValueSpec).Values) {
					continue
				}
				lit, ok := spec.(*ast.ValueSpec).Values[i].(*ast.BasicLit)
				if !ok {
					continue
				}
				value, _ := strconv.Unquote(lit.Value)
				classes = append(classes, value)
			}
		}
	}
	if len(classes) < 20 {
		t.Fatalf("found %d failure classes in client.go: has its const block moved?", len(classes))
	}
	return classes
}

// closedPort is a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	_ = listener.Close()
	return addr
}

// tcpReplier answers whatever a connection sends first with reply, bytes as
// they are, below HTTP.
func tcpReplier(t *testing.T, reply string) string {
	t.Helper()
	return loopbackListener(t, func(conn net.Conn) {
		buf := make([]byte, 4096)
		if _, err := conn.Read(buf); err == nil {
			_, _ = conn.Write([]byte(reply))
		}
	})
}
