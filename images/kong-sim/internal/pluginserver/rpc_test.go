package pluginserver

import (
	"errors"
	"net"
	"path/filepath"
	"testing"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
	"google.golang.org/protobuf/proto"
)

// fakeServer is the plugin side of one connection, scripted by the test.
func fakeServer(t *testing.T, script func(conn net.Conn)) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "fake.socket")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		script(conn)
	}()
	return socket
}

func readCall(t *testing.T, conn net.Conn) *pb.RpcCall {
	data, err := readFrame(conn)
	if err != nil {
		t.Error(err)
		return nil
	}
	var call pb.RpcCall
	if err := proto.Unmarshal(data, &call); err != nil {
		t.Error(err)
	}
	return &call
}

func writeReturn(t *testing.T, conn net.Conn, ret *pb.RpcReturn) {
	data, _ := proto.Marshal(ret)
	if err := writeFrame(conn, data); err != nil {
		t.Error(err)
	}
}

func TestHandleEventAnswersPDKCalls(t *testing.T) {
	replies := make(chan []byte, 1)
	socket := fakeServer(t, func(conn net.Conn) {
		call := readCall(t, conn)
		if call.GetCmdHandleEvent().GetEventName() != "access" {
			t.Errorf("call %v", call)
		}
		_ = writeFrame(conn, []byte("kong.request.get_path"))
		_ = writeFrame(conn, nil)
		reply, _ := readFrame(conn)
		replies <- reply
		_ = writeFrame(conn, nil) // end of event
		writeReturn(t, conn, &pb.RpcReturn{Sequence: call.Sequence})
	})
	var asked string
	err := NewClient(socket).HandleEvent(7, "access", func(method string, _ []byte) ([]byte, error) {
		asked = method
		return []byte("pong"), nil
	})
	if err != nil || asked != "kong.request.get_path" || string(<-replies) != "pong" {
		t.Fatalf("err %v, asked %q", err, asked)
	}
}

func TestFailedPDKCallDropsTheConnection(t *testing.T) {
	pluginSaw := make(chan error, 1)
	socket := fakeServer(t, func(conn net.Conn) {
		readCall(t, conn)
		_ = writeFrame(conn, []byte("kong.nope"))
		_ = writeFrame(conn, nil)
		_, err := readFrame(conn) // what go-pdk's bridge sees
		pluginSaw <- err
	})
	err := NewClient(socket).HandleEvent(7, "access", func(method string, _ []byte) ([]byte, error) {
		return nil, errors.New(`method "kong.nope" not found`)
	})
	if err == nil || err.Error() != `method "kong.nope" not found` {
		t.Fatalf("err %v", err)
	}
	if got := <-pluginSaw; !errors.Is(got, ErrClosed) {
		t.Fatalf("the plugin read %v, want the connection closed", got)
	}
}

func TestServerClosingIsReportedAsClosed(t *testing.T) {
	socket := fakeServer(t, func(conn net.Conn) {
		readCall(t, conn) // go-pdk: "no plugin instance N", then it closes
	})
	err := NewClient(socket).HandleEvent(15, "access", func(string, []byte) ([]byte, error) { return nil, nil })
	if !errors.Is(err, ErrClosed) || err.Error() != "closed" {
		t.Fatalf("err %v, want closed", err)
	}
}

// TestASendAfterTheConnectIsASendError: the server is gone between the
// connect and the send (its end closed). pb_rpc.lua asserts the send, so
// this must not read as the "closed" Kong recovers from: it is a
// *SendError, in OpenResty's words.
func TestASendAfterTheConnectIsASendError(t *testing.T) {
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "dying.socket"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server.Close()
	_, err = NewClient("").exchange(conn, &pb.RpcCall{Call: &pb.RpcCall_CmdCloseInstance{
		CmdCloseInstance: &pb.CmdCloseInstance{InstanceId: 3},
	}}, nil)
	var sendErr *SendError
	if !errors.As(err, &sendErr) || errors.Is(err, ErrClosed) {
		t.Fatalf("err %#v, want a *SendError", err)
	}
	if err.Error() != "broken pipe" && err.Error() != "connection reset by peer" {
		t.Errorf("err %q, want OpenResty's lower-cased strerror", err)
	}
}

