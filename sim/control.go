package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io/ioutil"
	"net"
	"net/http"
	"strings"
	"sync"
)

// callCounter counts SOAP methods invoked on /sdk, by the name of the first
// element inside soapenv:Body, and disk uploads to /nfc/ as "NfcUpload".
type callCounter struct {
	mu      sync.Mutex
	total   int
	methods map[string]int
}

func newCallCounter() *callCounter {
	return &callCounter{methods: map[string]int{}}
}

func (c *callCounter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, nfcPath) && (r.Method == http.MethodPut || r.Method == http.MethodPost) {
			c.add("NfcUpload") // a disk upload to an import lease (http_nfc_lease.go)
		}
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/sdk") {
			body, err := ioutil.ReadAll(r.Body)
			_ = r.Body.Close()
			if err == nil {
				c.add(soapMethod(body))
			}
			// vcsim reads the body itself: hand it an intact copy.
			r.Body = ioutil.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r)
	})
}

func (c *callCounter) add(method string) {
	if method == "" {
		method = "(unparsed)"
	}
	c.mu.Lock()
	c.total++
	c.methods[method]++
	c.mu.Unlock()
}

func (c *callCounter) snapshot() map[string]interface{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.methods))
	for k, v := range c.methods {
		m[k] = v
	}
	return map[string]interface{}{"total": c.total, "methods": m}
}

func (c *callCounter) reset() {
	c.mu.Lock()
	c.total = 0
	c.methods = map[string]int{}
	c.mu.Unlock()
}

// soapMethod returns the local name of the first child of the SOAP Body.
func soapMethod(body []byte) string {
	dec := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok {
			if inBody {
				return se.Name.Local
			}
			inBody = se.Name.Local == "Body"
		}
	}
}

// control is the plain-HTTP loopback side channel for tests. Add routes with
// handle; each route owns its own state.
type control struct {
	URL string
	mux *http.ServeMux
	srv *http.Server
}

func startControl(addr string, calls *callCounter) (*control, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &control{mux: http.NewServeMux()}
	c.srv = &http.Server{Handler: c.mux}
	c.URL = "http://" + l.Addr().String()

	c.handle("/calls", http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, calls.snapshot())
	})
	c.handle("/calls/reset", http.MethodPost, func(w http.ResponseWriter, r *http.Request) {
		calls.reset()
		writeJSON(w, http.StatusOK, calls.snapshot())
	})

	go func() { _ = c.srv.Serve(l) }()
	return c, nil
}

// handle registers an exact-path route answering one HTTP method.
func (c *control) handle(path, method string, h http.HandlerFunc) {
	c.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
			return
		}
		h(w, r)
	})
}

func (c *control) Close() error { return c.srv.Close() }

func writeJSON(w http.ResponseWriter, status int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}
