package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
	"github.com/kong-plugin-matrix/kong-sim/internal/pluginserver"
	"github.com/kong-plugin-matrix/kong-sim/internal/release"
)

// These tests drive the workers of a node that serves no HTTP: each family
// rule is checked on the running_instances tables directly.

const testPluginID = "6f2c5a5e-0d3a-5c1b-9f8e-3c1f0d2b7a11"

var testPlugin = config.Plugin{ID: testPluginID, Name: "example-plugin", Key: "plugins:example-plugin::::default"}

// workersOf builds the workers of a node standing in for version. With
// handlers false their reset_instances handlers never run, so a test can
// look at what is queued before it is handled.
func workersOf(t *testing.T, version string, workers int, socket string, handlers bool) (*Gateway, *syncBuffer) {
	t.Helper()
	family, err := release.ForVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	g := &Gateway{
		env:       config.Env{Version: version, Release: family, Workers: workers},
		decl:      &config.Declarative{Plugins: []config.Plugin{testPlugin}},
		errLog:    konglog.NewErrorLog(log, konglog.Debug),
		masterPID: 1,
		external:  map[string]externalPlugin{},
	}
	if socket != "" {
		g.servers = []*pluginServer{{def: config.PluginServer{Name: "example-plugin", Socket: socket}}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if !handlers {
		cancel()
	}
	g.startWorkers(ctx)
	t.Cleanup(func() {
		cancel()
		g.tasks.Wait()
	})
	return g, log
}

// started gives every worker a running instance of the test plugin.
func started(g *Gateway) {
	for _, w := range g.workers {
		w.running[testPluginID] = &runningInstance{id: int32(100 + w.id), hasID: true, pluginName: testPlugin.Name}
	}
}

func hasInstance(w *worker) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running[testPluginID] != nil
}

func queued(w *worker) int {
	if w.events == nil {
		return -1
	}
	w.events.mu.Lock()
	defer w.events.mu.Unlock()
	return len(w.events.pending)
}

func TestWorkerZeroAloneHandlesResetsAndLater(t *testing.T) {
	g, _ := workersOf(t, "3.4.1.0", 4, "", false)
	started(g)
	g.workers[2].resetInstance(testPlugin)

	if hasInstance(g.workers[2]) {
		t.Error("the failing worker must wipe its own entry at once")
	}
	for _, id := range []int{0, 1, 3} {
		if !hasInstance(g.workers[id]) {
			t.Errorf("worker %d lost its instance before any event was handled", id)
		}
	}
	if queued(g.workers[0]) != 1 || queued(g.workers[1]) != -1 || queued(g.workers[2]) != -1 {
		t.Fatalf("queues: %d %d %d; want the event for worker 0 only", queued(g.workers[0]), queued(g.workers[1]), queued(g.workers[2]))
	}
	names, _ := g.workers[0].events.wait(context.Background())
	g.workers[0].applyResets(names)
	if hasInstance(g.workers[0]) || !hasInstance(g.workers[1]) || !hasInstance(g.workers[3]) {
		t.Error("the handler wipes worker 0 and nobody else")
	}
}

func TestResetEventsReachWorkerZeroOnTheirOwn(t *testing.T) {
	g, _ := workersOf(t, "3.6.0.0", 2, "", true)
	started(g)
	g.workers[1].resetInstance(testPlugin)
	deadline := time.Now().Add(5 * time.Second)
	for hasInstance(g.workers[0]) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if hasInstance(g.workers[0]) {
		t.Fatal("worker 0's handler never ran")
	}
}

func TestAFirstClaimIsNotWiped(t *testing.T) {
	g, _ := workersOf(t, "3.4.1.0", 2, "", false)
	g.workers[0].running[testPluginID] = &runningInstance{} // being started: no id, no name yet
	g.workers[1].resetInstance(testPlugin)
	names, _ := g.workers[0].events.wait(context.Background())
	g.workers[0].applyResets(names)
	if !hasInstance(g.workers[0]) {
		t.Fatal("the handler wiped a first claim in progress")
	}
}

// TestAReClaimIsWiped: a re-claim sets instance_info.id = nil and keeps its
// plugin_name (init.lua get_instance_id, 3.6.0 and the Enterprise code of
// 440444efb8), so reset_instances_for_plugin deletes it; the requests
// waiting on it start an instance of their own.
func TestAReClaimIsWiped(t *testing.T) {
	g, _ := workersOf(t, "3.4.1.0", 2, "", false)
	g.workers[0].running[testPluginID] = &runningInstance{id: 7, pluginName: testPlugin.Name} // id cleared: being replaced
	g.workers[1].resetInstance(testPlugin)
	names, _ := g.workers[0].events.wait(context.Background())
	g.workers[0].applyResets(names)
	if hasInstance(g.workers[0]) {
		t.Fatal("the handler kept a re-claim in progress")
	}
}

func TestEveryWorkerHandlesResetsIn39(t *testing.T) {
	g, _ := workersOf(t, "3.9.0.0", 3, "", false)
	started(g)
	g.workers[1].resetInstance(testPlugin)
	for _, w := range g.workers {
		if queued(w) != 1 {
			t.Fatalf("worker %d has %d events queued, want 1", w.id, queued(w))
		}
		if w.id != 1 && !hasInstance(w) {
			t.Errorf("worker %d was wiped before its handler ran", w.id)
		}
		names, _ := w.events.wait(context.Background())
		w.applyResets(names)
		if hasInstance(w) {
			t.Errorf("worker %d kept its instance after the event", w.id)
		}
	}
}

func TestEarlyReleasesWipeOnlyTheirOwnEntryAndPostNothing(t *testing.T) {
	g, _ := workersOf(t, "3.4.0.0", 2, "", false)
	started(g)
	g.workers[1].resetInstance(testPlugin)
	if hasInstance(g.workers[1]) || !hasInstance(g.workers[0]) || queued(g.workers[0]) != -1 {
		t.Fatal("3.4.0.0 wipes the failing worker's entry and has no reset_instances handler")
	}
}

func TestOSS350PostsTheEventWithoutALocalWipe(t *testing.T) {
	g, _ := workersOf(t, "3.5.0", 2, "", false)
	started(g)
	g.workers[1].resetInstance(testPlugin)
	if !hasInstance(g.workers[1]) || queued(g.workers[0]) != 1 {
		t.Fatal("OSS 3.5.0 posts the event and wipes nothing itself")
	}
}

func TestSeqSourcePerFamily(t *testing.T) {
	early, _ := workersOf(t, "3.4.0.0", 3, "", false)
	for _, w := range early.workers {
		if seq := w.conf(testPluginID).Seq; seq != 0 {
			t.Errorf("3.4.0.0 worker %d: __seq__ %d, want 0 (per-worker counter)", w.id, seq)
		}
	}
	later, _ := workersOf(t, "3.4.1.0", 3, "", false)
	for _, w := range later.workers {
		if seq := w.conf(testPluginID).Seq; seq != int64(w.id+1) {
			t.Errorf("3.4.1.0 worker %d: __seq__ %d, want %d (node-wide counter from 1)", w.id, seq, w.id+1)
		}
	}
}

func TestReuseportSpreadIsDeterministicPerClientAddress(t *testing.T) {
	hits := make([]int, 4)
	for port := 40000; port < 40400; port++ {
		addr := "172.18.0.1:" + itoa(port)
		first := reuseportWorker(addr, 4)
		if again := reuseportWorker(addr, 4); again != first {
			t.Fatalf("%s went to worker %d, then %d", addr, first, again)
		}
		hits[first]++
	}
	for id, n := range hits {
		if n < 50 {
			t.Errorf("worker %d got %d of 400 connections: %v", id, n, hits)
		}
	}
	roundRobin := true
	for port := 40000; port < 40008; port++ {
		if reuseportWorker("172.18.0.1:"+itoa(port), 4) != (port-40000)%4 {
			roundRobin = false
		}
	}
	if roundRobin {
		t.Error("consecutive client ports take turns: that is round robin, not a hash")
	}
}

func itoa(n int) string {
	var b [8]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}

// fakePluginServer starts instances (id = __seq__... any number will do),
// closes them, and drops the connection on every event, as go-pdk does for
// an instance it does not have. It counts the events it was sent.
func fakePluginServer(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ks") // unix socket paths must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "p.socket")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	events := &atomic.Int64{}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go serveFake(conn, events)
		}
	}()
	return socket, events
}

