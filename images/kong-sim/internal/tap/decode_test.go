package tap

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
	"github.com/ugorji/go/codec"
	"google.golang.org/protobuf/proto"
)

// recording is one connection's bytes, each direction as it crossed.
type recording struct {
	kong, server bytes.Buffer
}

func (r *recording) pb(t *testing.T, to *bytes.Buffer, msg proto.Message) {
	t.Helper()
	data, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	to.Write(protocol.AppendFrame(nil, data))
}

func (r *recording) raw(to *bytes.Buffer, data string) {
	to.Write(protocol.AppendFrame(nil, []byte(data)))
}

func instanceStatus(seq int64, id int32) *pb.RpcReturn {
	return &pb.RpcReturn{Sequence: seq, Return: &pb.RpcReturn_InstanceStatus{
		InstanceStatus: &pb.InstanceStatus{Name: "example-plugin", InstanceId: id, StartedAt: 1700000000},
	}}
}

// protoBufRecording is a ProtoBuf:1 connection as go-pdk and Kong make it: a
// start, an event with two PDK calls, a close, another start, and an event
// for an unknown instance, on which go-pdk drops the connection.
func protoBufRecording(t *testing.T) *recording {
	r := &recording{}
	r.pb(t, &r.kong, &pb.RpcCall{Sequence: 2, Call: &pb.RpcCall_CmdStartInstance{
		CmdStartInstance: &pb.CmdStartInstance{Name: "example-plugin", Config: []byte(`{"message":"hi"}`)}}})
	r.pb(t, &r.server, instanceStatus(2, 17))

	r.pb(t, &r.kong, &pb.RpcCall{Sequence: 3, Call: &pb.RpcCall_CmdHandleEvent{
		CmdHandleEvent: &pb.CmdHandleEvent{InstanceId: 17, EventName: "access"}}})
	r.raw(&r.server, "kong.log.debug")
	r.pb(t, &r.server, &pb.KV{K: "New() has been called 2 times"})
	r.raw(&r.kong, "")
	r.raw(&r.server, "kong.response.set_header")
	r.pb(t, &r.server, &pb.KV{K: "X-Example-Message", V: nil})
	r.raw(&r.kong, "")
	r.raw(&r.server, "")
	r.pb(t, &r.server, &pb.RpcReturn{Sequence: 3})

	r.pb(t, &r.kong, &pb.RpcCall{Sequence: 4, Call: &pb.RpcCall_CmdCloseInstance{
		CmdCloseInstance: &pb.CmdCloseInstance{InstanceId: 16}}})
	r.pb(t, &r.server, instanceStatus(4, 16))

	r.pb(t, &r.kong, &pb.RpcCall{Sequence: 5, Call: &pb.RpcCall_CmdStartInstance{
		CmdStartInstance: &pb.CmdStartInstance{Name: "example-plugin", Config: []byte(`{}`)}}})
	r.pb(t, &r.server, instanceStatus(5, 18))

	r.pb(t, &r.kong, &pb.RpcCall{Sequence: 6, Call: &pb.RpcCall_CmdHandleEvent{
		CmdHandleEvent: &pb.CmdHandleEvent{InstanceId: 99, EventName: "access"}}})
	return r
}

var protoBufLines = []string{
	"kpm-tap: instance started id=17 total=1",
	"kpm-tap: instance closed id=16 total=1",
	"kpm-tap: instance started id=18 total=2",
	`kpm-tap: error call=HandleEvent id=99 total=1 reason="server closed"`,
}

func msgpackEncode(t *testing.T, to *bytes.Buffer, value any) {
	t.Helper()
	if err := codec.NewEncoder(to, &codec.MsgpackHandle{WriteExt: true}).Encode(value); err != nil {
		t.Fatal(err)
	}
}

// msgPackRecording is a MsgPack:1 connection as mp_rpc.lua and the Python
// PDK make it: a start, an event with one step (and a notification), an
// event for an unknown instance (an error answer), a close, and a start the
// server never answers because it closes the connection halfway through.
func msgPackRecording(t *testing.T) *recording {
	r := &recording{}
	call := func(id int, method string, params ...any) {
		msgpackEncode(t, &r.kong, []any{0, id, method, params})
	}
	answer := func(id int, err, result any) {
		msgpackEncode(t, &r.server, []any{1, id, err, result})
	}
	call(1, "plugin.StartInstance", map[string]any{"Name": "py-hello", "Config": `{"message":"hi"}`})
	answer(1, nil, map[string]any{"Name": "py-hello", "Id": 257, "Config": map[string]any{}, "StartTime": 1.7e9})
	call(2, "plugin.HandleEvent", map[string]any{"InstanceId": 257, "EventName": "access"})
	answer(2, nil, map[string]any{"EventId": 1, "Data": map[string]any{"Method": "kong.response.set_header", "Args": []any{"X-A", "b"}}})
	call(3, "plugin.Step", map[string]any{"EventId": 1, "Data": nil})
	msgpackEncode(t, &r.server, []any{2, "serverPid", 42})
	answer(3, nil, map[string]any{"EventId": 1, "Data": "ret"})
	call(4, "plugin.HandleEvent", map[string]any{"InstanceId": 244, "EventName": "access"})
	answer(4, "no plugin instance #244", nil)
	call(5, "plugin.CloseInstance", 256)
	answer(5, nil, map[string]any{"Name": "py-hello", "Id": 256})
	call(6, "plugin.StartInstance", map[string]any{"Name": "py-hello", "Config": `{}`})
	var last bytes.Buffer
	msgpackEncode(t, &last, []any{1, 6, nil, map[string]any{"Name": "py-hello", "Id": 258}})
	r.server.Write(last.Bytes()[:last.Len()/2])
	return r
}

