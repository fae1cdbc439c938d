// Package gateway is the node kong-sim runs: a DB-less Kong with several
// emulated nginx workers that routes requests, runs external plugins through
// their plugin server exactly as Kong's runloop does, applies the bundled
// request-termination plugin and a model of response-transformer's add.headers,
// proxies to the route's service, and serves the admin and status APIs and
// the upstream server blocks of nginx_http_include (package upstream).
//
// A request runs as in kong/init.lua: rewrite (global plugins only), access
// in priority order until a plugin answers (a delayed response: the rest of
// access, the proxying and the response phase are skipped), the upstream
// request (pooled keep-alive HTTP; 502 with Kong's message when it fails, 503
// for a route without a service), the response phase of every plugin that
// has it (Kong's buffered proxying, on an HTTP/1.x request), the response
// with Kong's X-Kong-Upstream-Latency, X-Kong-Proxy-Latency and Via (or, for
// an answer Kong made, X-Kong-Response-Latency and Server), and log in a
// timer. An external plugin gets exactly the phases its dump lists, each sent
// as init.lua's build_phases sends it (handle_event; log from a timer).
//
// Where kong-sim does not follow Kong: it refuses a plugin listing
// header_filter or body_filter (no PDK does; Kong's cosocket RPC cannot run
// there, see checkPhases); it reads the whole upstream body before answering
// whether or not a plugin has a response phase (Kong streams unless one
// does); services are plain http:// urls and only strip_path of the route's
// settings is read; the PDK answers only the methods pdk.go lists.
package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
	"github.com/kong-plugin-matrix/kong-sim/internal/pluginserver"
	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
	"github.com/kong-plugin-matrix/kong-sim/internal/release"
	"github.com/kong-plugin-matrix/kong-sim/internal/upstream"
)

// readyTimeout is how long Kong's connection_check_timer waits for a socket.
const readyTimeout = 20 * time.Second

// Options lets tests replace the log destinations the environment names.
type Options struct {
	ErrorLog  io.Writer // nil: KONG_PROXY_ERROR_LOG
	AccessLog io.Writer // nil: KONG_PROXY_ACCESS_LOG
}

// externalPlugin is a plugin a plugin server reported through `-dump`.
type externalPlugin struct {
	info   pluginserver.PluginInfo
	server *pluginServer
}

// pluginServer is one configured plugin server, the protocol its `-dump`
// named and whether its socket answers.
type pluginServer struct {
	def      config.PluginServer
	protocol string // "" until queried
	ready    atomic.Bool
}

// wire is the server's protocol; a server that was not queried reports no
// plugins, and kong-sim's tests build servers without one: ProtoBuf:1.
func (s *pluginServer) wire() string {
	if s.protocol == "" {
		return protocol.ProtoBuf
	}
	return s.protocol
}

// Gateway is one emulated Kong node.
type Gateway struct {
	env       config.Env
	decl      *config.Declarative
	servers   []*pluginServer
	external  map[string]externalPlugin
	errLog    *konglog.ErrorLog
	accessLog *konglog.AccessLog
	closers   []io.Closer
	masterPID int
	nodeID    string
	workers   []*worker
	nodeSeq   atomic.Int64 // ngx.shared.kong "plugins_iterator:__seq__"
	stats     serverStats
	// unimplementedLogged holds the PDK methods kong-sim lacks that a
	// MsgPack:1 plugin has called (each is logged once).
	unimplementedLogged sync.Map
	current             atomic.Pointer[generation] // the config the workers run now
	reloadMu            sync.Mutex                 // one reload at a time; guards the seq counters

	cancel    context.CancelFunc
	nodeCtx   context.Context    // ends when the node stops: log timers, requests' retries
	endNode   context.CancelFunc // ends nodeCtx, before the listeners drain
	stopOnce  sync.Once
	tasks     sync.WaitGroup
	httpSrvs  []*http.Server
	listeners map[string]net.Listener

	upstreams         []upstream.Server // nginx_http_include's server blocks
	upstreamListeners []upstreamListener
	upstream          *http.Transport // the pool proxied requests go through
}

