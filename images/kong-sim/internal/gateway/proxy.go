package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
)

const requestTermination = "request-termination"

// priorities of the bundled plugins kong-sim runs (their handler.PRIORITY).
var bundledPriority = map[string]int{requestTermination: 2, responseTransformer: 800}

// connection is what a worker knows about an accepted client connection:
// nginx numbers connections per worker, and every log line carries `*N`.
type connection struct {
	worker *worker
	number int64
}

// request is the per-request state the PDK reads and writes.
type request struct {
	conn    *connection
	http    *http.Request
	ctx     context.Context // ends when the client goes away or the node stops
	started time.Time
	inTimer bool // a log-phase timer: no request to log, no plugin namespace
	gen     *generation

	mu       sync.Mutex
	headers  http.Header // response headers: set by plugins, and the upstream's once it answered
	exit     *exitResponse
	upstream *upstreamResponse // the service's answer, when the request was proxied
}

// exitResponse is a response produced by Kong itself (kong.response.exit).
type exitResponse struct {
	status  int
	body    []byte
	headers http.Header
}

func (g *Gateway) serveProxy(rw http.ResponseWriter, r *http.Request) {
	g.stats.requests.Add(1)
	conn, _ := r.Context().Value(workerKey{}).(*connection)
	if conn == nil { // not accepted through assignWorker (cannot happen on the proxy listener)
		conn = &connection{worker: g.workers[0], number: g.workers[0].nextConn()}
	}
	// The config this request runs with, whatever a reload does meanwhile.
	gen := g.current.Load()
	req := &request{conn: conn, http: r, ctx: r.Context(), started: time.Now(), headers: http.Header{}, gen: gen}
	route, prefix, ok := match(gen.decl, r.URL.Path)
	if !ok {
		req.exitJSON(http.StatusNotFound, "no Route matched with those values")
		g.respond(rw, req, nil)
		return
	}
	plugins := g.pluginsFor(gen.decl, route)
	g.runPlugins(req, plugins)
	if !req.exited() {
		g.proxy(req, gen.decl, route, prefix)
		g.runPhase(req, plugins, "response")
	}
	g.respond(rw, req, plugins)
	g.startLogTimers(req, plugins)
}

// startLogTimers runs the log phase of external plugins the way init.lua's
// build_phases does: in an ngx.timer of the same worker, after the
// response, with a fake connection of its own and no request.
func (g *Gateway) startLogTimers(req *request, plugins []config.Plugin) {
	for _, p := range plugins {
		ext, ok := g.external[p.Name]
		if !ok || !contains(ext.info.Phases, "log") {
			continue
		}
		w := req.conn.worker
		timer := &request{
			conn: &connection{worker: w, number: w.nextConn()}, http: req.http, ctx: g.nodeCtx,
			started: req.started, inTimer: true, headers: http.Header{}, gen: req.gen,
		}
		g.tasks.Add(1)
		go func(p config.Plugin, ext externalPlugin) {
			defer g.tasks.Done()
			_ = w.handleEvent(event{req: timer, plugin: p, ext: ext, phase: "log"})
		}(p, ext)
	}
}

// match finds the route of decl with the longest prefix path matching path,
// and that prefix.
func match(decl *config.Declarative, path string) (config.Route, string, bool) {
	var best config.Route
	bestPrefix, found := "", false
	for _, route := range decl.Routes {
		for _, prefix := range route.Paths {
			if strings.HasPrefix(path, prefix) && (!found || len(prefix) > len(bestPrefix)) {
				best, bestPrefix, found = route, prefix, true
			}
		}
	}
	return best, bestPrefix, found
}

// pluginsFor lists the plugins that apply to a route, the most specific
// entity of each name winning (route over service over global), in the
// order Kong runs them: highest priority first.
func (g *Gateway) pluginsFor(decl *config.Declarative, route config.Route) []config.Plugin {
	chosen := map[string]config.Plugin{}
	for _, p := range decl.Plugins {
		if !appliesTo(p, route) {
			continue
		}
		if current, ok := chosen[p.Name]; !ok || specificity(p) > specificity(current) {
			chosen[p.Name] = p
		}
	}
	plugins := make([]config.Plugin, 0, len(chosen))
	for _, p := range chosen {
		plugins = append(plugins, p)
	}
	sort.Slice(plugins, func(i, j int) bool {
		pi, pj := g.priority(plugins[i].Name), g.priority(plugins[j].Name)
		if pi != pj {
			return pi > pj
		}
		return plugins[i].Name < plugins[j].Name
	})
	return plugins
}