var msgPackLines = []string{
	"kpm-tap: instance started id=257 total=1",
	`kpm-tap: error call=HandleEvent id=244 total=1 reason="no plugin instance #244"`,
	"kpm-tap: instance closed id=256 total=1",
	`kpm-tap: error call=StartInstance total=2 reason="server closed"`,
}

// decodeSplit decodes a recording whose directions arrive in two pieces,
// cut at byte `at` of each.
func decodeSplit(rec *recording, wire string, at int) (Stats, []string) {
	var out bytes.Buffer
	rep := NewReporter(&out)
	fromKong, fromServer := newTee(1<<20, rep.Dropped), newTee(1<<20, rep.Dropped)
	for _, pair := range []struct {
		t    *tee
		data []byte
	}{{fromKong, rec.kong.Bytes()}, {fromServer, rec.server.Bytes()}} {
		cut := min(at, len(pair.data))
		pair.t.Push(pair.data[:cut])
		pair.t.Push(pair.data[cut:])
		pair.t.Close()
	}
	Decode(rep, wire, fromKong, fromServer)
	return rep.Stats(), strings.Split(strings.TrimSpace(out.String()), "\n")
}

func TestDecodeAtEveryByteBoundary(t *testing.T) {
	protoBufStats := Stats{Started: 2, Closed: 1, Events: 1, Errors: 1}
	msgPackStats := Stats{Started: 1, Closed: 1, Events: 1, Errors: 2}
	cases := []struct {
		name  string
		rec   *recording
		wire  string
		lines []string
		want  Stats
	}{
		{"ProtoBuf:1", protoBufRecording(t), protocol.ProtoBuf, protoBufLines, protoBufStats},
		{"ProtoBuf:1 detected", protoBufRecording(t), ProtocolAuto, protoBufLines, protoBufStats},
		{"MsgPack:1", msgPackRecording(t), protocol.MsgPack, msgPackLines, msgPackStats},
		{"MsgPack:1 detected", msgPackRecording(t), ProtocolAuto, msgPackLines, msgPackStats},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			longest := max(c.rec.kong.Len(), c.rec.server.Len())
			for at := 0; at <= longest; at++ {
				stats, lines := decodeSplit(c.rec, c.wire, at)
				if stats != c.want {
					t.Fatalf("cut at %d: stats %+v, want %+v", at, stats, c.want)
				}
				if strings.Join(lines, "\n") != strings.Join(c.lines, "\n") {
					t.Fatalf("cut at %d: lines\n%s\nwant\n%s", at, strings.Join(lines, "\n"), strings.Join(c.lines, "\n"))
				}
			}
		})
	}
}

func TestDecodeStopsQuietlyWhenBytesWereDropped(t *testing.T) {
	rec := protoBufRecording(t)
	var out bytes.Buffer
	rep := NewReporter(&out)
	fromKong, fromServer := newTee(10, rep.Dropped), newTee(1<<20, rep.Dropped)
	fromKong.Push(rec.kong.Bytes()) // more than 10 bytes: all dropped
	fromKong.Close()
	fromServer.Push(rec.server.Bytes())
	fromServer.Close()
	Decode(rep, protocol.ProtoBuf, fromKong, fromServer)
	if got := rep.Stats(); got != (Stats{Dropped: int64(rec.kong.Len())}) {
		t.Fatalf("stats %+v", got)
	}
	if out.Len() != 0 {
		t.Fatalf("lines %q", out.String())
	}
	var summary Summary
	rep.Report(&summary, false)
	want := "kpm-tap: decoder dropped " + strconv.Itoa(rec.kong.Len()) + " bytes total=" + strconv.Itoa(rec.kong.Len())
	if first := strings.SplitN(out.String(), "\n", 2)[0]; first != want {
		t.Fatalf("got %q, want %q", first, want)
	}
}

func TestDecodeGivesUpOnBytesThatAreNoProtocol(t *testing.T) {
	var out bytes.Buffer
	rep := NewReporter(&out)
	fromKong, fromServer := newTee(1<<20, rep.Dropped), newTee(1<<20, rep.Dropped)
	fromKong.Push([]byte{3, 0, 0, 0, 0xff, 0xff, 0xff})
	fromKong.Close()
	fromServer.Close()
	Decode(rep, protocol.ProtoBuf, fromKong, fromServer)
	if !strings.HasPrefix(out.String(), "kpm-tap: decoder gave up protocol=ProtoBuf:1 reason=") {
		t.Fatalf("lines %q", out.String())
	}
}