func serveFake(conn net.Conn, events *atomic.Int64) {
	defer conn.Close()
	for {
		var header [4]byte
		if _, err := io.ReadFull(conn, header[:]); err != nil {
			return
		}
		data := make([]byte, binary.LittleEndian.Uint32(header[:]))
		if _, err := io.ReadFull(conn, data); err != nil {
			return
		}
		var call pb.RpcCall
		if proto.Unmarshal(data, &call) != nil || call.GetCmdHandleEvent() != nil {
			events.Add(1)
			return // "no plugin instance": go-pdk ends the connection
		}
		reply, _ := proto.Marshal(&pb.RpcReturn{Sequence: call.Sequence, Return: &pb.RpcReturn_InstanceStatus{
			InstanceStatus: &pb.InstanceStatus{Name: "example-plugin", InstanceId: 7},
		}})
		frame := binary.LittleEndian.AppendUint32(nil, uint32(len(reply)))
		if _, err := conn.Write(append(frame, reply...)); err != nil {
			return
		}
	}
}

func testEvent(g *Gateway, w *worker, ctx context.Context) event {
	server := g.servers[0]
	return event{
		req:    &request{conn: &connection{worker: w, number: 1}, http: httptest.NewRequest("GET", "/hello", nil), ctx: ctx},
		plugin: testPlugin,
		ext:    externalPlugin{info: pluginserver.PluginInfo{Name: "example-plugin", Phases: []string{"access"}}, server: server},
		phase:  "access",
	}
}

