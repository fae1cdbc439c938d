package gateway

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kong-plugin-matrix/kong-sim/internal/pluginserver"
)

const (
	priority1Source = "../../../../tests/plugins/go-hello-priority1"
	responseSource  = "../../../../tests/plugins/go-response"
	imagesInclude   = "../../../plugins/upstream.conf"
	imagesUpstream  = "127.0.0.1:18000"
	upstreamAnswer  = "hello from kong-plugin-matrix\n"
)

// imagesConfig is images/kong.yml with its plugin entry given to plugin,
// and images/plugins/upstream.conf, both moved to a free port (a test must
// not need 18000); it checks first that the two name the same upstream.
func imagesConfig(t *testing.T, plugin string) (kongYML, include string) {
	t.Helper()
	yml, err := os.ReadFile(imagesKongYML)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(imagesInclude)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(yml), "url: http://"+imagesUpstream+"\n") || !strings.Contains(string(conf), "listen "+imagesUpstream+";") {
		t.Fatalf("kong.yml and upstream.conf do not both name %s", imagesUpstream)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := l.Addr().String()
	l.Close()
	include = filepath.Join(t.TempDir(), "upstream.conf")
	if err := os.WriteFile(include, []byte(strings.ReplaceAll(string(conf), imagesUpstream, free)), 0o600); err != nil {
		t.Fatal(err)
	}
	kongYML = strings.ReplaceAll(string(yml), imagesUpstream, free)
	return strings.ReplaceAll(kongYML, "name: example-plugin", "name: "+plugin), include
}

// A plugin of priority 1, below request-termination's 2, runs on every
// request of the images' config: the route is proxied, not terminated.
func TestALowPriorityAccessPluginRunsOnEveryProxiedRequest(t *testing.T) {
	kongYML, include := imagesConfig(t, "go-hello-priority1")
	n := startPluginNode(t, "3.6.0.0", 2, kongYML, priority1Source, include)
	for i := 0; i < 20; i++ {
		resp, body := n.get(t, "/hello")
		if resp.StatusCode != http.StatusOK || body != upstreamAnswer {
			t.Fatalf("request %d: %d %q\n%s", i, resp.StatusCode, body, n.log.String())
		}
		if got := resp.Header.Get("X-Hello-From-Go"); !strings.HasPrefix(got, "Go says hello to 127.0.0.1") {
			t.Fatalf("request %d: the plugin did not run: %v", i, resp.Header)
		}
		if resp.Header.Get("Via") != "kong/3.6.0.0-enterprise-edition" || resp.Header.Get("X-Kong-Upstream-Latency") == "" ||
			resp.Header.Get("X-Kong-Proxy-Latency") == "" || resp.Header.Get("Server") != "openresty" ||
			resp.Header.Get("X-Kong-Response-Latency") != "" {
			t.Fatalf("request %d: not Kong's proxied headers: %v", i, resp.Header)
		}
	}
}

// The Lua baseline is proxied to the same upstream, so the two routes stay comparable.
func TestTheImagesConfigRunsBothRoutes(t *testing.T) {
	kongYML, include := imagesConfig(t, "example-plugin")
	n := startPluginNode(t, "3.9.0.0", 2, kongYML, pluginSource, include)
	resp, body := n.get(t, "/hello-lua")
	if resp.StatusCode != http.StatusOK || body != upstreamAnswer {
		t.Fatalf("/hello-lua: %d %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Example-Message"); got != "lua" {
		t.Errorf("/hello-lua: X-Example-Message = %q, want the Lua plugin's %q", got, "lua")
	}
	if _, set := resp.Header["X-Example-Config"]; set {
		t.Error("/hello-lua ran the Go plugin: it must be scoped to /hello")
	}
	if got := resp.Header.Get("Via"); got != "1.1 kong/3.9.0.0-enterprise-edition" {
		t.Errorf("3.9 Via = %q", got)
	}
	resp, body = n.get(t, "/hello")
	if resp.StatusCode != http.StatusOK || body != upstreamAnswer || !strings.HasPrefix(resp.Header.Get("X-Example-Message"), "New() calls: ") {
		t.Errorf("/hello: %d %q, X-Example-Message = %q", resp.StatusCode, body, resp.Header.Get("X-Example-Message"))
	}
	if values, set := resp.Header["X-Example-Config"]; !set || values[0] != "" {
		t.Errorf("/hello: X-Example-Config = %q (set: %v), want empty", values, set)
	}
}

const responseKongYML = `_format_version: "3.0"
services:
  - name: proxied
    url: http://UPSTREAM/base
    routes:
      - name: proxied
        paths: [/proxied]
        plugins:
          - name: go-response
      - name: terminated
        paths: [/terminated]
        plugins:
          - name: go-response
          - name: request-termination
            config:
              status_code: 200
              message: terminated
`

// The response phase runs after the upstream answered, and not at all when
// the request was answered in access (a delayed response is never proxied).
func TestTheResponsePhaseRunsOnProxiedRequestsOnly(t *testing.T) {
	var seenPath string
	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenPath = r.URL.RequestURI()
		w.Header().Set("X-From-Upstream", r.Header.Get("X-Forwarded-Path"))
		_, _ = w.Write([]byte("upstream"))
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = upstream.Serve(l) }()
	t.Cleanup(func() { upstream.Close() })
	kongYML := strings.ReplaceAll(responseKongYML, "UPSTREAM", l.Addr().String())
	n := startPluginNode(t, "3.4.1.0", 1, kongYML, responseSource, "")

	resp, body := n.get(t, "/proxied/x?q=1")
	if resp.StatusCode != http.StatusOK || body != "upstream" || resp.Header.Get("X-Response-Phase") != "ran" {
		t.Fatalf("/proxied: %d %q %v\n%s", resp.StatusCode, body, resp.Header, n.log.String())
	}
	if seenPath != "/base/x?q=1" || resp.Header.Get("X-From-Upstream") != "/proxied/x" {
		t.Errorf("upstream saw %q (X-Forwarded-Path %q), want /base/x?q=1 (strip_path)", seenPath, resp.Header.Get("X-From-Upstream"))
	}
	resp, body = n.get(t, "/terminated")
	if body != `{"message":"terminated"}` || resp.Header.Get("X-Response-Phase") != "" {
		t.Errorf("/terminated: %q, X-Response-Phase %q: the response phase ran on a terminated request", body, resp.Header.Get("X-Response-Phase"))
	}
}

func TestPhasesNoPluginServerCanRunAreRefused(t *testing.T) {
	for _, phase := range []string{"header_filter", "body_filter"} {
		err := checkPhases(pluginserver.PluginInfo{Name: "p", Phases: []string{"access", phase}})
		if err == nil || !strings.Contains(err.Error(), `plugin "p" lists phase "`+phase+`"`) {
			t.Errorf("%s: %v", phase, err)
		}
	}
	if err := checkPhases(pluginserver.PluginInfo{Name: "p", Phases: []string{"rewrite", "access", "response", "log"}}); err != nil {
		t.Errorf("the PDKs' phases: %v", err)
	}
}