func appliesTo(p config.Plugin, route config.Route) bool {
	switch {
	case p.RouteID != "":
		return p.RouteID == route.ID
	case p.ServiceID != "":
		return p.ServiceID == route.ServiceID
	}
	return true
}

func specificity(p config.Plugin) int {
	switch {
	case p.RouteID != "":
		return 2
	case p.ServiceID != "":
		return 1
	}
	return 0
}

func (g *Gateway) priority(name string) int {
	if ext, ok := g.external[name]; ok {
		return ext.info.Priority
	}
	return bundledPriority[name]
}

// runPlugins runs the rewrite phase (global plugins only, as in Kong) and
// the access phase; a plugin that ends the request (a delayed response in
// Kong) stops its phase and the rest: kong/init.lua runs no further access
// handler once ctx.delayed_response is set, and does not proxy.
func (g *Gateway) runPlugins(req *request, plugins []config.Plugin) {
	for _, phase := range []string{"rewrite", "access"} {
		for _, p := range plugins {
			if req.exited() {
				return
			}
			if phase == "rewrite" && specificity(p) > 0 {
				continue
			}
			g.runPlugin(req, p, phase)
		}
	}
}

// runPhase runs one phase of every plugin that has it, whatever the others
// did: "response", which Kong runs (Kong.response, buffered proxying) once
// the service has answered, or failed with its 502, for each plugin whose
// handler has it, in priority order.
func (g *Gateway) runPhase(req *request, plugins []config.Plugin, phase string) {
	for _, p := range plugins {
		g.runPlugin(req, p, phase)
	}
}

func (g *Gateway) runPlugin(req *request, p config.Plugin, phase string) {
	switch p.Name {
	case requestTermination:
		if phase == "access" {
			term, _ := parseTermination(p.Config) // validated at load time
			req.terminate(term)
		}
		return
	case responseTransformer:
		return // header_filter only: see respond
	}
	ext, ok := g.external[p.Name]
	if !ok || !contains(ext.info.Phases, phase) {
		return
	}
	ev := event{req: req, plugin: p, ext: ext, phase: phase}
	err := req.conn.worker.handleEvent(ev)
	var raised *raisedError
	if errors.As(err, &raised) && phase == "access" {
		// The access iterator runs each handler in a coroutine and logs
		// what it raised (kong/init.lua, kong.log.err(cerr)); the other
		// phases have no such catch.
		at := req.conn.worker.g.env.Release.Lines().PluginRaised
		req.conn.worker.log(konglog.Error, req.logContext(), ev.kongMessage(at, raised.text))
	}
	if errors.Is(err, errStartFailed) {
		// get_instance_id raises a Lua error: Kong answers 500.
		req.exitJSON(http.StatusInternalServerError, "An unexpected error occurred")
	}
}

func contains(list []string, want string) bool {
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}

// respond writes the response, the service's or one Kong produced
// (kong.response.exit, a 502), after the header_filter phase of the
// request's bundled plugins, and the access-log line.
func (g *Gateway) respond(rw http.ResponseWriter, req *request, plugins []config.Plugin) {
	req.mu.Lock()
	exit, answer := req.exit, req.upstream
	out := rw.Header()
	for name, values := range req.headers {
		out[name] = values
	}
	req.mu.Unlock()
	status, body := 0, []byte(nil)
	if exit != nil {
		status, body = exit.status, exit.body
		for name, values := range exit.headers {
			out[name] = values
		}
	} else {
		status, body = answer.status, answer.body
	}
	for _, p := range plugins {
		if p.Name == responseTransformer {
			t, _ := parseResponseTransformer(p.Config) // validated at load time
			t.headerFilter(out)
		}
	}
	out.Set("Content-Length", strconv.Itoa(len(body)))
	if answer != nil {
		g.proxiedHeaders(out, answer)
	} else {
		out.Set("X-Kong-Response-Latency", strconv.FormatInt(time.Since(req.started).Milliseconds(), 10))
		out.Set("Server", g.env.ServerHeader())
	}
	rw.WriteHeader(status)
	_, _ = rw.Write(body)
	g.accessLog.Log(konglog.Access{
		Client: req.clientIP(), At: req.started, RequestLine: req.requestLine(),
		Status: status, BodyBytes: len(body),
		Referer: req.http.Referer(), UserAgent: req.http.UserAgent(),
	})
}

