package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
	"github.com/kong-plugin-matrix/kong-sim/internal/pluginserver"
	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
	"github.com/kong-plugin-matrix/kong-sim/internal/release"
)

// These tests run the gateway in-process against the real example plugin,
// built from ../../../../plugins/example-plugin, over a real unix socket.

const pluginSource = "../../../../plugins/example-plugin"

const testKongYML = `_format_version: "3.0"
plugins:
  - name: example-plugin
    config: {}
services:
  - name: hello-service
    url: http://127.0.0.1:9
    routes:
      - name: hello
        paths: [/hello]
        plugins:
          - name: request-termination
            config:
              status_code: 200
              message: hello from kong-sim
  - name: no-termination
    url: http://127.0.0.1:9
    routes:
      - name: upstream
        paths: [/upstream]
`

// syncBuffer is a log destination the test can read while the node writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// buildPlugin compiles the example plugin; its file name is the plugin name.
func buildPlugin(t *testing.T, dir string) string {
	t.Helper()
	return buildPluginFrom(t, dir, pluginSource)
}

// buildPluginFrom compiles the Go plugin in folder source, named after it.
func buildPluginFrom(t *testing.T, dir, source string) string {
	t.Helper()
	binary := filepath.Join(dir, filepath.Base(source))
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Dir = source
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the example plugin: %v\n%s", err, out)
	}
	return binary
}

type node struct {
	g      *Gateway
	log    *syncBuffer
	access *syncBuffer
	proxy  string
	admin  string
}

func startNode(t *testing.T, version string, workers int) *node {
	t.Helper()
	return startNodeWith(t, version, workers, testKongYML)
}

// startNodeWith starts a node on the declarative config kongYML.
func startNodeWith(t *testing.T, version string, workers int, kongYML string) *node {
	t.Helper()
	return startPluginNode(t, version, workers, kongYML, pluginSource, "")
}

// startPluginNode starts a node running the Go plugin in folder source as
// example-plugin's stand-in (kongYML names it), serving the upstreams of
// the nginx include file when one is given.
func startPluginNode(t *testing.T, version string, workers int, kongYML, source, include string) *node {
	t.Helper()
	family, err := release.ForVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	binary := buildPluginFrom(t, dir, source)
	name := filepath.Base(source)
	configPath := filepath.Join(dir, "kong.yml")
	if err := os.WriteFile(configPath, []byte(kongYML), 0o600); err != nil {
		t.Fatal(err)
	}
	env := config.Env{
		Version: version,
		Release: family,
		Prefix:  dir,
		Plugins: []string{"request-termination", "response-transformer", name},
		PluginServers: []config.PluginServer{{
			Name:         name,
			Socket:       filepath.Join(dir, name+".socket"),
			StartCommand: binary + " -kong-prefix " + dir,
			QueryCommand: binary + " -dump",
		}},
		DeclarativeConfig: configPath,
		NginxHTTPInclude:  include,
		LogLevel:          konglog.Debug,
		Workers:           workers,
		ProxyListen:       "127.0.0.1:0",
		AdminListen:       "127.0.0.1:0",
	}
	n := &node{log: &syncBuffer{}, access: &syncBuffer{}}
	g, err := New(context.Background(), env, Options{ErrorLog: n.log, AccessLog: n.access})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	n.g, n.proxy, n.admin = g, "http://"+g.Addr("proxy"), "http://"+g.Addr("admin")
	if source == pluginSource {
		n.waitForPlugin(t)
	} else if err := pluginserver.WaitReady(context.Background(), env.PluginServers[0].Socket, 10*time.Second); err != nil {
		t.Fatalf("the plugin server never listened: %v\n%s", err, n.log.String())
	}
	return n
}

