package mirakl

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// recordingHandler keeps the last request it passed on.
type recordingHandler struct {
	next http.Handler
	seen **http.Request
}

func (h *recordingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	*h.seen = r.Clone(r.Context())
	h.next.ServeHTTP(w, r)
}

func newLoopbackServer(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}