func (req *request) exited() bool {
	req.mu.Lock()
	defer req.mu.Unlock()
	return req.exit != nil
}

func (req *request) setExit(exit *exitResponse) {
	req.mu.Lock()
	defer req.mu.Unlock()
	if req.exit == nil {
		req.exit = exit
	}
}

// exitJSON is kong.response.exit(status, { message = message }).
func (req *request) exitJSON(status int, message string) {
	req.setExit(&exitResponse{status: status, body: kongJSON(map[string]string{"message": message}), headers: jsonContentType()})
}

func jsonContentType() http.Header {
	return http.Header{"Content-Type": {"application/json; charset=utf-8"}}
}

// kongJSON encodes like lua-cjson: no HTML escaping, "/" escaped as "\/".
func kongJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("encoding a response body: %v", err))
	}
	return bytes.ReplaceAll(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("/"), []byte(`\/`))
}

// logContext is what nginx appends to this request's error-log lines.
func (req *request) logContext() konglog.Context {
	if req.inTimer {
		return konglog.Context{Conn: req.conn.number, Phase: "ngx.timer"}
	}
	return konglog.Context{Conn: req.conn.number, Request: &konglog.Request{
		Client: req.clientIP(), Request: req.requestLine(), Host: req.http.Host,
	}}
}

// namespace is the `[NAME]` tag of plugin lines: Kong's logger is
// namespaced per plugin while it runs a request's phase, not in a timer.
func (req *request) namespace(plugin string) string {
	if req.inTimer {
		return ""
	}
	return plugin
}

func (req *request) clientIP() string {
	host, _, err := net.SplitHostPort(req.http.RemoteAddr)
	if err != nil {
		return req.http.RemoteAddr
	}
	return host
}

func (req *request) requestLine() string {
	return req.http.Method + " " + req.http.RequestURI + " " + req.http.Proto
}

// termination is a validated request-termination config.
type termination struct {
	status      int
	message     string
	hasMessage  bool
	body        string
	hasBody     bool
	contentType string
}

// parseTermination validates a request-termination config with the rules
// of its schema; echo and trigger are refused, kong-sim does not do them.
func parseTermination(cfg map[string]any) (termination, error) {
	t := termination{status: 503}
	if v, ok := cfg["status_code"]; ok && v != nil {
		n, ok := v.(int)
		if !ok || n < 100 || n > 599 {
			return t, fmt.Errorf("in 'config.status_code': value should be between 100 and 599")
		}
		t.status = n
	}
	var err error
	if t.message, t.hasMessage, err = optionalString(cfg, "message"); err != nil {
		return t, err
	}
	if t.body, t.hasBody, err = optionalString(cfg, "body"); err != nil {
		return t, err
	}
	contentType, hasContentType, err := optionalString(cfg, "content_type")
	if err != nil {
		return t, err
	}
	t.contentType = contentType
	if t.hasMessage && (t.hasBody || hasContentType) {
		return t, fmt.Errorf("message cannot be used with content_type or body")
	}
	for _, unsupported := range []string{"echo", "trigger"} {
		if v, ok := cfg[unsupported]; ok && v != nil && v != false {
			return t, fmt.Errorf("in 'config.%s': not implemented by kong-sim", unsupported)
		}
	}
	return t, nil
}

func optionalString(cfg map[string]any, field string) (string, bool, error) {
	v, ok := cfg[field]
	if !ok || v == nil {
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", false, fmt.Errorf("in 'config.%s': expected a string", field)
	}
	return s, true, nil
}

// defaultMessages is request-termination's DEFAULT_RESPONSE.
var defaultMessages = map[int]string{
	401: "Unauthorized", 404: "Not found", 405: "Method not allowed",
	500: "An unexpected error occurred", 502: "Bad Gateway", 503: "Service unavailable",
}

// terminate is request-termination's access handler.
func (req *request) terminate(t termination) {
	if t.hasBody {
		headers := http.Header{}
		if t.contentType != "" {
			headers.Set("Content-Type", t.contentType)
		}
		req.setExit(&exitResponse{status: t.status, body: []byte(t.body), headers: headers})
		return
	}
	message, ok := t.message, t.hasMessage
	if !ok {
		message, ok = defaultMessages[t.status]
	}
	if !ok {
		req.setExit(&exitResponse{status: t.status})
		return
	}
	req.exitJSON(t.status, message)
}
