package gateway

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"github.com/ugorji/go/codec"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/pluginserver"
	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
)

// fakeMsgPackServer is a MsgPack:1 plugin server as the Python and
// JavaScript PDKs behave: ids from 0, `no plugin instance #N` for an id it
// does not hold, one kong.response.set_header per event. forget drops an
// instance (as a restarted server would have lost it); closeNext makes it
// close the connection instead of answering the next HandleEvent.
type fakeMsgPackServer struct {
	mu        sync.Mutex
	next      int64
	instances map[int64]bool
	started   int
	closeNext bool
}

func startFakeMsgPackServer(t *testing.T) (*fakeMsgPackServer, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "km")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "p.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s := &fakeMsgPackServer{instances: map[int64]bool{}}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(conn)
		}
	}()
	return s, socket
}

func (s *fakeMsgPackServer) serve(conn net.Conn) {
	defer conn.Close()
	handle := pluginserver.MsgPackHandle()
	dec := codec.NewDecoder(conn, handle)
	for {
		var request []any
		if dec.Decode(&request) != nil {
			return
		}
		result, failure, ok := s.answer(request[2].(string), request[3].([]any))
		if !ok {
			return
		}
		var failureValue any
		if failure != "" {
			failureValue = failure
		}
		var out bytes.Buffer
		_ = codec.NewEncoder(&out, handle).Encode([]any{1, request[1], failureValue, result})
		if _, err := conn.Write(out.Bytes()); err != nil {
			return
		}
	}
}

func (s *fakeMsgPackServer) answer(method string, params []any) (any, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	arg, _ := params[0].(map[string]any)
	switch method {
	case "plugin.StartInstance":
		id := s.next
		s.next++
		s.instances[id] = true
		s.started++
		return map[string]any{"Name": arg["Name"], "Id": id}, "", true
	case "plugin.CloseInstance":
		id := params[0].(int64)
		if !s.instances[id] {
			return nil, "no plugin instance #" + idText(id), true
		}
		delete(s.instances, id)
		return map[string]any{"Id": id}, "", true
	case "plugin.HandleEvent":
		if s.closeNext {
			s.closeNext = false
			return nil, "", false
		}
		id := arg["InstanceId"].(int64)
		if !s.instances[id] {
			return nil, "no plugin instance #" + idText(id), true
		}
		return map[string]any{"EventId": 1, "Data": map[string]any{
			"Method": "kong.response.set_header", "Args": []any{"X-Example-Message", "fake"}}}, "", true
	}
	return map[string]any{"EventId": 1, "Data": "ret"}, "", true // the step after the PDK call
}

func idText(n int64) string { return luaString(n) }

func (s *fakeMsgPackServer) forgetAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instances = map[int64]bool{}
}

func (s *fakeMsgPackServer) starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// msgpackWorkers is workersOf with the plugin server speaking MsgPack:1.
func msgpackWorkers(t *testing.T, version string, workers int, socket string, handlers bool) (*Gateway, *syncBuffer) {
	t.Helper()
	g, log := workersOf(t, version, workers, "", handlers)
	g.servers = []*pluginServer{{def: g.servers0Def(socket), protocol: protocol.MsgPack}}
	for _, w := range g.workers {
		w.clients["example-plugin"] = pluginserver.NewMsgPackClient(socket)
	}
	return g, log
}

func (g *Gateway) servers0Def(socket string) (def config.PluginServer) {
	def.Name, def.Socket = "example-plugin", socket
	return def
}

func msgpackEvent(g *Gateway, w *worker) event {
	ev := testEvent(g, w, context.Background())
	ev.req.headers = http.Header{}
	return ev
}

// pdkRequest is a request of worker w for the PDK tests (no plugin server).
func pdkRequest(w *worker) *request {
	return &request{conn: &connection{worker: w, number: 1}, http: httptest.NewRequest("GET", "/hello", nil),
		ctx: context.Background(), headers: http.Header{}}
}