// client opens a new connection per request, so requests spread over the
// workers the way many clients' connections do.
var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func (n *node) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	resp, err := client.Get(n.proxy + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// waitForPlugin polls the route until the plugin marks a response, as the
// harness does before it counts (bounded: 100 attempts, 10 s).
func (n *node) waitForPlugin(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for attempt := 0; attempt < 100 && time.Now().Before(deadline); attempt++ {
		if resp, _ := n.get(t, "/hello"); resp.Header.Get("X-Example-Message") != "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the plugin never answered; log:\n%s", n.log.String())
}

var newCallsPattern = regexp.MustCompile(`New\(\) has been called (\d+) times`)

// newCalls is the plugin's counter as last logged through kong.log.debug.
func (n *node) newCalls(t *testing.T) int {
	t.Helper()
	matches := newCallsPattern.FindAllStringSubmatch(n.log.String(), -1)
	if len(matches) == 0 {
		t.Fatalf("no New() count logged; log:\n%s", n.log.String())
	}
	highest := 0
	for _, m := range matches {
		if v, _ := strconv.Atoi(m[1]); v > highest {
			highest = v
		}
	}
	return highest
}

// sendHello sends count requests and checks each is the terminated,
// plugin-marked response.
func (n *node) sendHello(t *testing.T, count int) time.Duration {
	t.Helper()
	began := time.Now()
	for i := 0; i < count; i++ {
		resp, body := n.get(t, "/hello")
		if resp.StatusCode != http.StatusOK || body != `{"message":"hello from kong-sim"}` {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
		if !strings.HasPrefix(resp.Header.Get("X-Example-Message"), "New() calls: ") {
			t.Fatalf("request %d: X-Example-Message missing: %v", i, resp.Header)
		}
	}
	return time.Since(began)
}

func TestSeqModelReusesOneInstancePerWorker(t *testing.T) {
	const workers = 2
	n := startNode(t, "3.4.0.0", workers)
	n.sendHello(t, 100)
	if calls := n.newCalls(t); calls > 1+workers {
		t.Fatalf("New() called %d times after 100 requests, want at most %d", calls, 1+workers)
	}
	if log := n.log.String(); strings.Contains(log, "no plugin instance") || strings.Contains(log, "[error]") {
		t.Fatalf("unexpected errors:\n%s", log)
	}
	if got := strings.Count(n.access.String(), `"GET /hello HTTP/1.1" 200`); got < 100 {
		t.Fatalf("access log has %d hello lines, want >= 100", got)
	}
}

var (
	startedPattern = regexp.MustCompile(`started plugin server: seq \d+, worker (\d+), instance id`)
	counterPID     = regexp.MustCompile(`\[debug\] (\d+)#0: \*\d+ \[kong\] pb_rpc\.lua:\d+ \[example-plugin\] New\(\) has been called`)
)

// perWorker counts, for each worker, the requests its plugin served (the
// plugin's counter line, by pid) and the instances it started.
func (n *node) perWorker(t *testing.T, workers int) (requests, starts []int) {
	t.Helper()
	log := n.log.String()
	requests, starts = make([]int, workers), make([]int, workers)
	for _, m := range counterPID.FindAllStringSubmatch(log, -1) {
		pid, _ := strconv.Atoi(m[1])
		requests[pid-n.g.masterPID-1000]++
	}
	for _, m := range startedPattern.FindAllStringSubmatch(log, -1) {
		id, _ := strconv.Atoi(m[1])
		starts[id]++
	}
	return requests, starts
}

func TestKeyBugStartsTwoInstancesPerRequestOutsideWorkerZero(t *testing.T) {
	// Workers 1..N-1 have no reset_instances handler: every request after a
	// worker's first finds the entry, fails the key test, starts a new
	// instance whose id (its seq) the close of the old one then closes, and
	// starts one more on the retry. Worker 0 is wiped by the others' events,
	// so some of its requests start one instance only.
	const workers = 4
	n := startNode(t, "3.4.1.0", workers)
	n.sendHello(t, 200)
	requests, starts := n.perWorker(t, workers)
	for id := 1; id < workers; id++ {
		if requests[id] > 0 && starts[id] != 2*requests[id]-1 {
			t.Errorf("worker %d: %d instances for %d requests, want %d", id, starts[id], requests[id], 2*requests[id]-1)
		}
	}
	if requests[0] > 0 && (starts[0] < requests[0] || starts[0] > 2*requests[0]) {
		t.Errorf("worker 0: %d instances for %d requests", starts[0], requests[0])
	}
	log := n.log.String()
	for _, signal := range []string{"closed instance", "no plugin instance", "[error]", "[example-plugin] closed"} {
		if strings.Count(log, signal) < 100 {
			t.Errorf("%q logged %d times, want >= 100", signal, strings.Count(log, signal))
		}
	}
	if strings.Contains(log, "New() has been called 1 times, client:") {
		t.Error("a debug line carries request context")
	}
}

func TestPluginIDModelReusesInstances(t *testing.T) {
	n := startNode(t, "3.6.0.0", 3)
	n.sendHello(t, 60)
	if calls := n.newCalls(t); calls > 4 {
		t.Fatalf("New() called %d times, want at most 4", calls)
	}
}

func TestRoutingAndAdmin(t *testing.T) {
	n := startNode(t, "3.4.1.0", 1)
	resp, body := n.get(t, "/nowhere")
	if resp.StatusCode != http.StatusNotFound || body != `{"message":"no Route matched with those values"}` {
		t.Errorf("unmatched: %d %s", resp.StatusCode, body)
	}
	resp, body = n.get(t, "/upstream")
	if resp.StatusCode != http.StatusBadGateway || body != `{"message":"An invalid response was received from the upstream server"}` ||
		!strings.Contains(n.log.String(), `connect() failed (111: Connection refused) while connecting to upstream, upstream: "http://127.0.0.1:9/"`) {
		t.Errorf("route to a closed port: %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Example-Message") == "" || resp.Header.Get("Server") != "kong/3.4.1.0-enterprise-edition" {
		t.Errorf("headers: %v", resp.Header)
	}
	status, err := client.Get(n.admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	statusBody, _ := io.ReadAll(status.Body)
	status.Body.Close()
	if status.StatusCode != http.StatusOK || !strings.Contains(string(statusBody), `"total_requests":`) {
		t.Errorf("admin /status: %d %s", status.StatusCode, statusBody)
	}
	running := n.g.env
	running.AdminListen = n.g.Addr("admin") // the env asked for port 0
	var report bytes.Buffer
	if err := Health(running, &report); err != nil || !strings.Contains(report.String(), "Kong is healthy at") {
		t.Errorf("health: %v %s", err, report.String())
	}
	n.g.Stop()
	if err := Health(running, io.Discard); err == nil || err.Error() != "Kong is not running at "+running.Prefix {
		t.Errorf("health after stop: %v", err)
	}
}

func TestUnknownPDKMethodIsAnErrorNotACrash(t *testing.T) {
	req := &request{}
	if _, err := req.callPDK(nil, config.Plugin{Name: "p"}, protocol.ProtoBuf, "kong.nope.nothing", nil); err == nil ||
		err.Error() != `method "kong.nope.nothing" not found` {
		t.Errorf("unknown method: %v", err)
	}
	if _, err := req.callPDK(nil, config.Plugin{Name: "p"}, protocol.ProtoBuf, "kong.service.set_upstream", nil); err == nil ||
		!strings.Contains(err.Error(), "kong-sim does not implement") {
		t.Errorf("unimplemented method: %v", err)
	}
}

func TestNodeRestartsAKilledPluginServer(t *testing.T) {
	n := startNode(t, "3.6.0.0", 1)
	pid := regexp.MustCompile(`\[example-plugin:(\d+)\]`).FindStringSubmatch(n.log.String())
	if pid == nil {
		t.Fatalf("no plugin output relayed:\n%s", n.log.String())
	}
	number, _ := strconv.Atoi(pid[1])
	process, err := os.FindProcess(number)
	if err != nil {
		t.Fatal(err)
	}
	if err := process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && strings.Count(n.log.String(), "Starting example-plugin") < 2 {
		time.Sleep(50 * time.Millisecond)
	}
	log := n.log.String()
	if !strings.Contains(log, "external pluginserver 'example-plugin' terminated: signal 9") ||
		strings.Count(log, "Starting example-plugin") < 2 {
		t.Fatalf("no respawn:\n%s", log)
	}
	// The new server has no instances: the node must recover by itself.
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, _ := n.get(t, "/hello"); resp.Header.Get("X-Example-Message") != "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("never recovered after the respawn:\n%s", n.log.String())
}

func TestNode39LogsTheNewPluginServerLines(t *testing.T) {
	n := startNode(t, "3.9.0.0", 2)
	n.sendHello(t, 10)
	log := n.log.String()
	for _, want := range []string{
		"[pluginserver] loading protocol ProtoBuf:1 for plugin example-plugin",
		"[pluginserver] starting pluginserver process for example-plugin, context: ngx.timer",
		"[pluginserver] started, pid ",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("missing %q in\n%s", want, log)
		}
	}
	if strings.Contains(log, "Starting example-plugin") {
		t.Errorf("3.9 logged the 3.4-3.8 process line:\n%s", log)
	}
}

// imagesKongYML is the declarative config the images bake in.
const imagesKongYML = "../../../kong.yml"