func TestReportWritesTotalsOnlyWhenTheyChange(t *testing.T) {
	var out bytes.Buffer
	rep := NewReporter(&out)
	var summary Summary
	rep.Report(&summary, false)
	rep.Event("access")
	rep.Report(&summary, false)
	rep.Report(&summary, false)
	rep.Report(&summary, true)
	want := "kpm-tap: totals started=0 closed=0 events=1 errors=0 dropped=0 phases=access:1\n" +
		"kpm-tap: totals started=0 closed=0 events=1 errors=0 dropped=0 phases=access:1\n"
	if out.String() != want {
		t.Fatalf("got %q", out.String())
	}
}

// phases= counts events by the name on the wire, sorted, and is left out
// while there is none, so the line reads as before.
func TestTotalsCountEventsByPhase(t *testing.T) {
	var out bytes.Buffer
	rep := NewReporter(&out)
	var summary Summary
	rep.Report(&summary, true)
	for _, phase := range []string{"response", "access", "log", "access", "weird name,:x", ""} {
		rep.Event(phase)
	}
	rep.Report(&summary, false)
	want := "kpm-tap: totals started=0 closed=0 events=0 errors=0 dropped=0\n" +
		"kpm-tap: totals started=0 closed=0 events=6 errors=0 dropped=0 phases=_:1,access:2,log:1,response:1,weird_name__x:1\n"
	if out.String() != want {
		t.Fatalf("got %q\nwant %q", out.String(), want)
	}
}

// The event names come from the wire in either protocol.
func TestDecodeCountsEventsByTheirNameOnTheWire(t *testing.T) {
	for name, rec := range map[string]*recording{"ProtoBuf:1": protoBufRecording(t), "MsgPack:1": msgPackRecording(t)} {
		var out bytes.Buffer
		rep := NewReporter(&out)
		Decode(rep, ProtocolAuto, bytes.NewReader(rec.kong.Bytes()), bytes.NewReader(rec.server.Bytes()))
		if got := rep.Phases(); len(got) != 1 || got["access"] != 1 {
			t.Errorf("%s: phases %v, want access:1", name, got)
		}
	}
}

func TestDecodeRefusesAnAbsurdFrameLength(t *testing.T) {
	var out bytes.Buffer
	rep := NewReporter(&out)
	fromKong, fromServer := newTee(1<<20, rep.Dropped), newTee(1<<20, rep.Dropped)
	fromKong.Push([]byte("ping"))
	fromKong.Close()
	fromServer.Close()
	Decode(rep, protocol.ProtoBuf, fromKong, fromServer)
	if !strings.Contains(out.String(), "decoder gave up protocol=ProtoBuf:1") {
		t.Fatalf("lines %q", out.String())
	}
}

// TestDecodeRecordedMsgPackConversations counts the conversations kong-sim
// had with the real Python and JavaScript plugin servers (recorded in
// internal/pluginserver/testdata): two instances started, the first closed,
// two events, no errors, from either protocol setting.
func TestDecodeRecordedMsgPackConversations(t *testing.T) {
	for _, name := range []string{"python-3.4.1.0", "javascript-3.4.1.0"} {
		fromKong, err := os.ReadFile(filepath.Join("..", "pluginserver", "testdata", name+".kong"))
		if err != nil {
			t.Fatal(err)
		}
		fromServer, err := os.ReadFile(filepath.Join("..", "pluginserver", "testdata", name+".server"))
		if err != nil {
			t.Fatal(err)
		}
		for _, wire := range []string{protocol.MsgPack, ProtocolAuto} {
			var out bytes.Buffer
			rep := NewReporter(&out)
			Decode(rep, wire, bytes.NewReader(fromKong), bytes.NewReader(fromServer))
			want := Stats{Started: 2, Closed: 1, Events: 2}
			if got := rep.Stats(); got != want {
				t.Errorf("%s (%s): %+v, want %+v\n%s", name, wire, got, want, out.String())
			}
		}
	}
}

// An event in which the plugin answers the request itself (kong.response.exit)
// and the exchange then ends without an RpcReturn: the plugin ran, no error.
func TestAnEventEndedByThePluginsOwnAnswerCountsAsRun(t *testing.T) {
	r := &recording{}
	r.pb(t, &r.kong, &pb.RpcCall{Sequence: 3, Call: &pb.RpcCall_CmdHandleEvent{
		CmdHandleEvent: &pb.CmdHandleEvent{InstanceId: 17, EventName: "access"}}})
	r.raw(&r.server, "kong.response.exit")
	r.pb(t, &r.server, &pb.ExitArgs{Status: 401})
	var out bytes.Buffer
	rep := NewReporter(&out)
	Decode(rep, ProtocolAuto, bytes.NewReader(r.kong.Bytes()), bytes.NewReader(r.server.Bytes()))
	if got := rep.Phases(); got["access"] != 1 {
		t.Errorf("phases %v, want access:1", got)
	}
	if stats := rep.Stats(); stats.Errors != 0 || stats.Events != 1 {
		t.Errorf("stats %+v, want 1 event and no error", stats)
	}
}
