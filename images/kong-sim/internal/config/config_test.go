package config

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
	"github.com/kong-plugin-matrix/kong-sim/internal/reuse"
)

func lookup(vars map[string]string) Lookup {
	return func(name string) string { return vars[name] }
}

func noFiles(string) bool { return false }

func composeEnv() map[string]string {
	return map[string]string{
		"KONG_SIM_VERSION":                           "3.4.1.0",
		"KONG_DATABASE":                              "off",
		"KONG_DECLARATIVE_CONFIG":                    "/etc/kong/kong.yml",
		"KONG_PLUGINS":                               "bundled,example-plugin",
		"KONG_PLUGINSERVER_NAMES":                    "example-plugin",
		"KONG_PLUGINSERVER_EXAMPLE_PLUGIN_QUERY_CMD": "/usr/local/bin/example-plugin -dump",
		"KONG_LOG_LEVEL":                             "debug",
		"KONG_NGINX_WORKER_PROCESSES":                "4",
		"KONG_ADMIN_LISTEN":                          "0.0.0.0:8001",
		"KONG_PROXY_ACCESS_LOG":                      "/dev/stdout",
		"KONG_PROXY_ERROR_LOG":                       "/dev/stderr",
		"KONG_PROXY_LISTEN":                          "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl",
		"KONG_STATUS_LISTEN":                         "0.0.0.0:8100",
		"KONG_PLUGINSERVER_UNUSED_ONE":               "ignored",
	}
}

func TestFromEnvReadsTheComposeSettings(t *testing.T) {
	env, err := FromEnv(lookup(composeEnv()), func(p string) bool { return p == "/usr/local/bin/example-plugin" })
	if err != nil {
		t.Fatal(err)
	}
	if env.Release.Name != "ee-key-bug" || env.Release.Reuse != reuse.Key || env.LogLevel != konglog.Debug || env.Workers != 4 {
		t.Errorf("model %s, level %s, workers %d", env.Release.Reuse, env.LogLevel, env.Workers)
	}
	if env.ProxyListen != "0.0.0.0:8000" || env.AdminListen != "0.0.0.0:8001" || env.StatusListen != "0.0.0.0:8100" {
		t.Errorf("listeners %q %q %q", env.ProxyListen, env.AdminListen, env.StatusListen)
	}
	want := PluginServer{
		Name:         "example-plugin",
		Socket:       "/usr/local/kong/example-plugin.socket",
		StartCommand: "/usr/local/bin/example-plugin",
		QueryCommand: "/usr/local/bin/example-plugin -dump",
	}
	if len(env.PluginServers) != 1 || env.PluginServers[0] != want {
		t.Errorf("plugin servers %+v, want [%+v]", env.PluginServers, want)
	}
	if len(env.Plugins) != len(BundledPlugins)+1 || env.Plugins[len(env.Plugins)-1] != "example-plugin" {
		t.Errorf("plugins %v", env.Plugins)
	}
	if env.ServerHeader() != "kong/3.4.1.0-enterprise-edition" {
		t.Errorf("server header %q", env.ServerHeader())
	}
}

func TestFromEnvDefaults(t *testing.T) {
	env, err := FromEnv(lookup(map[string]string{"KONG_SIM_VERSION": "3.6.1", "KONG_PLUGINSERVER_NAMES": "My-Plugin"}), noFiles)
	if err != nil {
		t.Fatal(err)
	}
	if env.ProxyListen != "0.0.0.0:8000" || env.AdminListen != "127.0.0.1:8001" || env.StatusListen != "" {
		t.Errorf("listeners %q %q %q", env.ProxyListen, env.AdminListen, env.StatusListen)
	}
	if env.Workers != runtime.NumCPU() || env.LogLevel != konglog.Notice || env.Release.Reuse != reuse.PluginID {
		t.Errorf("workers %d level %s model %s", env.Workers, env.LogLevel, env.Release.Reuse)
	}
	server := env.PluginServers[0]
	if server.Name != "my-plugin" || server.Socket != "/usr/local/kong/my-plugin.socket" || server.StartCommand != "" {
		t.Errorf("plugin server %+v", server)
	}
	if env.LogPath(env.ProxyErrorLog) != "/usr/local/kong/logs/error.log" {
		t.Errorf("error log %q", env.LogPath(env.ProxyErrorLog))
	}
}

