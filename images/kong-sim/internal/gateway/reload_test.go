package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
)

func TestReloadGivesFreshSeqsAndKeepsPluginIDs(t *testing.T) {
	for version, want := range map[string][2][]int64{
		"3.4.0.0": {{0, 0, 0}, {1, 1, 1}}, // per-worker next_seq goes on counting
		"3.4.1.0": {{1, 2, 3}, {4, 5, 6}}, // the node-wide shm counter
	} {
		g, log := workersOf(t, version, 3, "", false)
		for i, w := range g.workers {
			if seq := w.conf(testPluginID).Seq; seq != want[0][i] {
				t.Errorf("%s worker %d: __seq__ %d before the reload, want %d", version, i, seq, want[0][i])
			}
		}
		g.Reload(&config.Declarative{Plugins: []config.Plugin{testPlugin}}, "h")
		for i, w := range g.workers {
			conf := w.conf(testPluginID)
			if conf.Seq != want[1][i] || conf.PluginID != testPluginID {
				t.Errorf("%s worker %d: %+v after the reload, want seq %d and the same id", version, i, conf, want[1][i])
			}
		}
		if n := strings.Count(log.String(), "declarative reconfigure took"); n != 3 {
			t.Errorf("%s: %d `declarative reconfigure took` lines, want one per worker:\n%s", version, n, log.String())
		}
	}
}

// reloadKongYML has the images' shape: the Go plugin with a fixed id on
// /hello, its message set by the test.
func reloadKongYML(message string) string {
	return `_format_version: "3.0"
services:
  - name: hello
    url: http://127.0.0.1:9
    routes:
      - name: hello
        paths: [/hello]
        plugins:
          - name: example-plugin
            id: ddc8f06e-572c-4b25-ab9b-23c5d3950cc2
            config: {message: "` + message + `"}
          - name: request-termination
            config: {status_code: 200, message: hello from kong-sim}
`
}