// New prepares a node the way `kong start` does before nginx runs: it opens
// the logs, queries the plugin servers and loads the declarative config.
// Any error means the node must not start.
func New(ctx context.Context, env config.Env, opts Options) (*Gateway, error) {
	g := &Gateway{env: env, masterPID: os.Getpid(), external: map[string]externalPlugin{}, listeners: map[string]net.Listener{}, upstream: newUpstreamTransport()}
	if err := g.openLogs(opts); err != nil {
		return nil, err
	}
	if env.NginxHTTPInclude != "" {
		servers, err := upstream.Load(env.NginxHTTPInclude)
		if err != nil {
			g.closeLogs()
			return nil, err
		}
		g.upstreams = servers
	}
	g.nodeID = stableNodeID(env)
	if err := g.queryPluginServers(ctx); err != nil {
		g.closeLogs()
		return nil, err
	}
	decl, err := g.loadDeclarative()
	if err != nil {
		g.closeLogs()
		return nil, err
	}
	g.decl = decl
	return g, nil
}

// ErrorLog is the node's error log, for callers that report start failures.
func (g *Gateway) ErrorLog() *konglog.ErrorLog { return g.errLog }

func (g *Gateway) openLogs(opts Options) error {
	errorOut, err := g.logWriter(opts.ErrorLog, g.env.ProxyErrorLog)
	if err != nil {
		return err
	}
	accessOut, err := g.logWriter(opts.AccessLog, g.env.ProxyAccessLog)
	if err != nil {
		return err
	}
	g.errLog = konglog.NewErrorLog(errorOut, g.env.LogLevel)
	g.accessLog = konglog.NewAccessLog(accessOut)
	return nil
}

// logWriter opens a log setting: /dev/stdout and /dev/stderr are the
// process's own streams (a FROM-scratch image may lack /dev links), "off"
// discards, anything else is appended to, relative to the prefix.
func (g *Gateway) logWriter(override io.Writer, setting string) (io.Writer, error) {
	switch {
	case override != nil:
		return override, nil
	case setting == "/dev/stdout":
		return os.Stdout, nil
	case setting == "/dev/stderr":
		return os.Stderr, nil
	case setting == "off":
		return io.Discard, nil
	}
	path := g.env.LogPath(setting)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating the log directory for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log %s: %w", path, err)
	}
	g.closers = append(g.closers, f)
	return f, nil
}

func (g *Gateway) closeLogs() {
	for _, c := range g.closers {
		c.Close()
	}
	g.closers = nil
}

// queryPluginServers runs each query command (Kong's ask_info).
func (g *Gateway) queryPluginServers(ctx context.Context) error {
	lines39 := g.env.Release.ProcessLines == release.Lines39
	sites := g.env.Release.Lines()
	if lines39 {
		g.sourceLog(konglog.Notice, sites.LoadingInfo, "[pluginserver] loading external plugins info")
		defer func() {
			g.sourceLog(konglog.Notice, sites.LoadedInfo, fmt.Sprintf("[pluginserver] loaded #%d external plugins info", len(g.external)))
			for _, name := range g.externalNames() {
				g.sourceLog(konglog.Notice, sites.LoadingProtocol, fmt.Sprintf(
					"[pluginserver] loading protocol %s for plugin %s", g.external[name].server.wire(), name))
			}
		}()
	}
	for _, def := range g.env.PluginServers {
		if !lines39 {
			g.sourceLog(konglog.Debug, sites.SearchConfig, "search config for pluginserver named: "+def.Name)
		}
		server := &pluginServer{def: def}
		g.servers = append(g.servers, server)
		if def.QueryCommand == "" {
			g.sourceLog(konglog.Info, sites.NoInfoQuery, "No info query for "+def.Name)
			continue
		}
		info, err := pluginserver.Query(ctx, def.QueryCommand)
		if err != nil {
			return err
		}
		if info.Protocol != protocol.ProtoBuf && info.Protocol != protocol.MsgPack {
			return fmt.Errorf("plugin server %q speaks %q: kong-sim implements %q (go-pdk) and %q (Python, JavaScript)",
				def.Name, info.Protocol, protocol.ProtoBuf, protocol.MsgPack)
		}
		server.protocol = info.Protocol
		for _, p := range info.Plugins {
			if err := checkPhases(p); err != nil {
				return err
			}
			if existing, dup := g.external[p.Name]; dup {
				g.sourceLog(konglog.Error, sites.Duplicate, fmt.Sprintf(
					"Duplicate plugin name [%s] by %s and %s", p.Name, existing.server.def.Name, def.Name))
				continue
			}
			g.external[p.Name] = externalPlugin{info: p, server: server}
		}
	}
	return nil
}