func TestFromEnvModelOverrideAndRefusals(t *testing.T) {
	vars := map[string]string{"KONG_SIM_VERSION": "9.9.9.9.9", "KONG_SIM_REUSE_MODEL": "seq"}
	if env, err := FromEnv(lookup(vars), noFiles); err != nil || env.Release.Reuse != reuse.Seq {
		t.Errorf("override: %v %v", env.Release.Reuse, err)
	}
	refused := []map[string]string{
		{"KONG_SIM_VERSION": "3.3.0"},
		{},
		{"KONG_SIM_VERSION": "3.4.0", "KONG_SIM_REUSE_MODEL": "always"},
		{"KONG_SIM_VERSION": "3.4.0", "KONG_NGINX_WORKER_PROCESSES": "zero"},
		{"KONG_SIM_VERSION": "3.4.0", "KONG_LOG_LEVEL": "loud"},
		{"KONG_SIM_VERSION": "3.4.0", "KONG_DATABASE": "postgres"},
		{"KONG_SIM_VERSION": "3.4.0", "KONG_PROXY_LISTEN": "0.0.0.0:8443 ssl"},
	}
	for _, vars := range refused {
		if _, err := FromEnv(lookup(vars), noFiles); err == nil {
			t.Errorf("FromEnv(%v) succeeded, want an error", vars)
		}
	}
}

// kongYML is the project's own declarative config, the file every stack runs with.
func kongYML(t *testing.T) []byte {
	t.Helper()
	text, err := os.ReadFile("../../../kong.yml")
	if err != nil {
		t.Fatalf("reading images/kong.yml: %v", err)
	}
	return text
}

func knownNames(names ...string) func(string) bool {
	return func(name string) bool {
		for _, n := range names {
			if n == name {
				return true
			}
		}
		return false
	}
}

var imagesPlugins = knownNames("example-plugin", "request-termination", "response-transformer")

func TestParseDeclarative(t *testing.T) {
	decl, err := ParseDeclarative(kongYML(t), imagesPlugins)
	if err != nil {
		t.Fatal(err)
	}
	if len(decl.Services) != 1 || len(decl.Routes) != 2 || len(decl.Plugins) != 2 {
		t.Fatalf("entities: %+v", decl)
	}
	if got := decl.Services[0].URL.String(); got != "http://127.0.0.1:18000" {
		t.Errorf("service url %q, want the upstream of images/plugins/upstream.conf", got)
	}
	hello, lua := decl.Routes[0], decl.Routes[1]
	if hello.Name != "hello" || hello.Paths[0] != "/hello" || hello.ServiceID != decl.Services[0].ID || !hello.StripPath {
		t.Errorf("route %+v", hello)
	}
	if lua.Name != "hello-lua" || lua.Paths[0] != "/hello-lua" || lua.ServiceID != decl.Services[0].ID {
		t.Errorf("route %+v", lua)
	}
	plugin, transformer := decl.Plugins[0], decl.Plugins[1]
	// A fixed id, so a reload (POST /config) sends the same plugin back.
	if plugin.Name != "example-plugin" || plugin.ID != "ddc8f06e-572c-4b25-ab9b-23c5d3950cc2" ||
		plugin.RouteID != hello.ID || plugin.ServiceID != "" || !strings.HasPrefix(plugin.Key, "plugins:example-plugin:") {
		t.Errorf("example-plugin must be scoped to route hello with its fixed id: %+v", plugin)
	}
	headers := transformer.Config["add"].(map[string]any)["headers"].([]any)
	if transformer.Name != "response-transformer" || transformer.RouteID != lua.ID ||
		len(headers) != 1 || headers[0] != "X-Example-Message:lua" || len(transformer.ID) != 36 {
		t.Errorf("hello-lua's response-transformer %+v", transformer)
	}
	again, _ := ParseDeclarative(kongYML(t), imagesPlugins)
	if again.Plugins[1].ID != transformer.ID {
		t.Error("plugin ids must be stable across loads")
	}
}

func TestServicesNeedAnHTTPURL(t *testing.T) {
	for url, want := range map[string]string{
		"":                    "kong-sim needs each service's url",
		"https://example.com": "kong-sim proxies http:// only",
		"http://":             "is not http://HOST[:PORT][/PATH]",
		"http://a:1/p?q=1":    "is not http://HOST[:PORT][/PATH]",
	} {
		text := "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: \"" + url + "\"\n"
		if _, err := ParseDeclarative([]byte(text), imagesPlugins); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("url %q: %v, want %q", url, err, want)
		}
	}
	decl, err := ParseDeclarative([]byte("_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://up/base\n"), imagesPlugins)
	if err != nil || decl.Services[0].URL.Host != "up:80" || decl.Services[0].URL.Path != "/base" {
		t.Errorf("%v %+v", err, decl)
	}
}