func TestRetriesAreUnboundedButEndWithTheRequest(t *testing.T) {
	socket, events := fakePluginServer(t)
	g, log := workersOf(t, "3.4.1.0", 1, socket, false)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	err := g.workers[0].handleEvent(testEvent(g, g.workers[0], ctx))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("handleEvent returned %v, want the request's deadline", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("took %s to notice the request ended", took)
	}
	if n := events.Load(); n <= 10 {
		t.Errorf("only %d attempts: retries must not give up on their own", n)
	}
	if strings.Contains(log.String(), "giving up") {
		t.Error("a retry limit is still in place")
	}
}

func TestStartedLineOnlyWhereTheReleaseHasIt(t *testing.T) {
	socket, _ := fakePluginServer(t)
	for version, want := range map[string]bool{"3.4.0.0": false, "3.5.0": false, "3.4.1.0": true, "3.9.0.0": true} {
		g, log := workersOf(t, version, 1, socket, false)
		g.servers[0].ready.Store(true)
		if _, err := g.workers[0].instanceID(testEvent(g, g.workers[0], context.Background())); err != nil {
			t.Fatalf("%s: %v", version, err)
		}
		if got := strings.Contains(log.String(), "started plugin server: seq"); got != want {
			t.Errorf("%s: `started plugin server` logged: %v, want %v\n%s", version, got, want, log.String())
		}
	}
}

