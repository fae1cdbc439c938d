package pluginserver

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/ugorji/go/codec"

	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
)

// splitMessages cuts a recorded stream into its msgpack values, raw and decoded.
func splitMessages(t *testing.T, data []byte) ([][]byte, [][]any) {
	t.Helper()
	var raws [][]byte
	var values [][]any
	for rest := data; len(rest) > 0; {
		reader := bytes.NewReader(rest)
		var value []any
		if err := codec.NewDecoder(reader, MsgPackHandle()).Decode(&value); err != nil {
			t.Fatalf("decoding a recorded message: %v", err)
		}
		n := len(rest) - reader.Len()
		raws, values = append(raws, rest[:n]), append(values, value)
		rest = rest[n:]
	}
	return raws, values
}

// scriptedServer serves MsgPack:1 on a fresh socket: for each request it
// reads (across connections, in order) it calls answer with the request's
// raw bytes and decoded value, and writes what answer returns (nil: close
// the connection instead).
func scriptedServer(t *testing.T, answer func(raw []byte, request []any) []byte) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				for {
					var raw bytes.Buffer
					var request []any
					if err := codec.NewDecoder(io.TeeReader(conn, &raw), MsgPackHandle()).Decode(&request); err != nil {
						return
					}
					mu.Lock()
					reply := answer(raw.Bytes(), request)
					mu.Unlock()
					if reply == nil {
						return
					}
					if _, err := conn.Write(reply); err != nil {
						return
					}
				}
			}()
		}
	}()
	return socket
}

func encode(t *testing.T, value any) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := codec.NewEncoder(&buf, MsgPackHandle()).Encode(value); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type pdkCall struct {
	Method string
	Args   []any
}

// TestMsgPackClientReplaysTheRealServers drives the client through the
// calls kong-sim made to the real Python and JavaScript servers: every
// request must be byte for byte the recorded one, and the recorded answers
// must give the same instance ids and PDK calls.
func TestMsgPackClientReplaysTheRealServers(t *testing.T) {
	for name, value := range map[string]string{"python-3.4.1.0": "py", "javascript-3.4.1.0": "js"} {
		t.Run(name, func(t *testing.T) {
			kong, err := os.ReadFile(filepath.Join("testdata", name+".kong"))
			if err != nil {
				t.Fatal(err)
			}
			server, err := os.ReadFile(filepath.Join("testdata", name+".server"))
			if err != nil {
				t.Fatal(err)
			}
			requests, decoded := splitMessages(t, kong)
			responses, _ := splitMessages(t, server)
			next := 0
			socket := scriptedServer(t, func(raw []byte, _ []any) []byte {
				if next >= len(requests) || !bytes.Equal(raw, requests[next]) {
					t.Errorf("request %d differs from the recording:\n got %q", next+1, raw)
					return nil
				}
				next++
				return responses[next-1]
			})
			client := NewMsgPackClient(socket)
			defer client.Close()
			var calls []pdkCall
			pdk := func(method string, args []any) (any, error) {
				calls = append(calls, pdkCall{method, args})
				return nil, nil
			}
			var ids []int32
			for _, request := range decoded {
				params, _ := request[3].([]any)
				switch request[2] {
				case "plugin.StartInstance":
					cfg := params[0].(map[string]any)
					id, err := client.StartInstance(cfg["Name"].(string), []byte(cfg["Config"].(string)))
					if err != nil {
						t.Fatal(err)
					}
					ids = append(ids, id)
				case "plugin.CloseInstance":
					if err := client.CloseInstance(int32(protocol.Int(params[0]))); err != nil {
						t.Fatal(err)
					}
				case "plugin.HandleEvent":
					event := params[0].(map[string]any)
					if err := client.HandleEvent(int32(protocol.Int(event["InstanceId"])), event["EventName"].(string), pdk); err != nil {
						t.Fatal(err)
					}
				}
			}
			if next != len(requests) {
				t.Errorf("%d of %d recorded requests sent", next, len(requests))
			}
			if !reflect.DeepEqual(ids, []int32{0, 1}) {
				t.Errorf("instance ids %v, want [0 1]", ids)
			}
			header := map[string]string{"py": "python", "js": "javascript"}[value]
			want := []pdkCall{
				{"kong.response.set_header", []any{"X-Example-Message", header}},
				{"kong.log.debug", []any{value + "-hello access"}},
			}
			if len(calls) != 4 || !reflect.DeepEqual(calls[:2], want) || !reflect.DeepEqual(calls[2:], want) {
				t.Errorf("PDK calls %v, want %v twice", calls, want)
			}
		})
	}
}