func TestParseDeclarativeRefusesUnknownPlugins(t *testing.T) {
	_, err := ParseDeclarative(kongYML(t), knownNames("request-termination", "response-transformer"))
	want := "in 'services': in entry 1 of 'services': in 'routes': in entry 1 of 'routes': in 'plugins': in entry 1 of 'plugins': " +
		"in 'name': plugin 'example-plugin' not enabled; add it to the 'plugins' configuration property"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	global := "_format_version: \"3.0\"\nplugins:\n  - name: example-plugin\n"
	_, err = ParseDeclarative([]byte(global), knownNames("request-termination"))
	want = "in 'plugins': in entry 1 of 'plugins': in 'name': plugin 'example-plugin' not enabled; add it to the 'plugins' configuration property"
	if err == nil || err.Error() != want {
		t.Fatalf("global unknown plugin: %v, want %s", err, want)
	}
}

func TestParseDeclarativeRefusesBadFiles(t *testing.T) {
	all := func(string) bool { return true }
	for _, text := range []string{"services: []", `_format_version: "0.1"`, "_format_version: [", "_format_version: \"3.0\"\nroutes:\n  - paths: [hello]"} {
		if _, err := ParseDeclarative([]byte(text), all); err == nil {
			t.Errorf("accepted %q", text)
		}
	}
}

func TestLoadDeclarativeNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kong.yml")
	if _, err := LoadDeclarative(path, noFiles); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("missing file: %v", err)
	}
	if err := os.WriteFile(path, kongYML(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDeclarative(path, func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
}

func TestDeclarativeConfigStringIsReadWhenNoFileIsSet(t *testing.T) {
	text := string(kongYML(t))
	env, err := FromEnv(func(name string) string {
		return map[string]string{"KONG_SIM_VERSION": "3.4.1.0", "KONG_DECLARATIVE_CONFIG_STRING": text}[name]
	}, noFiles)
	if err != nil {
		t.Fatal(err)
	}
	if env.DeclarativeConfigString != text {
		t.Fatalf("KONG_DECLARATIVE_CONFIG_STRING not read: %q", env.DeclarativeConfigString)
	}
	all := func(string) bool { return true }
	decl, err := LoadConfigured("", env.DeclarativeConfigString, all)
	if err != nil || len(decl.Plugins) == 0 {
		t.Fatalf("the string's config: %v %v", decl, err)
	}
	if _, err := LoadConfigured("", "_format_version: '9.9'", all); err == nil || !strings.Contains(err.Error(), "error parsing declarative string") {
		t.Errorf("a bad string: %v", err)
	}
	// kong/init.lua's parse_declarative_config: a file, when set, wins.
	missing := filepath.Join(t.TempDir(), "kong.yml")
	if _, err := LoadConfigured(missing, text, all); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("with both set the file must be read: %v", err)
	}
}

// Kong lowercases plugin-server names (process.lua get_server_defs, 3.4.0;
// conf_loader, 3.9.0) before it derives anything from them: the settings'
// names, the default socket and start command, and every process line and
// relayed output tag, which take the server's Name.
func TestPluginServerNamesAreLowercasedAsKongDoes(t *testing.T) {
	vars := composeEnv()
	vars["KONG_PLUGINSERVER_NAMES"] = "My-Plugin"
	vars["KONG_PLUGINSERVER_MY_PLUGIN_QUERY_CMD"] = "/usr/local/bin/My-Plugin -dump"
	env, err := FromEnv(lookup(vars), func(p string) bool { return p == "/usr/local/bin/my-plugin" })
	if err != nil {
		t.Fatal(err)
	}
	want := PluginServer{
		Name:         "my-plugin",
		Socket:       "/usr/local/kong/my-plugin.socket",
		StartCommand: "/usr/local/bin/my-plugin",
		QueryCommand: "/usr/local/bin/My-Plugin -dump",
	}
	if len(env.PluginServers) != 1 || env.PluginServers[0] != want {
		t.Fatalf("servers %+v, want [%+v]", env.PluginServers, want)
	}
}

func TestTheNginxIncludeIsRead(t *testing.T) {
	vars := composeEnv()
	vars["KONG_NGINX_HTTP_INCLUDE"] = "/usr/local/kpm/upstream.conf"
	env, err := FromEnv(lookup(vars), noFiles)
	if err != nil || env.NginxHTTPInclude != "/usr/local/kpm/upstream.conf" {
		t.Fatalf("%v %q", err, env.NginxHTTPInclude)
	}
}