// TestMsgPackChurnsOn3410AndNotOn3600: the key bug starts an instance for
// every event whatever the protocol; 3.6.0.0 reuses one per worker.
func TestMsgPackChurnsOn3410AndNotOn3600(t *testing.T) {
	for version, want := range map[string]int{"3.4.1.0": 20, "3.6.0.0": 1} {
		server, socket := startFakeMsgPackServer(t)
		g, log := msgpackWorkers(t, version, 1, socket, false)
		for i := 0; i < 20; i++ {
			ev := msgpackEvent(g, g.workers[0])
			if err := g.workers[0].handleEvent(ev); err != nil {
				t.Fatalf("%s: %v", version, err)
			}
			if got := ev.req.headers.Get("X-Example-Message"); got != "fake" {
				t.Fatalf("%s: the PDK call did not reach the response: %q", version, got)
			}
		}
		if got := server.starts(); got != want {
			t.Errorf("%s: %d instances started for 20 events, want %d", version, got, want)
		}
		if strings.Contains(log.String(), "started plugin server") {
			t.Errorf("%s: mp_rpc.lua has no `started plugin server` line", version)
		}
	}
}

// TestMsgPackRecoveryPerRelease: a lost instance is logged at [warn] with the
// server's own text and retried. Where handle_event resets the instance
// (3.4.0, 3.7+) the retry recovers at once; where it only posts the
// reset_instances event (OSS 3.5.0-3.6.x) the worker retries the lost
// instance until a handler has run (here none does: the request's deadline
// ends it). (3.4.1.0's key bug never uses an instance twice, so it never
// meets a lost one: TestMsgPackChurnsOn3410AndNotOn3600.)
func TestMsgPackRecoveryPerRelease(t *testing.T) {
	for version, recovers := range map[string]bool{"3.7.0.0": true, "3.4.0": true, "3.4.3.1": true, "3.5.0": false, "3.6.0": false} {
		server, socket := startFakeMsgPackServer(t)
		g, log := msgpackWorkers(t, version, 1, socket, false)
		w := g.workers[0]
		w.g.servers[0].ready.Store(true)
		if err := w.handleEvent(msgpackEvent(g, w)); err != nil {
			t.Fatal(err)
		}
		server.forgetAll()
		before := server.starts()
		ev := msgpackEvent(g, w)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		ev.req.ctx = ctx
		err := w.handleEvent(ev)
		cancel()
		if recovers != (err == nil) || recovers != (server.starts() > before) {
			t.Errorf("%s: recovered %v (%v, %d new instances), want %v", version, err == nil, err, server.starts()-before, recovers)
		}
		text := log.String()
		if !strings.Contains(text, "[warn]") || !strings.Contains(text, "[example-plugin] no plugin instance #") {
			t.Errorf("%s: no [warn] with the server's text:\n%s", version, text)
		}
		if strings.Contains(text, "[error]") {
			t.Errorf("%s: a lost instance is no [error] over MsgPack:\n%s", version, text)
		}
		if posts := queued(w) > 0; posts != (version != "3.4.0") {
			t.Errorf("%s: reset_instances posted: %v", version, posts)
		}
	}
}

// TestMsgPackClosedIsNotRetried: mp_rpc.lua retries only on "no plugin
// instance"; a server that closes mid-call gives "no data", one [error].
func TestMsgPackClosedIsNotRetried(t *testing.T) {
	server, socket := startFakeMsgPackServer(t)
	g, log := msgpackWorkers(t, "3.6.0.0", 1, socket, false)
	w := g.workers[0]
	if err := w.handleEvent(msgpackEvent(g, w)); err != nil {
		t.Fatal(err)
	}
	server.mu.Lock()
	server.closeNext = true
	server.mu.Unlock()
	before := server.starts()
	if err := w.handleEvent(msgpackEvent(g, w)); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "[error]"); n != 1 || !strings.Contains(log.String(), "[example-plugin] no data") {
		t.Errorf("want one [error] `no data`:\n%s", log.String())
	}
	if server.starts() != before || !hasInstance(w) {
		t.Errorf("no reset and no retry after `no data`")
	}
}

// pointThree is 0.1+0.2 computed at run time (0.30000000000000004), which
// Lua's tostring prints as 0.3.
var pointThree = func(a, b float64) float64 { return a + b }(0.1, 0.2)