func TestNotReadyGateOnlyWhereTheReleaseHasIt(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nobody.socket")
	early, earlyLog := workersOf(t, "3.4.0.0", 1, missing, false)
	if _, err := early.workers[0].instanceID(testEvent(early, early.workers[0], context.Background())); !errors.Is(err, errNotReady) {
		t.Errorf("3.4.0.0 with the server not ready: %v, want the not-ready gate", err)
	}
	if strings.Contains(earlyLog.String(), "trying to connect") {
		t.Error("the gate must keep 3.4.0.0 from connecting")
	}
	later, laterLog := workersOf(t, "3.4.1.0", 1, missing, false)
	if _, err := later.workers[0].instanceID(testEvent(later, later.workers[0], context.Background())); !errors.Is(err, errStartFailed) {
		t.Errorf("3.4.1.0 with the server not ready: %v, want a failed start (500)", err)
	}
	if !strings.Contains(laterLog.String(), "trying to connect") {
		t.Errorf("3.4.1.0 has no gate and tries to connect:\n%s", laterLog.String())
	}
}

func TestRecoveryLinesPerFamily(t *testing.T) {
	cases := map[string][]string{
		"3.4.0.0": {"[warn]"},
		"3.4.1.0": {"[error]", "[warn]"},
		"3.5.0.0": {"[error]"}, // the 3.5 freeze cbd03af6b2
		"3.6.0":   {"[error]"},
		"3.6.0.0": {"[warn]"}, // Enterprise 901955459b
		"3.4.3.1": {"[warn]"},
		"3.7.1.0": {"[warn]"},
		"3.9.0.0": {"[warn]"},
	}
	for version, want := range cases {
		g, log := workersOf(t, version, 1, "", false)
		ev := testEvent2(g)
		if !g.workers[0].logRecovery(ev, "Closed") {
			t.Fatalf("%s: closed must be recovered from", version)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(log.String()), "\n") {
			if !strings.Contains(line, "pb_rpc.lua") {
				continue // the workers' start-up lines
			}
			got = append(got, strings.Fields(line)[2])
			if want := "[example-plugin] Closed"; version == "3.6.0" || version == "3.5.0.0" {
				want = "[example-plugin] closed" // lower-cased
				if !strings.Contains(line, want) {
					t.Errorf("%s: %s", version, line)
				}
			} else if !strings.Contains(line, want) {
				t.Errorf("%s: %s", version, line)
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: levels %v, want %v", version, got, want)
		}
	}
}

func testEvent2(g *Gateway) event {
	w := g.workers[0]
	return event{req: &request{conn: &connection{worker: w, number: 1}, http: httptest.NewRequest("GET", "/hello", nil), ctx: context.Background()}, plugin: testPlugin}
}

func TestLogTimerLinesHaveNoPluginTag(t *testing.T) {
	g, log := workersOf(t, "3.4.1.0", 1, "", false)
	ev := testEvent2(g)
	ev.req.inTimer = true
	g.workers[0].logRecovery(ev, "closed")
	if text := log.String(); strings.Contains(text, "[example-plugin]") || !strings.Contains(text, "pb_rpc.lua:413 closed, context: ngx.timer") {
		t.Fatalf("timer lines:\n%s", text)
	}
}

// TestOSS350ResetHandlerResetsNothing: open-source 3.5.0 registers the
// handler in worker 0, but it calls reset_instance(data.plugin_name,
// data.conf), whose key is kong.plugin.get_id() (ngx.ctx.plugin_id, nil in
// an event handler): indexing the missing entry raises, nothing is reset.
func TestOSS350ResetHandlerResetsNothing(t *testing.T) {
	g, _ := workersOf(t, "3.5.0", 2, "", false)
	started(g)
	g.workers[1].resetInstance(testPlugin)
	if queued(g.workers[0]) != 1 {
		t.Fatalf("worker 0 has %d events queued, want the posted one", queued(g.workers[0]))
	}
	names, _ := g.workers[0].events.wait(context.Background())
	g.workers[0].applyResets(names)
	if !hasInstance(g.workers[0]) || !hasInstance(g.workers[1]) {
		t.Fatal("3.5.0's handler raises before it resets anything")
	}
}

func TestNotReadyIsWarnedOncePerWorker(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nobody.socket")
	g, log := workersOf(t, "3.4.0", 2, missing, false)
	for _, w := range g.workers {
		for i := 0; i < 3; i++ {
			if err := w.handleEvent(testEvent(g, w, context.Background())); err != nil {
				t.Fatalf("worker %d: %v", w.id, err)
			}
		}
	}
	warnings := strings.Count(log.String(), "plugin server is not ready, example-plugin will not be executed")
	if warnings != 2 {
		t.Errorf("%d not-ready warnings from 2 workers, want one each:\n%s", warnings, log.String())
	}
	if !strings.Contains(log.String(), "[lua] process.lua:285: handle_not_ready()") {
		t.Errorf("the warning is not at 3.4.0's process.lua:285:\n%s", log.String())
	}
}

// claimHeld leaves a claim (an entry without an id) in worker 0, as a
// request still starting its instance does, and waits out the claim with
// the steps shortened.
func claimHeld(t *testing.T, version string) (*worker, error) {
	t.Helper()
	g, _ := workersOf(t, version, 1, filepath.Join(t.TempDir(), "nobody.socket"), false)
	w := g.workers[0]
	w.running[testPluginID] = &runningInstance{conf: w.conf(testPluginID)}
	w.mu.Lock()
	_, err := w.waitForClaimSteps(testEvent(g, w, context.Background()), testPluginID, 2, time.Millisecond)
	w.mu.Unlock()
	return w, err
}

func TestAClaimTimeOutDeletesTheEntryFromTheRefactor(t *testing.T) {
	// Kong c0596b2a04 (Enterprise, 2023-09-19) added `running_instances[key]
	// = nil` before "Could not claim"; tags 3.4.0-3.5.0 return and keep it.
	cases := map[string]bool{"3.4.0": false, "3.4.0.0": false, "3.5.0": false, "3.4.1.0": true, "3.5.0.0": true, "3.6.0": true, "3.9.0": true}
	for version, deletes := range cases {
		w, err := claimHeld(t, version)
		if err == nil || !strings.Contains(err.Error(), "Could not claim instance_id for example-plugin") {
			t.Errorf("%s: %v, want Kong's claim time-out", version, err)
		}
		if _, kept := w.running[testPluginID]; kept == deletes {
			t.Errorf("%s: claim kept after the time-out: %v, want %v", version, kept, !deletes)
		}
	}
}

func TestRecoveryLinesCarryTheReleasesLineNumbers(t *testing.T) {
	// `git show TAG:kong/runloop/plugin_servers/pb_rpc.lua | grep -n kong.log`
	// (3.9: rpc/pb_rpc.lua); Enterprise 3.6.0.0 from 901955459b.
	cases := map[string]string{
		"3.4.0":   "[kong] pb_rpc.lua:409 [example-plugin] Closed",
		"3.6.0":   "[kong] pb_rpc.lua:408 [example-plugin] closed",
		"3.7.0":   "[kong] pb_rpc.lua:410 [example-plugin] Closed",
		"3.9.0":   "[kong] pb_rpc.lua:378 [example-plugin] Closed",
		"3.6.0.0": "[kong] pb_rpc.lua:417 [example-plugin] Closed",
		"3.4.1.0": "[kong] pb_rpc.lua:413 [example-plugin] Closed", // the original report
	}
	for version, want := range cases {
		g, log := workersOf(t, version, 1, "", false)
		g.workers[0].logRecovery(testEvent2(g), "Closed")
		if !strings.Contains(log.String(), want) {
			t.Errorf("%s: want %q in\n%s", version, want, log.String())
		}
	}
}

func TestStartingInstanceLineOf39IsInPluginLua(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nobody.socket")
	g, log := workersOf(t, "3.9.0", 1, missing, false)
	if _, err := g.workers[0].instanceID(testEvent(g, g.workers[0], context.Background())); !errors.Is(err, errStartFailed) {
		t.Fatalf("start with no server: %v", err)
	}
	for _, want := range []string{
		"[kong] pb_rpc.lua:273 [example-plugin] trying to connect: no such file or directory",
		"[kong] plugin.lua:283 [example-plugin] starting instance: no such file or directory",
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("want %q in\n%s", want, log.String())
		}
	}
}
