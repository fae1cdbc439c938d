// Package config reads what a Kong node reads at start-up: its KONG_*
// environment (the settings kong-sim honours) and the declarative config file.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
	"github.com/kong-plugin-matrix/kong-sim/internal/release"
	"github.com/kong-plugin-matrix/kong-sim/internal/reuse"
)

// DefaultPrefix is Kong's default prefix, where go-pdk also puts its socket.
const DefaultPrefix = "/usr/local/kong"

// PluginServer is one entry of KONG_PLUGINSERVER_NAMES with Kong's defaults
// applied (kong/runloop/plugin_servers/process.lua get_server_defs).
type PluginServer struct {
	Name         string
	Socket       string
	StartCommand string // empty: not managed by kong-sim
	QueryCommand string // empty: not queried, so its plugins stay unknown
}

// Env is the node configuration kong-sim takes from the environment.
type Env struct {
	Version           string         // KONG_SIM_VERSION, the Kong release stood in for
	Release           release.Family // the version's family; KONG_SIM_REUSE_MODEL overrides its reuse test
	Prefix            string         // KONG_PREFIX
	Plugins           []string       // KONG_PLUGINS with "bundled" expanded
	PluginServers     []PluginServer
	DeclarativeConfig string // KONG_DECLARATIVE_CONFIG
	// DeclarativeConfigString is KONG_DECLARATIVE_CONFIG_STRING, the config
	// itself (YAML or JSON); Kong reads it only when no file is set.
	DeclarativeConfigString string
	LogLevel                konglog.Level
	Workers                 int
	ProxyListen             string // host:port, "" when off
	AdminListen             string
	StatusListen            string
	ProxyAccessLog          string
	ProxyErrorLog           string
	// NginxHTTPInclude is KONG_NGINX_HTTP_INCLUDE (nginx_http_include): a
	// file of nginx `server` blocks, the upstreams kong-sim serves.
	NginxHTTPInclude string
}

// Lookup reads one environment variable; os.Getenv in production.
type Lookup func(name string) string

// FromEnv builds the node configuration. fileExists decides Kong's optional
// defaults (a start command is only assumed when /usr/local/bin/<name> exists).
func FromEnv(getenv Lookup, fileExists func(string) bool) (Env, error) {
	env := Env{
		Version:                 getenv("KONG_SIM_VERSION"),
		Prefix:                  orDefault(getenv("KONG_PREFIX"), DefaultPrefix),
		DeclarativeConfig:       getenv("KONG_DECLARATIVE_CONFIG"),
		DeclarativeConfigString: getenv("KONG_DECLARATIVE_CONFIG_STRING"),
		ProxyAccessLog:          orDefault(getenv("KONG_PROXY_ACCESS_LOG"), "logs/access.log"),
		ProxyErrorLog:           orDefault(getenv("KONG_PROXY_ERROR_LOG"), "logs/error.log"),
		NginxHTTPInclude:        getenv("KONG_NGINX_HTTP_INCLUDE"),
	}
	var err error
	if env.Release, err = releaseFamily(getenv); err != nil {
		return Env{}, err
	}
	if db := getenv("KONG_DATABASE"); db != "" && db != "off" {
		return Env{}, fmt.Errorf("database %q is not supported by kong-sim: set KONG_DATABASE=off", db)
	}
	if env.LogLevel, err = konglog.ParseLevel(orDefault(getenv("KONG_LOG_LEVEL"), "notice")); err != nil {
		return Env{}, err
	}
	if env.Workers, err = workerCount(getenv("KONG_NGINX_WORKER_PROCESSES")); err != nil {
		return Env{}, err
	}
	if err = env.readListeners(getenv); err != nil {
		return Env{}, err
	}
	env.Plugins = expandPlugins(orDefault(getenv("KONG_PLUGINS"), "bundled"))
	env.PluginServers = pluginServers(getenv, fileExists)
	return env, nil
}

func (env *Env) readListeners(getenv Lookup) error {
	var err error
	if env.ProxyListen, err = listenAddress("proxy_listen", orDefault(getenv("KONG_PROXY_LISTEN"), "0.0.0.0:8000")); err != nil {
		return err
	}
	if env.AdminListen, err = listenAddress("admin_listen", orDefault(getenv("KONG_ADMIN_LISTEN"), "127.0.0.1:8001")); err != nil {
		return err
	}
	env.StatusListen, err = listenAddress("status_listen", orDefault(getenv("KONG_STATUS_LISTEN"), "off"))
	return err
}