// TestPDKIsOneImplementationForBothProtocols sends the same calls as
// ProtoBuf:1 frames and as MsgPack:1 values.
func TestPDKIsOneImplementationForBothProtocols(t *testing.T) {
	g, log := workersOf(t, "3.6.0.0", 1, "", false)
	w := g.workers[0]
	kv, _ := proto.Marshal(&pb.KV{K: "X-A", V: structpb.NewNumberValue(pointThree)})
	name, _ := proto.Marshal(&pb.String{V: "X-In"})
	logArgs, _ := proto.Marshal(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("n="), structpb.NewNumberValue(1.5)}})

	pbReq := pdkRequest(w)
	pbReq.http.Header.Set("X-In", "yes")
	pbPDK := pluginserver.ProtoBufPDK(pbReq.pdk(w, testPlugin, protocol.ProtoBuf))
	if _, err := pbPDK("kong.response.set_header", kv); err != nil {
		t.Fatal(err)
	}
	got, err := pbPDK("kong.request.get_header", name)
	var header pb.String
	if err != nil || proto.Unmarshal(got, &header) != nil || header.V != "yes" {
		t.Errorf("ProtoBuf get_header: %v %v", header.V, err)
	}
	if _, err := pbPDK("kong.log.notice", logArgs); err != nil {
		t.Fatal(err)
	}

	mpReq := pdkRequest(w)
	mpReq.http.Header.Set("X-In", "yes")
	mpPDK := mpReq.pdk(w, testPlugin, protocol.MsgPack)
	if _, err := mpPDK("kong.response.set_header", []any{"X-A", pointThree}); err != nil {
		t.Fatal(err)
	}
	if value, err := mpPDK("kong.request.get_header", []any{"X-In"}); value != "yes" || err != nil {
		t.Errorf("MsgPack get_header: %v %v", value, err)
	}
	if value, _ := mpPDK("kong.request.get_header", []any{"X-None"}); value != nil {
		t.Errorf("a missing header is nil over MsgPack, got %v", value)
	}
	if _, err := mpPDK("kong.log.notice", []any{"n=", 1.5}); err != nil {
		t.Fatal(err)
	}
	if pbReq.headers.Get("X-A") != "0.3" || mpReq.headers.Get("X-A") != "0.3" {
		t.Errorf("set_header: %q %q", pbReq.headers.Get("X-A"), mpReq.headers.Get("X-A"))
	}
	if strings.Count(log.String(), "n=1.5") != 2 || !strings.Contains(log.String(), "pb_rpc.lua:251 [example-plugin] n=1.5") ||
		!strings.Contains(log.String(), "mp_rpc.lua:155 [example-plugin] n=1.5") {
		t.Errorf("log lines:\n%s", log.String())
	}
	if _, err := mpPDK("kong.response.exit", []any{int64(403), "no", map[string]any{"X-B": []any{"1", "2"}}}); err != nil {
		t.Fatal(err)
	}
	if mpReq.exit == nil || mpReq.exit.status != 403 || string(mpReq.exit.body) != "no" || len(mpReq.exit.headers.Values("X-B")) != 2 {
		t.Errorf("exit: %+v", mpReq.exit)
	}
}

// TestMsgPackUnsupportedMethods: a method Kong lacks is logged and answered
// with nil (call_pdk_method); one kong-sim lacks is a StepError, logged once.
func TestMsgPackUnsupportedMethods(t *testing.T) {
	g, log := workersOf(t, "3.6.0.0", 1, "", false)
	w := g.workers[0]
	pdk := pdkRequest(w).pdk(w, testPlugin, protocol.MsgPack)
	if value, err := pdk("kong.nope.nothing", nil); value != nil || err != nil {
		t.Errorf("unknown method: %v %v", value, err)
	}
	if !strings.Contains(log.String(), "[error]") || !strings.Contains(log.String(), "could not find pdk method: kong.nope.nothing") {
		t.Errorf("unknown method not logged as Kong does:\n%s", log.String())
	}
	for i := 0; i < 3; i++ {
		_, err := pdk("kong.service.set_upstream", []any{"x"})
		if _, ok := err.(*pluginserver.StepError); !ok {
			t.Fatalf("unimplemented method: %v, want a StepError the plugin sees", err)
		}
	}
	if n := strings.Count(log.String(), "kong-sim does not implement PDK method"); n != 1 {
		t.Errorf("logged %d times, want once", n)
	}
}
