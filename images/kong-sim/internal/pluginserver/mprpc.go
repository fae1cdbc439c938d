package pluginserver

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"time"

	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
	"github.com/ugorji/go/codec"
)

// ErrNoData is what mp_rpc.lua's Rpc:call returns when reading the answer
// fails for any reason (the server closed the connection, a timeout, bytes
// that are not msgpack): its reader reports only that nothing came.
var ErrNoData = errors.New("no data")

// ServerError is the error element of a MsgPack:1 response: the plugin
// server's own text ("no plugin instance #3"), which Kong logs as it is.
type ServerError struct{ Text string }

func (e *ServerError) Error() string { return e.Text }

// ProtocolError is an answer mp_rpc.lua's asserts refuse: not a response, or
// the answer to another call.
type ProtocolError struct{ Text string }

func (e *ProtocolError) Error() string { return e.Text }

// stepByPDKMethod is mp_rpc.lua's by_pdk_method: the typed Step method a
// PDK method's result goes back with (plugin.Step for all others).
var stepByPDKMethod = map[string]string{
	"kong.client.get_credential":        "plugin.StepCredential",
	"kong.client.load_consumer":         "plugin.StepConsumer",
	"kong.client.get_consumer":          "plugin.StepConsumer",
	"kong.client.authenticate":          "plugin.StepCredential",
	"kong.node.get_memory_stats":        "plugin.StepMemoryStats",
	"kong.router.get_route":             "plugin.StepRoute",
	"kong.router.get_service":           "plugin.StepService",
	"kong.request.get_query":            "plugin.StepMultiMap",
	"kong.request.get_headers":          "plugin.StepMultiMap",
	"kong.response.get_headers":         "plugin.StepMultiMap",
	"kong.service.response.get_headers": "plugin.StepMultiMap",
}

// MsgPackHandle is the msgpack codec as both ends of MsgPack:1 use it:
// strings as str (bin for []byte), maps with string keys, integers signed,
// map keys sorted so the bytes are reproducible.
func MsgPackHandle() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.WriteExt = true
	h.RawToString = true
	h.SignedInteger = true
	h.Canonical = true
	h.MapType = reflect.TypeOf(map[string]any(nil))
	return h
}

// MsgPackClient is mp_rpc.lua's Rpc object: one nginx worker's client for one
// MsgPack:1 plugin server, with its own message counter. Every call takes a
// connection of its own from the keepalive pool (ngx.socket.connect), writes
// one request, reads until the response with its id (skipping
// notifications) and gives the connection back: one call at a time per
// connection, and an event is one call per step.
type MsgPackClient struct {
	socket string
	handle *codec.MsgpackHandle
	mu     sync.Mutex
	msgID  int64
	idle   []*mpConn
}

type mpConn struct {
	net.Conn
	dec *codec.Decoder
}

// NewMsgPackClient returns a client for the plugin server on socket.
func NewMsgPackClient(socket string) *MsgPackClient {
	return &MsgPackClient{socket: socket, handle: MsgPackHandle()}
}

// StartInstance is call_start_instance: {Name, Config} -> status.Id.
func (c *MsgPackClient) StartInstance(name string, config []byte) (int32, error) {
	status, err := c.call(protocol.MsgPackStartInstance, map[string]any{"Name": name, "Config": string(config)})
	if err != nil {
		return 0, err
	}
	id, ok := intField(status, "Id")
	if !ok {
		return 0, &ProtocolError{Text: fmt.Sprintf("plugin.StartInstance answered without an Id: %v", status)}
	}
	return int32(id), nil
}

// CloseInstance is call_close_instance.
func (c *MsgPackClient) CloseInstance(id int32) error {
	_, err := c.call(protocol.MsgPackCloseInstance, id)
	return err
}