func TestStartInstanceReturnsTheStatus(t *testing.T) {
	socket := fakeServer(t, func(conn net.Conn) {
		call := readCall(t, conn)
		if string(call.GetCmdStartInstance().GetConfig()) != `{"__seq__":3}` {
			t.Errorf("config %q", call.GetCmdStartInstance().GetConfig())
		}
		writeReturn(t, conn, &pb.RpcReturn{Sequence: call.Sequence, Return: &pb.RpcReturn_InstanceStatus{
			InstanceStatus: &pb.InstanceStatus{Name: "p", InstanceId: 3},
		}})
	})
	status, err := NewClient(socket).StartInstance("p", []byte(`{"__seq__":3}`))
	if err != nil || status.InstanceId != 3 {
		t.Fatalf("status %v err %v", status, err)
	}
}

func TestConnectFailureIsAConnectError(t *testing.T) {
	err := NewClient(filepath.Join(t.TempDir(), "missing.socket")).CloseInstance(1)
	var connectErr *ConnectError
	if !errors.As(err, &connectErr) {
		t.Fatalf("err %v", err)
	}
	// OpenResty's words, as Kong logs them: `trying to connect: no such file or directory`.
	if err.Error() != "no such file or directory" {
		t.Errorf("connect error reads %q, want OpenResty's bare %q", err, "no such file or directory")
	}
}

func TestRefusedConnectReadsConnectionRefused(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "dead.socket")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false) // a dead server leaves its socket file behind
	l.Close()
	if err := NewClient(socket).CloseInstance(1); err == nil || err.Error() != "connection refused" {
		t.Errorf("connect to a socket nobody listens on: %v, want %q", err, "connection refused")
	}
}

func TestKongMethodNames(t *testing.T) {
	methods := KongMethods()
	for _, name := range []string{"kong.log.debug", "kong.response.set_header", "kong.ctx.shared.get", "kong.request.get_uri_captures"} {
		if !methods[name] {
			t.Errorf("%s missing", name)
		}
	}
	if methods["kong.Response.SetHeader"] || len(methods) < 50 {
		t.Errorf("unexpected names (%d)", len(methods))
	}
}

func TestDecodeInfo(t *testing.T) {
	info, err := decodeInfo("x -dump", []byte(`{"Protocol":"ProtoBuf:1","Plugins":[{"Name":"example-plugin","Phases":["access"],"Priority":1000}]}`))
	if err != nil || info.Protocol != protocol.ProtoBuf || info.Plugins[0].Priority != 1000 || info.Plugins[0].Phases[0] != "access" {
		t.Fatalf("info %+v err %v", info, err)
	}
	if info, err := decodeInfo("x", []byte(`[{"Name":"old"}]`)); err != nil || info.Protocol != "MsgPack:1" {
		t.Fatalf("array form: %+v %v", info, err)
	}
	if _, err := decodeInfo("x", []byte("not json")); err == nil {
		t.Fatal("accepted garbage")
	}
}

func TestAPooledConnectionTheServerClosedIsNotReused(t *testing.T) {
	// Each connection answers one cmd_start_instance, then the server closes
	// it, as a plugin server that dies does to every connection it had.
	socket := filepath.Join(t.TempDir(), "fake.socket")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	closed := make(chan struct{}, 2)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			call := readCall(t, conn)
			reply, _ := proto.Marshal(&pb.RpcReturn{Sequence: call.GetSequence(), Return: &pb.RpcReturn_InstanceStatus{
				InstanceStatus: &pb.InstanceStatus{Name: "p", InstanceId: 1},
			}})
			_ = writeFrame(conn, reply)
			conn.Close()
			closed <- struct{}{}
		}
	}()
	client := NewClient(socket)
	defer client.Close()
	for i := 0; i < 2; i++ {
		if _, err := client.StartInstance("p", []byte("{}")); err != nil {
			t.Fatalf("call %d: %v (a dead pooled connection was reused)", i+1, err)
		}
		<-closed
	}
}
