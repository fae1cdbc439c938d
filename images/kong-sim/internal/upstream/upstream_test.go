package upstream

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The file the plugin images carry is the one Kong includes and kong-sim serves.
func TestTheImagesIncludeFileParses(t *testing.T) {
	servers, err := Load("../../../plugins/upstream.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := Server{Listen: "127.0.0.1:18000", Status: 200, Body: "hello from kong-plugin-matrix\n"}
	if len(servers) != 1 || servers[0] != want {
		t.Fatalf("servers = %+v, want [%+v]", servers, want)
	}
}

func TestQuotedStringsAreReadAsNginxReadsThem(t *testing.T) {
	servers, err := Parse([]byte("server { listen 127.0.0.1:1; return 503 'a \\'b\\' \"c\"\\t\\\\ \\q'; } # done\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := servers[0].Body, "a 'b' \"c\"\t\\ \\q"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
}

// Anything outside the subset is refused with its line, never skipped.
func TestAnythingElseIsRefusedWithItsLine(t *testing.T) {
	cases := map[string]string{
		"": "no server block",
		"server {\n listen 127.0.0.1:1;\n return 200 x;\n location / { }\n}": `line 4: directive "location" is not supported`,
		"server { listen 127.0.0.1:1; return 200 x; proxy_pass http://a; }":  `directive "proxy_pass" is not supported`,
		"server { listen 127.0.0.1:1 reuseport; return 200 x; }":             "without options",
		"server { listen 8000; return 200 x; }":                              `listen "8000" is not ADDRESS:PORT`,
		"server { listen 127.0.0.1:1; return 302 http://x; }":                "not a redirect",
		"server { listen 127.0.0.1:1; return 200; }":                         "one `return CODE",
		"server { listen 127.0.0.1:1; }":                                     "no return directive",
		"server { return 200 x; }":                                           "no listen directive",
		"server { listen 127.0.0.1:1; return 200 x;":                         "not closed",
		"server { listen 127.0.0.1:1; return 200 \"x; }":                     "line 1: unterminated",
		"upstream u { }": "where a `server {` block was expected",
		"server { listen 127.0.0.1:1; access_log /dev/stdout; return 200 x; }":                       "access_log other than `off`",
		"server { listen 127.0.0.1:1; return 200 x }":                                                "does not end with ';'",
		"server { listen 127.0.0.1:1; return 200 x; }\nserver { listen 127.0.0.1:1; return 200 y; }": "two server blocks listen on 127.0.0.1:1",
	}
	for text, want := range cases {
		if _, err := Parse([]byte(text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", text, err, want)
		}
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	if _, err := Load("/nonexistent/upstream.conf"); err == nil || !strings.Contains(err.Error(), "nginx_http_include") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func TestTheHandlerAnswersLikeNginxReturn(t *testing.T) {
	server := httptest.NewServer(Server{Listen: "127.0.0.1:1", Status: 200, Body: "hi\n"}.Handler())
	defer server.Close()
	resp, err := http.Get(server.URL + "/any/path")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hi\n" || resp.Header.Get("Server") != "openresty" ||
		resp.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("%d %q %v", resp.StatusCode, body, resp.Header)
	}
}