// HandleEvent is mp_rpc.lua's bridge_loop: plugin.HandleEvent answers a
// step {EventId, Data}; while Data is not "ret" it is a PDK call {Method,
// Args}, answered with the Step method for its result, whose answer is the
// next step.
func (c *MsgPackClient) HandleEvent(id int32, phase string, pdk PDK) error {
	step, err := c.call(protocol.MsgPackHandleEvent, map[string]any{"InstanceId": id, "EventName": phase})
	if err != nil {
		return err
	}
	stepIn, _ := step.(map[string]any)
	eventID := stepIn["EventId"]
	for {
		if data, _ := stepIn["Data"].(string); data == "ret" {
			return nil
		}
		call, ok := stepIn["Data"].(map[string]any)
		if !ok {
			return &ProtocolError{Text: fmt.Sprintf("a step that is neither \"ret\" nor a PDK call: %v", step)}
		}
		method, _ := call["Method"].(string)
		result, pdkErr := pdk(method, unpackArgs(call["Args"]))
		var stepErr *StepError
		if pdkErr != nil && !errors.As(pdkErr, &stepErr) {
			return pdkErr
		}
		stepMethod, data := stepFor(method, result, stepErr)
		params := map[string]any{"EventId": eventID}
		if data != nil { // a Lua table drops a nil field
			params["Data"] = data
		}
		if step, err = c.call(stepMethod, params); err != nil {
			return err
		}
		stepIn, _ = step.(map[string]any)
	}
}

// unpackArgs is call_pdk_method's `unpack(args)` for a table, `args`
// otherwise; a map unpacks to nothing.
func unpackArgs(args any) []any {
	switch a := args.(type) {
	case nil, map[string]any:
		return nil
	case []any:
		return a
	}
	return []any{args}
}

// stepFor is mp_rpc.lua's get_step_method.
func stepFor(method string, result any, stepErr *StepError) (string, any) {
	if result == nil && stepErr != nil {
		return "plugin.StepError", stepErr.Text
	}
	if table, ok := result.(map[string]any); ok {
		if name, ok := table["_method"].(string); ok && name != "" {
			return name, result
		}
	}
	if name, ok := stepByPDKMethod[method]; ok {
		return name, result
	}
	return "plugin.Step", result
}

// Close drops the idle connections.
func (c *MsgPackClient) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.idle {
		conn.Close()
	}
	c.idle = nil
}

// call is mp_rpc.lua's Rpc:call: [0, msgid, method, [params...]], then
// values until [1, msgid, error, result]. A failed send returns the
// cosocket's error; a failed read returns "no data"; the server's error
// element comes back as a *ServerError.
func (c *MsgPackClient) call(method string, params ...any) (any, error) {
	msgID := c.nextID()
	var request bytes.Buffer
	if err := codec.NewEncoder(&request, c.handle).Encode([]any{protocol.MsgPackRequest, msgID, method, params}); err != nil {
		return nil, fmt.Errorf("encoding %s: %w", method, err)
	}
	conn, err := c.connect()
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(socketTimeout))
	if _, err := conn.Write(request.Bytes()); err != nil {
		conn.Close()
		return nil, cosocketError(err)
	}
	for {
		var message []any
		if err := conn.dec.Decode(&message); err != nil {
			conn.Close()
			return nil, ErrNoData
		}
		if len(message) > 0 && protocol.Int(message[0]) == protocol.MsgPackNotification {
			continue // Kong's only callback (serverPid) is for the old go-pluginserver
		}
		if len(message) != 4 || protocol.Int(message[0]) != protocol.MsgPackResponse {
			conn.Close()
			return nil, &ProtocolError{Text: "RPC response expected from Go plugin server"}
		}
		if protocol.Int(message[1]) != msgID {
			conn.Close()
			return nil, &ProtocolError{Text: "unexpected RPC response ID from Go plugin server"}
		}
		c.release(conn)
		if message[2] != nil {
			return nil, &ServerError{Text: protocol.Text(message[2])}
		}
		return message[3], nil
	}
}

func (c *MsgPackClient) nextID() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgID++
	return c.msgID
}

func (c *MsgPackClient) connect() (*mpConn, error) {
	c.mu.Lock()
	for n := len(c.idle); n > 0; n = len(c.idle) {
		conn := c.idle[n-1]
		c.idle = c.idle[:n-1]
		if peerClosed(conn.Conn) {
			conn.Close()
			continue
		}
		c.mu.Unlock()
		return conn, nil
	}
	c.mu.Unlock()
	conn, err := net.DialTimeout("unix", c.socket, socketTimeout)
	if err != nil {
		return nil, &ConnectError{Err: err}
	}
	return &mpConn{Conn: conn, dec: codec.NewDecoder(conn, c.handle)}, nil
}

func (c *MsgPackClient) release(conn *mpConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle) >= maxIdle {
		conn.Close()
		return
	}
	c.idle = append(c.idle, conn)
}

func intField(value any, key string) (int64, bool) {
	m, ok := value.(map[string]any)
	if !ok {
		return 0, false
	}
	switch v := m[key].(type) {
	case int64, uint64, float64:
		return protocol.Int(v), true
	}
	return 0, false
}