// checkPhases refuses a plugin whose dump lists header_filter or
// body_filter. Kong would take them (build_phases sends every listed phase
// but log through handle_event), but its RPC needs a cosocket, which nginx
// forbids in those phases, so they could only fail on every request. No PDK
// lists them: go-pdk, the Python and the JavaScript PDKs offer certificate,
// rewrite, access, response, preread and log; `response` is theirs.
func checkPhases(p pluginserver.PluginInfo) error {
	for _, phase := range p.Phases {
		if phase == "header_filter" || phase == "body_filter" {
			return fmt.Errorf("plugin %q lists phase %q: Kong calls external plugins through a cosocket, which nginx "+
				"does not allow in header_filter or body_filter, so no PDK offers it and kong-sim does not pretend to run it; "+
				"use the response phase (go-pdk's Response method)", p.Name, phase)
		}
	}
	return nil
}

// loadDeclarative checks KONG_PLUGINS against what is installed, then loads
// the config with the enabled plugins as the known names.
func (g *Gateway) loadDeclarative() (*config.Declarative, error) {
	bundled := map[string]bool{}
	for _, name := range config.BundledPlugins {
		bundled[name] = true
	}
	for _, name := range g.env.Plugins {
		if _, external := g.external[name]; !external && !bundled[name] {
			return nil, fmt.Errorf("%s plugin is enabled but not installed; no plugin server reports it "+
				"(check KONG_PLUGINSERVER_NAMES and its _QUERY_CMD)", name)
		}
	}
	decl, err := config.LoadConfigured(g.env.DeclarativeConfig, g.env.DeclarativeConfigString, g.enabled())
	if err != nil {
		return nil, err
	}
	if err := g.checkBundledPlugins(decl); err != nil {
		if g.env.DeclarativeConfig == "" {
			return nil, fmt.Errorf("error parsing declarative string %s:\n%w", g.env.DeclarativeConfigString, err)
		}
		return nil, fmt.Errorf("error parsing declarative config file %s: %w", g.env.DeclarativeConfig, err)
	}
	return decl, nil
}

// enabled says whether a plugin name is in KONG_PLUGINS.
func (g *Gateway) enabled() func(name string) bool {
	names := map[string]bool{}
	for _, name := range g.env.Plugins {
		names[name] = true
	}
	return func(name string) bool { return names[name] }
}

// checkBundledPlugins refuses bundled plugins kong-sim does not implement and
// validates the configs of those it does.
func (g *Gateway) checkBundledPlugins(decl *config.Declarative) error {
	for _, p := range decl.Plugins {
		if _, external := g.external[p.Name]; external {
			continue
		}
		var err error
		switch p.Name {
		case requestTermination:
			_, err = parseTermination(p.Config)
		case responseTransformer:
			_, err = parseResponseTransformer(p.Config)
		default:
			return fmt.Errorf("bundled plugin '%s' is not implemented by kong-sim (only %s and %s are)",
				p.Name, requestTermination, responseTransformer)
		}
		if err != nil {
			return fmt.Errorf("in plugin '%s' (%s): %w", p.Name, p.ID, err)
		}
	}
	return nil
}

// Start binds the listeners, starts the workers and the plugin servers and
// serves until Stop. Listen errors are returned before anything runs.
func (g *Gateway) Start(ctx context.Context) error {
	if err := g.listen(); err != nil {
		return err
	}
	if err := g.listenUpstreams(); err != nil {
		g.closeListeners()
		return err
	}
	if err := writeRunFiles(g.env, g.masterPID); err != nil {
		g.closeListeners()
		return err
	}
	ctx, g.cancel = context.WithCancel(ctx)
	g.nodeCtx, g.endNode = context.WithCancel(ctx)
	g.logStartup()
	g.startWorkers(ctx)
	g.startPluginServers(ctx)
	g.serve()
	return nil
}

func (g *Gateway) listen() error {
	addresses := map[string]string{"proxy": g.env.ProxyListen, "admin": g.env.AdminListen, "status": g.env.StatusListen}
	for _, name := range []string{"proxy", "admin", "status"} {
		if addresses[name] == "" {
			continue
		}
		l, err := net.Listen("tcp", addresses[name])
		if err != nil {
			g.closeListeners()
			return fmt.Errorf("bind() to %s failed (%s listener): %w", addresses[name], name, err)
		}
		g.listeners[name] = l
	}
	return nil
}

func (g *Gateway) closeListeners() {
	for _, l := range g.listeners {
		l.Close()
	}
	for _, l := range g.upstreamListeners {
		l.Close()
	}
}

// Addr returns the bound address of the "proxy", "admin" or "status"
// listener, or "" when it is off.
func (g *Gateway) Addr(listener string) string {
	if l, ok := g.listeners[listener]; ok {
		return l.Addr().String()
	}
	return ""
}