func TestMsgPackServerErrorTextIsReturned(t *testing.T) {
	socket := scriptedServer(t, func(_ []byte, request []any) []byte {
		return encode(t, []any{1, request[1], "no plugin instance #3", nil})
	})
	client := NewMsgPackClient(socket)
	defer client.Close()
	err := client.HandleEvent(3, "access", nil)
	var serverErr *ServerError
	if !errors.As(err, &serverErr) || err.Error() != "no plugin instance #3" {
		t.Fatalf("HandleEvent: %v, want the server's text", err)
	}
}

func TestMsgPackServerClosingMidCallIsNoData(t *testing.T) {
	calls := 0
	socket := scriptedServer(t, func(_ []byte, request []any) []byte {
		calls++
		if calls == 1 {
			return nil // close without answering
		}
		return encode(t, []any{1, request[1], nil, map[string]any{"Id": 7}})
	})
	client := NewMsgPackClient(socket)
	defer client.Close()
	if _, err := client.StartInstance("p", []byte("{}")); !errors.Is(err, ErrNoData) {
		t.Fatalf("first call: %v, want %q as mp_rpc.lua's reader gives", err, ErrNoData)
	}
	if id, err := client.StartInstance("p", []byte("{}")); err != nil || id != 7 {
		t.Fatalf("the next call must dial again: %d %v", id, err)
	}
}

// TestMsgPackStepMethods checks get_step_method: typed steps, StepError for
// a failed call, plugin.Step without Data for nil, and that notifications
// and the msgids are handled as mp_rpc.lua does.
func TestMsgPackStepMethods(t *testing.T) {
	steps := []map[string]any{
		{"Method": "kong.request.get_headers", "Args": []any{}},
		{"Method": "kong.service.set_upstream", "Args": []any{"x"}},
		{"Method": "kong.response.set_header", "Args": []any{"a", "b"}},
	}
	var seen []string
	var data []any
	socket := scriptedServer(t, func(_ []byte, request []any) []byte {
		method := request[2].(string)
		seen = append(seen, method)
		if method != "plugin.HandleEvent" {
			params := request[3].([]any)[0].(map[string]any)
			data = append(data, params["Data"])
		}
		n := len(seen) - 1
		var answer any = "ret"
		if n < len(steps) {
			answer = steps[n]
		}
		notification := encode(t, []any{2, "serverPid", 42})
		return append(notification, encode(t, []any{1, request[1], nil, map[string]any{"EventId": 5, "Data": answer}})...)
	})
	client := NewMsgPackClient(socket)
	defer client.Close()
	err := client.HandleEvent(1, "access", func(method string, _ []any) (any, error) {
		switch method {
		case "kong.request.get_headers":
			return map[string]any{"host": []any{"x"}}, nil
		case "kong.service.set_upstream":
			return nil, &StepError{Text: "not here"}
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"plugin.HandleEvent", "plugin.StepMultiMap", "plugin.StepError", "plugin.Step"}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("methods %v, want %v", seen, want)
	}
	if len(data) != 3 || data[1] != "not here" || data[2] != nil {
		t.Errorf("step data %v", data)
	}
}

func TestMsgPackAnswerToAnotherCallIsRefused(t *testing.T) {
	socket := scriptedServer(t, func(_ []byte, request []any) []byte {
		return encode(t, []any{1, protocol.Int(request[1]) + 1, nil, nil})
	})
	client := NewMsgPackClient(socket)
	defer client.Close()
	var protocolErr *ProtocolError
	if err := client.CloseInstance(1); !errors.As(err, &protocolErr) {
		t.Fatalf("CloseInstance: %v, want a refused answer", err)
	}
}