// releaseFamily is the family of KONG_SIM_VERSION. KONG_SIM_REUSE_MODEL
// replaces its reuse test; with that override an unknown (or no) version
// takes the rest of its behaviour from the first family using the model.
func releaseFamily(getenv Lookup) (release.Family, error) {
	version := getenv("KONG_SIM_VERSION")
	name := getenv("KONG_SIM_REUSE_MODEL")
	if name == "" {
		if version == "" {
			return release.Family{}, fmt.Errorf("KONG_SIM_VERSION is not set: the image must be built with --build-arg KONG_VERSION=<version>, or set KONG_SIM_REUSE_MODEL")
		}
		return release.ForVersion(version)
	}
	model, err := reuse.ParseModel(name)
	if err != nil {
		return release.Family{}, err
	}
	family, err := release.ForVersion(version)
	if err != nil {
		if family, err = release.ForModel(model); err != nil {
			return release.Family{}, err
		}
	}
	family.Reuse = model
	return family, nil
}

// workerCount reads nginx_worker_processes: a number or "auto" (one per CPU).
func workerCount(value string) (int, error) {
	if value == "" || value == "auto" {
		return runtime.NumCPU(), nil
	}
	n, err := strconv.Atoi(value)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("nginx_worker_processes must be a positive number or 'auto', got %q", value)
	}
	return n, nil
}

// listenAddress takes the first plain-HTTP address of a Kong listen setting
// such as "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl".
// TLS entries are skipped: kong-sim serves plain HTTP only.
func listenAddress(setting, value string) (string, error) {
	if strings.TrimSpace(value) == "off" {
		return "", nil
	}
	for _, entry := range strings.Split(value, ",") {
		fields := strings.Fields(entry)
		if len(fields) == 0 || containsWord(fields[1:], "ssl") {
			continue
		}
		return fields[0], nil
	}
	return "", fmt.Errorf("%s %q has no plain HTTP address (kong-sim does not serve TLS)", setting, value)
}

func containsWord(words []string, want string) bool {
	for _, w := range words {
		if w == want {
			return true
		}
	}
	return false
}

// expandPlugins splits KONG_PLUGINS and replaces "bundled" by Kong's list.
func expandPlugins(value string) []string {
	var names []string
	for _, name := range strings.Split(value, ",") {
		switch name = strings.TrimSpace(name); name {
		case "", "off":
		case "bundled":
			names = append(names, BundledPlugins...)
		default:
			names = append(names, name)
		}
	}
	return names
}

func pluginServers(getenv Lookup, fileExists func(string) bool) []PluginServer {
	var servers []PluginServer
	for _, name := range strings.Split(getenv("KONG_PLUGINSERVER_NAMES"), ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		prefix := "KONG_PLUGINSERVER_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		servers = append(servers, PluginServer{
			Name:         name,
			Socket:       orDefault(getenv(prefix+"_SOCKET"), filepath.Join(DefaultPrefix, name+".socket")),
			StartCommand: orDefault(getenv(prefix+"_START_CMD"), ifExists("/usr/local/bin/"+name, fileExists)),
			QueryCommand: orDefault(getenv(prefix+"_QUERY_CMD"), ifExists("/usr/local/bin/query_"+name, fileExists)),
		})
	}
	return servers
}

func ifExists(path string, fileExists func(string) bool) string {
	if fileExists(path) {
		return path
	}
	return ""
}

// FileExists is the production fileExists.
func FileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func orDefault(value, fallback string) string {
	if value == "" {
		return fallback
	}
	return value
}

// Edition names the distribution: Kong Gateway Enterprise versions have four
// parts (3.4.1.0), open-source ones three (3.4.0).
func (env Env) Edition() string {
	if release.IsEnterprise(env.Version) {
		return "enterprise"
	}
	return "community"
}

// ServerHeader is the value of the Server header a node of this version sends.
func (env Env) ServerHeader() string {
	if env.Edition() == "enterprise" {
		return "kong/" + env.Version + "-enterprise-edition"
	}
	return "kong/" + orDefault(env.Version, "0.0.0")
}

// LogPath resolves a log setting the way Kong does: relative paths live under
// the prefix.
func (env Env) LogPath(setting string) string {
	if filepath.IsAbs(setting) || setting == "off" {
		return setting
	}
	return filepath.Join(env.Prefix, setting)
}

// BundledPlugins is Kong 3.4's list of bundled plugins (kong/constants.lua).
// kong-sim implements request-termination and response-transformer's
// add.headers; the others are accepted in KONG_PLUGINS but refused when a
// declarative config uses them.
var BundledPlugins = []string{
	"jwt", "acl", "correlation-id", "cors", "oauth2", "tcp-log", "udp-log", "file-log",
	"http-log", "key-auth", "hmac-auth", "basic-auth", "ip-restriction",
	"request-transformer", "response-transformer", "request-size-limiting",
	"rate-limiting", "response-ratelimiting", "syslog", "loggly", "datadog",
	"ldap-auth", "statsd", "bot-detection", "aws-lambda", "request-termination",
	"prometheus", "proxy-cache", "session", "acme", "grpc-gateway", "grpc-web",
	"pre-function", "post-function", "azure-functions", "zipkin", "opentelemetry",
}