func (g *Gateway) serve() {
	handlers := map[string]http.Handler{
		"proxy":  http.HandlerFunc(g.serveProxy),
		"admin":  g.adminHandler(),
		"status": g.statusHandler(),
	}
	for _, l := range g.upstreamListeners {
		g.serveOn(l, &http.Server{Handler: l.server.Handler(), ReadHeaderTimeout: 60 * time.Second})
	}
	for name, l := range g.listeners {
		srv := &http.Server{Handler: handlers[name], ReadHeaderTimeout: 60 * time.Second}
		if name == "proxy" {
			// Requests end with the node, so a retry loop cannot hold Stop up.
			srv.BaseContext = func(net.Listener) context.Context { return g.nodeCtx }
			srv.ConnContext = g.assignWorker
			srv.ConnState = g.stats.track
		}
		g.serveOn(l, srv)
	}
}

// serveOn serves srv on l until Stop shuts it down.
func (g *Gateway) serveOn(l net.Listener, srv *http.Server) {
	g.httpSrvs = append(g.httpSrvs, srv)
	g.tasks.Add(1)
	go func() {
		defer g.tasks.Done()
		_ = srv.Serve(l)
	}()
}

func (g *Gateway) startPluginServers(ctx context.Context) {
	timerConn := g.workers[0].nextConn()
	for _, server := range g.servers {
		if server.def.StartCommand == "" {
			continue
		}
		supervisor := &pluginserver.Supervisor{
			Server:       server.def,
			RespawnDelay: time.Second,
			Lines:        g.env.Release.ProcessLines,
			Sites:        g.env.Release.Lines(),
			Log: func(level konglog.Level, msg string) {
				g.errLog.Log(level, g.workers[0].pid, konglog.Context{Conn: timerConn, Phase: "ngx.timer"}, msg)
			},
		}
		g.tasks.Add(2)
		go func() {
			defer g.tasks.Done()
			supervisor.Run(ctx)
		}()
		go func(server *pluginServer) {
			defer g.tasks.Done()
			if err := pluginserver.WaitReady(ctx, server.def.Socket, readyTimeout); err == nil {
				server.ready.Store(true)
			}
		}(server)
	}
}

// Stop shuts the node down: listeners, then the plugin servers (SIGTERM),
// and waits for both; it is safe to call more than once.
func (g *Gateway) Stop() {
	g.stopOnce.Do(g.stop)
}

func (g *Gateway) stop() {
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if g.endNode != nil {
		g.endNode()
	}
	for _, srv := range g.httpSrvs {
		_ = srv.Shutdown(shutdown)
	}
	g.httpSrvs = nil
	if g.cancel != nil {
		g.cancel()
	}
	g.tasks.Wait()
	for _, w := range g.workers {
		w.closeClients()
	}
	g.upstream.CloseIdleConnections()
	removeRunFiles(g.env)
	g.masterLog(konglog.Notice, "exit")
	g.closeLogs()
}

func (g *Gateway) logStartup() {
	g.masterLog(konglog.Notice, `using the "epoll" event method`)
	g.masterLog(konglog.Notice, "openresty/1.21.4.2 (kong-sim)")
	g.masterLog(konglog.Notice, fmt.Sprintf("kong-sim standing in for Kong %s (release family %q), instance reuse model %q, %d workers",
		g.env.Version, g.env.Release.Name, g.env.Release.Reuse, g.env.Workers))
	g.masterLog(konglog.Notice, "start worker processes")
}

// sourceLog writes a Kong line from the master at its site in the
// release's source; a release without the line (site line 0, as 3.9 has no
// `No info query` nor `Duplicate plugin name`) writes nothing.
func (g *Gateway) sourceLog(level konglog.Level, at release.Site, msg string) {
	if at.Line == 0 {
		return
	}
	g.masterLog(level, konglog.KongMessage(at.File, at.Line, "", msg))
}

// masterLog writes a line from the nginx master (no connection number).
func (g *Gateway) masterLog(level konglog.Level, msg string) {
	g.errLog.Log(level, g.masterPID, konglog.Context{}, msg)
}

// externalNames lists the plugins the plugin servers reported, sorted.
func (g *Gateway) externalNames() []string {
	names := make([]string, 0, len(g.external))
	for name := range g.external {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// enabledPluginNames lists the plugin names the declarative config uses.
func (g *Gateway) enabledPluginNames() []string {
	seen := map[string]bool{}
	var names []string
	for _, p := range g.current.Load().decl.Plugins {
		if !seen[p.Name] {
			seen[p.Name] = true
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	return names
}
