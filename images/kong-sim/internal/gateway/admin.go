package gateway

import (
	"crypto/sha1"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/release"
)

// serverStats are the nginx connection counters /status reports.
type serverStats struct {
	accepted atomic.Int64
	active   atomic.Int64
	requests atomic.Int64
}

// track follows the proxy's connections (http.Server.ConnState).
func (s *serverStats) track(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		s.accepted.Add(1)
		s.active.Add(1)
	case http.StateClosed, http.StateHijacked:
		s.active.Add(-1)
	}
}

// adminHandler serves the admin endpoints kong-sim has: GET /, GET /status
// and the DB-less POST /config; read-only on an unlicensed 3.15+.
func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/config", func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			g.writeJSON(rw, http.StatusMethodNotAllowed, map[string]string{"message": "Method not allowed"})
			return
		}
		g.postConfig(rw, r)
	})
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			g.writeJSON(rw, http.StatusNotFound, map[string]string{"message": "Not found"})
			return
		}
		g.writeJSON(rw, http.StatusOK, g.nodeInfo())
	})
	mux.HandleFunc("/status", func(rw http.ResponseWriter, _ *http.Request) {
		g.writeJSON(rw, http.StatusOK, g.status())
	})
	if g.adminReadOnly(os.Getenv("KONG_LICENSE_DATA")) {
		return g.readOnly(mux)
	}
	return mux
}

// adminReadOnly: an Enterprise node of a family whose unlicensed Admin API
// is read-only (3.15.0.0+), started without a licence.
func (g *Gateway) adminReadOnly(licenceData string) bool {
	return g.env.Release.UnlicensedAdmin == release.ReadOnly && release.IsEnterprise(g.env.Version) &&
		strings.TrimSpace(licenceData) == ""
}

// readOnly refuses every write except the ones the changelog keeps open
// (3.15.0.0: /licenses, /keyring/recover, /keyring/import,
// /keyring/import/raw). Kong's Enterprise code is not public: the status
// and the text are kong-sim's, not quoted from Kong.
func (g *Gateway) readOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions,
			r.URL.Path == "/licenses" || strings.HasPrefix(r.URL.Path, "/licenses/"),
			r.URL.Path == "/keyring/recover" || strings.HasPrefix(r.URL.Path, "/keyring/import"):
			next.ServeHTTP(rw, r)
		default:
			g.writeJSON(rw, http.StatusForbidden, map[string]string{"message": "the Admin API is read-only " +
				"without a license (Kong Gateway 3.15.0.0 and later): set KONG_LICENSE_DATA"})
		}
	})
}

// statusHandler serves the status listener: /status and /status/ready.
func (g *Gateway) statusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(rw http.ResponseWriter, _ *http.Request) {
		g.writeJSON(rw, http.StatusOK, g.status())
	})
	mux.HandleFunc("/status/ready", func(rw http.ResponseWriter, _ *http.Request) {
		g.writeJSON(rw, http.StatusOK, map[string]string{"message": "ready"})
	})
	return mux
}

func (g *Gateway) writeJSON(rw http.ResponseWriter, status int, body any) {
	data := kongJSON(body)
	rw.Header().Set("Content-Type", "application/json; charset=utf-8")
	rw.Header().Set("Server", g.env.ServerHeader())
	rw.Header().Set("Access-Control-Allow-Origin", "*")
	rw.WriteHeader(status)
	_, _ = rw.Write(data)
}

func (g *Gateway) status() map[string]any {
	active := g.stats.active.Load()
	return map[string]any{
		"database": map[string]bool{"reachable": true},
		"server": map[string]int64{
			"connections_accepted": g.stats.accepted.Load(),
			"connections_handled":  g.stats.accepted.Load(),
			"connections_active":   active,
			"connections_reading":  0,
			"connections_writing":  1,
			"connections_waiting":  max64(active-1, 0),
			"total_requests":       g.stats.requests.Load(),
		},
		"configuration_hash": g.current.Load().hash,
	}
}

// initialHash is the configuration_hash before any reload.
func (g *Gateway) initialHash() string {
	source := g.env.DeclarativeConfig
	if source == "" {
		source = g.env.DeclarativeConfigString
	}
	return fmt.Sprintf("%x", sha1.Sum([]byte(source)))[:32]
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// nodeInfo is the admin API's GET /: version, node and plugin information.
func (g *Gateway) nodeInfo() map[string]any {
	hostname, _ := os.Hostname()
	available := map[string]any{}
	for name, ext := range g.external {
		available[name] = map[string]any{"version": ext.info.Version, "priority": ext.info.Priority}
	}
	for _, name := range []string{requestTermination, responseTransformer} {
		available[name] = map[string]any{"version": g.env.Version, "priority": bundledPriority[name]}
	}
	return map[string]any{
		"version":     versionString(g.env),
		"edition":     g.env.Edition(),
		"tagline":     "Welcome to kong",
		"hostname":    hostname,
		"node_id":     g.nodeID,
		"lua_version": "LuaJIT 2.1.0-beta3",
		"plugins": map[string]any{
			"available_on_server": available,
			"enabled_in_cluster":  g.enabledPluginNames(),
		},
		"configuration": map[string]any{
			"database":               "off",
			"declarative_config":     g.env.DeclarativeConfig,
			"log_level":              g.env.LogLevel.String(),
			"nginx_worker_processes": g.env.Workers,
			"plugins":                g.env.Plugins,
			"pluginserver_names":     serverNames(g.env.PluginServers),
			"prefix":                 g.env.Prefix,
		},
		"kong_sim": map[string]any{
			"release_family": g.env.Release.Name, "reuse_model": g.env.Release.Reuse, "stands_in_for": g.env.Version,
		},
	}
}

func serverNames(servers []config.PluginServer) []string {
	names := make([]string, len(servers))
	for i, s := range servers {
		names[i] = s.Name
	}
	return names
}

// versionString is meta._VERSION as the admin API shows it.
func versionString(env config.Env) string {
	if env.Edition() == "enterprise" {
		return env.Version + "-enterprise-edition"
	}
	return env.Version
}

// stableNodeID derives a node id that stays the same across restarts of
// the same container, as Kong keeps its node id in the prefix.
func stableNodeID(env config.Env) string {
	hostname, _ := os.Hostname()
	sum := sha1.Sum([]byte("node:" + hostname + ":" + env.Prefix))
	return fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
}

// VersionLine is what `kong version` prints for env's version.
func VersionLine(env config.Env) string {
	if env.Edition() == "enterprise" {
		return "Kong Enterprise " + env.Version
	}
	return strings.TrimSpace(env.Version)
}
