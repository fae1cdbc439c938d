package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
	"github.com/kong-plugin-matrix/kong-sim/internal/release"
	"github.com/kong-plugin-matrix/kong-sim/internal/upstream"
)

// Kong's upstream defaults: connect, send and read timeouts of 60 s
// (service defaults), a keepalive pool of 512 per upstream and 60 s idle
// (upstream_keepalive_pool_size, upstream_keepalive_idle_timeout).
const (
	upstreamTimeout  = 60 * time.Second
	upstreamPoolSize = 512
	upstreamIdle     = 60 * time.Second
)

// badGateway is Kong's body for a 502 (kong/error_handlers.lua).
const badGateway = "An invalid response was received from the upstream server"

// upstreamResponse is what the service answered, as Kong passes it on.
type upstreamResponse struct {
	status  int
	headers http.Header
	body    []byte
	waiting time.Duration // X-Kong-Upstream-Latency: from the request sent to the answer's headers
	latency time.Duration // X-Kong-Proxy-Latency: from the request's start to its sending
}

// newUpstreamTransport is the node's connection pool to its services: plain
// HTTP, never through an HTTP proxy from the environment.
func newUpstreamTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: upstreamTimeout, KeepAlive: upstreamIdle}).DialContext,
		MaxIdleConnsPerHost:   upstreamPoolSize,
		IdleConnTimeout:       upstreamIdle,
		ResponseHeaderTimeout: upstreamTimeout,
		DisableCompression:    true,
	}
}

// listenUpstreams binds the server blocks of nginx_http_include.
func (g *Gateway) listenUpstreams() error {
	for _, server := range g.upstreams {
		l, err := net.Listen("tcp", server.Listen)
		if err != nil {
			return fmt.Errorf("bind() to %s failed (nginx_http_include %s): %w", server.Listen, g.env.NginxHTTPInclude, err)
		}
		g.upstreamListeners = append(g.upstreamListeners, upstreamListener{Listener: l, server: server})
	}
	return nil
}

type upstreamListener struct {
	net.Listener
	server upstream.Server
}

// proxy sends the request to the route's service and keeps its answer on
// req; a failure is Kong's 502 (503 when the route has no service).
func (g *Gateway) proxy(req *request, decl *config.Declarative, route config.Route, prefix string) {
	service, ok := decl.Service(route.ServiceID)
	if !ok {
		req.exitJSON(http.StatusServiceUnavailable, "no Service found with those values")
		return
	}
	out, err := g.upstreamRequest(req, service, route, prefix)
	if err != nil {
		req.conn.worker.log(konglog.Error, req.logContext(), err.Error())
		req.exitJSON(http.StatusBadGateway, badGateway)
		return
	}
	sent := time.Now()
	resp, err := g.upstream.RoundTrip(out)
	if err != nil {
		req.conn.worker.log(konglog.Error, req.logContext(), upstreamFailure(err, out.URL.String()))
		req.exitJSON(http.StatusBadGateway, badGateway)
		return
	}
	waiting := time.Since(sent)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		req.conn.worker.log(konglog.Error, req.logContext(), upstreamFailure(err, out.URL.String()))
		req.exitJSON(http.StatusBadGateway, badGateway)
		return
	}
	headers := resp.Header.Clone()
	removeHopByHop(headers)
	req.mu.Lock()
	for name, values := range req.headers { // what plugins set in access stays on the answer
		headers[name] = values
	}
	req.headers = headers
	req.upstream = &upstreamResponse{status: resp.StatusCode, headers: headers, body: body, waiting: waiting, latency: sent.Sub(req.started)}
	req.mu.Unlock()
}

// upstreamRequest is the request Kong sends: the service's path joined to
// the request path (without the route's prefix when strip_path is on), the
// query, the client's headers without hop-by-hop ones, Host set to the
// service's (preserve_host off) and Kong's X-Forwarded-* and X-Real-IP.
func (g *Gateway) upstreamRequest(req *request, service config.Service, route config.Route, prefix string) (*http.Request, error) {
	in := req.http
	path := in.URL.Path
	if route.StripPath {
		path = strings.TrimPrefix(path, prefix)
	}
	target := *service.URL
	target.Path = joinPath(service.URL.Path, path)
	target.RawPath = ""
	target.RawQuery = in.URL.RawQuery
	out, err := http.NewRequestWithContext(req.ctx, in.Method, target.String(), in.Body)
	if err != nil {
		return nil, fmt.Errorf("building the upstream request to %s: %w", target.String(), err)
	}
	out.ContentLength = in.ContentLength
	out.Header = in.Header.Clone()
	removeHopByHop(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = nil // Go's client would add its own
	}
	client := req.clientIP()
	if prior := in.Header.Get("X-Forwarded-For"); prior != "" {
		client = prior + ", " + client
	}
	host, port, err := net.SplitHostPort(in.Host)
	if err != nil {
		host, port = in.Host, "80"
	}
	out.Header.Set("X-Forwarded-For", client)
	out.Header.Set("X-Forwarded-Proto", "http")
	out.Header.Set("X-Forwarded-Host", host)
	out.Header.Set("X-Forwarded-Port", port)
	out.Header.Set("X-Forwarded-Path", in.URL.Path)
	out.Header.Set("X-Real-IP", req.clientIP())
	return out, nil
}

// joinPath is Kong's path_handling v0 for the common cases: the service
// path, then the rest of the request path, with one slash between them.
func joinPath(servicePath, rest string) string {
	switch {
	case servicePath == "" || servicePath == "/":
		if rest == "" || rest[0] != '/' {
			rest = "/" + rest
		}
		return rest
	case rest == "" || rest == "/":
		return servicePath
	case strings.HasSuffix(servicePath, "/") && strings.HasPrefix(rest, "/"):
		return servicePath + rest[1:]
	case !strings.HasSuffix(servicePath, "/") && !strings.HasPrefix(rest, "/"):
		return servicePath + "/" + rest
	}
	return servicePath + rest
}

// hopByHop are the headers nginx's proxy module neither forwards nor passes back.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopByHop(h http.Header) {
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// upstreamFailure is nginx's error-log text for a failed upstream request.
func upstreamFailure(err error, target string) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("connect() failed (111: Connection refused) while connecting to upstream, upstream: %q", target)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Sprintf("upstream request ended (%v), upstream: %q", err, target)
	}
	return fmt.Sprintf("upstream prematurely closed connection while reading response header from upstream (%v), upstream: %q", err, target)
}

// proxiedHeaders are the headers Kong's header_filter adds to a proxied
// response (kong/runloop/handler.lua): the latencies and Via, which reads
// `1.1 kong/<version>` from 3.8 on (proxy_http_version) and
// `kong/<version>` before (replacing the upstream's Via).
func (g *Gateway) proxiedHeaders(out http.Header, answer *upstreamResponse) {
	out.Set("X-Kong-Upstream-Latency", fmt.Sprint(answer.waiting.Milliseconds()))
	out.Set("X-Kong-Proxy-Latency", fmt.Sprint(answer.latency.Milliseconds()))
	via := g.env.ServerHeader()
	if release.AtLeast(g.env.Version, "3.8.0") {
		via = "1.1 " + via
		if prior := answer.headers.Get("Via"); prior != "" {
			via = prior + ", " + via
		}
	}
	out.Set("Via", via)
}