func (n *node) postConfig(t *testing.T, contentType string, body []byte) (int, string) {
	t.Helper()
	resp, err := client.Post(n.admin+"/config", contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}

// configsSeen sends count requests to /hello and returns the
// X-Example-Config values the plugin answered with.
func (n *node) configsSeen(t *testing.T, count int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := 0; i < count; i++ {
		resp, _ := n.get(t, "/hello")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		seen[resp.Header.Get("X-Example-Config")]++
	}
	return seen
}

func TestReloadReachesThePluginAsEachFamilyDoes(t *testing.T) {
	// The requests spread over both workers (one new connection each).
	cases := map[string]string{
		"3.4.0.0": "second", // seq: the new seq starts a new instance with the new config
		"3.5.0":   "second",
		"3.4.1.0": "second", // key: every event starts a new instance anyway
		"3.6.0.0": "first",  // plugin_id alone: the old instance is reused, the new config never arrives
		"3.4.3.1": "first",
		"3.6.1.2": "second", // seq and plugin id (Kong PR #12718, backported)
		"3.7.0.0": "second",
		"3.9.0.0": "second",
	}
	for version, want := range cases {
		t.Run(version, func(t *testing.T) {
			n := startNodeWith(t, version, 2, reloadKongYML("first"))
			if seen := n.configsSeen(t, 20); seen["first"] != 20 {
				t.Fatalf("before the reload: %v", seen)
			}
			before := n.newCalls(t)
			config, _ := yamlToJSON(t, reloadKongYML("second"))
			if status, body := n.postConfig(t, "application/json", config); status != http.StatusCreated {
				t.Fatalf("POST /config: %d %s", status, body)
			}
			if seen := n.configsSeen(t, 20); seen[want] != 20 {
				t.Errorf("after the reload: %v, want every response from config %q", seen, want)
			}
			if want == "first" && n.newCalls(t) != before {
				t.Errorf("plugin_id family: New() went from %d to %d: the old instances must be reused", before, n.newCalls(t))
			}
			if !strings.Contains(n.log.String(), "declarative reconfigure took") {
				t.Errorf("no reconfigure line:\n%s", n.log.String())
			}
		})
	}
}

func yamlToJSON(t *testing.T, text string) ([]byte, error) {
	t.Helper()
	g := &Gateway{env: config.Env{Plugins: []string{"example-plugin", "request-termination"}}}
	decl, err := config.ParseDeclarative([]byte(text), g.enabled())
	if err != nil {
		t.Fatal(err)
	}
	services := []any{}
	for _, s := range decl.Services {
		routes := []any{}
		for _, r := range decl.Routes {
			plugins := []any{}
			for _, p := range decl.Plugins {
				if p.RouteID == r.ID {
					plugins = append(plugins, map[string]any{"id": p.ID, "name": p.Name, "config": p.Config})
				}
			}
			routes = append(routes, map[string]any{"name": r.Name, "paths": r.Paths, "plugins": plugins})
		}
		services = append(services, map[string]any{"name": s.Name, "url": "http://127.0.0.1:9", "routes": routes})
	}
	return json.Marshal(map[string]any{"_format_version": "3.0", "services": services})
}

func TestPostConfigForms(t *testing.T) {
	n := startNodeWith(t, "3.7.0.0", 1, reloadKongYML("first"))
	asJSON, _ := yamlToJSON(t, reloadKongYML("json body"))
	field, _ := json.Marshal(map[string]string{"config": reloadKongYML("json field")})
	form := url.Values{"config": {reloadKongYML("form field")}}.Encode()
	var multi bytes.Buffer
	writer := multipart.NewWriter(&multi)
	_ = writer.WriteField("config", reloadKongYML("multipart field"))
	writer.Close()
	var upload bytes.Buffer
	uploader := multipart.NewWriter(&upload)
	part, _ := uploader.CreateFormFile("config", "kong.yml") // curl -F config=@kong.yml
	_, _ = part.Write([]byte(reloadKongYML("uploaded file")))
	uploader.Close()
	forms := []struct {
		contentType string
		body        []byte
		message     string
	}{
		{"application/json", asJSON, "json body"},
		{"application/json; charset=utf-8", field, "json field"},
		{"application/x-www-form-urlencoded", []byte(form), "form field"},
		{writer.FormDataContentType(), multi.Bytes(), "multipart field"},
		{uploader.FormDataContentType(), upload.Bytes(), "uploaded file"},
		{"text/yaml", []byte(reloadKongYML("yaml body")), "yaml body"},
		{"", []byte(reloadKongYML("bare body")), "bare body"},
	}
	for _, f := range forms {
		status, body := n.postConfig(t, f.contentType, f.body)
		if status != http.StatusCreated || !strings.Contains(body, `"message":"`+f.message+`"`) ||
			!strings.Contains(body, `"ddc8f06e-572c-4b25-ab9b-23c5d3950cc2":{`) {
			t.Errorf("%s: %d %s", f.message, status, body)
			continue
		}
		if seen := n.configsSeen(t, 3); seen[f.message] != 3 {
			t.Errorf("%s: the plugin answered %v", f.message, seen)
		}
	}
}

func TestPostConfigRefusesBadConfigs(t *testing.T) {
	n := startNodeWith(t, "3.7.0.0", 1, reloadKongYML("first"))
	cases := []struct {
		contentType, body, message string
	}{
		{"application/json", ``, `"message":"expected a declarative configuration"`},
		{"application/x-www-form-urlencoded", `other=1`, `"message":"expected a declarative configuration"`},
		{"text/yaml", `services: []`, `"message":"declarative config is invalid: in '_format_version': required field missing"`},
		{"text/yaml", "_format_version: \"3.0\"\nplugins:\n  - name: response-transformer\n    config: {remove: {headers: [X-A]}}\n",
			`in plugin 'response-transformer' (`},
		{"text/yaml", "_format_version: \"3.0\"\nplugins:\n  - name: nope\n", `plugin 'nope' not enabled`},
		{"application/json", `{"_format_version": "3.0", "routes": [{"paths": ["hello"]}]}`, `in 'paths': should start with`},
		{"application/json", `{"_format_version": "3.0", "routes": [`, `"message":"declarative config is invalid: failed parsing`},
	}
	for _, c := range cases {
		status, body := n.postConfig(t, c.contentType, []byte(c.body))
		if status != http.StatusBadRequest || !strings.Contains(body, c.message) {
			t.Errorf("%q: %d %s, want 400 with %s", c.body, status, body, c.message)
		}
	}
	if seen := n.configsSeen(t, 3); seen["first"] != 3 {
		t.Errorf("a refused config changed the node: %v", seen)
	}
	resp, err := client.Get(n.admin + "/config")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /config: %d", resp.StatusCode)
	}
}
