package tap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"reflect"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
	"github.com/ugorji/go/codec"
	"google.golang.org/protobuf/proto"
)

// Why a call failed when a connection ended in the middle of it.
const (
	serverClosed = "server closed"
	kongClosed   = "kong closed"
)

// ProtocolAuto detects the protocol from the first bytes Kong sends.
const ProtocolAuto = "auto"

// Decode reads one connection's two byte streams (copies of what the relay
// carried) as one conversation in the given protocol, and reports what it
// sees to rep. Kong makes one call at a time on a connection, so the two
// streams are read in turn: a call from Kong, then its answer. It returns
// when the streams end or cannot be decoded; the relay goes on regardless.
func Decode(rep *Reporter, wire string, fromKong, fromServer io.Reader) {
	kong, server := bufio.NewReader(fromKong), bufio.NewReader(fromServer)
	if wire == ProtocolAuto {
		head, err := kong.Peek(4)
		if err != nil {
			return // closed before the first call, or the decoder fell behind
		}
		wire = detect(head)
	}
	var err error
	switch wire {
	case protocol.MsgPack:
		err = decodeMsgPack(rep, kong, server)
	default:
		err = decodeProtoBuf(rep, kong, server)
	}
	if err != nil && !errors.Is(err, errDropped) {
		rep.GaveUp(wire, err.Error())
	}
}

// detect tells the protocol from the first four bytes Kong sent. A MsgPack:1
// request starts with a 4-array (0x94) whose first element is 0 (a request),
// then a message id and a method name: never two zero bytes. A ProtoBuf:1
// frame starts with its little-endian length, which would have to be
// 0x94 + n*65536 (n > 0) to look like that.
func detect(head []byte) string {
	if head[0] == 0x94 && head[1] == 0x00 && (head[2] != 0 || head[3] != 0) {
		return protocol.MsgPack
	}
	return protocol.ProtoBuf
}

// endedAt turns a read error into why the call in progress failed ("" when
// the decoder fell behind, which is counted elsewhere).
func endedAt(err error, closedBy string) (string, error) {
	switch {
	case errors.Is(err, errDropped):
		return "", err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return closedBy, nil
	}
	return "", err
}

// streamEnd is a read error between calls: the end of the connection (nil),
// or a reason to stop decoding.
func streamEnd(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return err
}

// maxFrame bounds what the decoder believes a frame's length to be: bytes
// that are not ProtoBuf:1 must not make it allocate gigabytes.
const maxFrame = 64 << 20

func readFrame(r io.Reader) ([]byte, error) {
	return protocol.ReadFrameLimit(r, maxFrame)
}

// ProtoBuf:1 (go-pdk, pb_rpc.lua): Kong sends an RpcCall frame; for
// cmd_handle_event the server then sends a PDK method-name frame and an
// argument frame, Kong answers each with a frame, until the server sends an
// empty method-name frame; last comes the server's RpcReturn frame. go-pdk
// has no error answer: it fails a call by closing the connection.
func decodeProtoBuf(rep *Reporter, fromKong, fromServer io.Reader) error {
	for {
		data, err := readFrame(fromKong)
		if err != nil {
			return streamEnd(err)
		}
		var call pb.RpcCall
		if err := proto.Unmarshal(data, &call); err != nil {
			return fmt.Errorf("RpcCall: %w", err)
		}
		name, id := describeCall(&call)
		ret, exited, failure, err := protoBufAnswer(fromKong, fromServer, call.GetCmdHandleEvent() != nil)
		switch {
		case err != nil:
			return err
		case failure != "" && exited:
			// The plugin answered the request itself (an auth plugin's 401): it ran, and Kong
			// ends the exchange there.
			rep.Event(call.GetCmdHandleEvent().GetEventName())
			return nil
		case failure != "":
			rep.Error(name, id, failure)
			return nil // the connection is over
		}
		switch call.Call.(type) {
		case *pb.RpcCall_CmdStartInstance:
			if status := ret.GetInstanceStatus(); status != nil {
				rep.InstanceStarted(int64(status.InstanceId))
			} else {
				rep.Error(name, id, "answer without instance status")
			}
		case *pb.RpcCall_CmdCloseInstance:
			rep.InstanceClosed(id)
		case *pb.RpcCall_CmdHandleEvent:
			rep.Event(call.GetCmdHandleEvent().GetEventName())
		}
	}
}

// exitMethod is the PDK call by which a plugin answers the request itself.
const exitMethod = "kong.response.exit"

// protoBufAnswer reads the server's side of one call (and Kong's PDK
// replies during an event): the RpcReturn, or why there was none, and
// whether the plugin called kong.response.exit on the way.
func protoBufAnswer(fromKong, fromServer io.Reader, event bool) (*pb.RpcReturn, bool, string, error) {
	exited := false
	for event {
		method, err := readFrame(fromServer)
		if err != nil {
			failure, err := endedAt(err, serverClosed)
			return nil, exited, failure, err
		}
		if len(method) == 0 {
			break
		}
		exited = exited || string(method) == exitMethod
		if _, err := readFrame(fromServer); err != nil {
			failure, err := endedAt(err, serverClosed)
			return nil, exited, failure, err
		}
		if _, err := readFrame(fromKong); err != nil {
			failure, err := endedAt(err, kongClosed)
			return nil, exited, failure, err
		}
	}
	data, err := readFrame(fromServer)
	if err != nil {
		failure, err := endedAt(err, serverClosed)
		return nil, exited, failure, err
	}
	var ret pb.RpcReturn
	if err := proto.Unmarshal(data, &ret); err != nil {
		return nil, exited, "", fmt.Errorf("RpcReturn: %w", err)
	}
	return &ret, exited, "", nil
}

// describeCall names a call the way the line formats do, with the instance
// it is about (-1: none).
func describeCall(call *pb.RpcCall) (string, int64) {
	switch c := call.Call.(type) {
	case *pb.RpcCall_CmdStartInstance:
		return "StartInstance", -1
	case *pb.RpcCall_CmdCloseInstance:
		return "CloseInstance", int64(c.CmdCloseInstance.InstanceId)
	case *pb.RpcCall_CmdHandleEvent:
		return "HandleEvent", int64(c.CmdHandleEvent.InstanceId)
	case *pb.RpcCall_CmdGetInstanceStatus:
		return "GetInstanceStatus", int64(c.CmdGetInstanceStatus.InstanceId)
	case *pb.RpcCall_CmdGetPluginNames:
		return "GetPluginNames", -1
	case *pb.RpcCall_CmdGetPluginInfo:
		return "GetPluginInfo", -1
	}
	return "unknown", -1
}

// msgpackHandle decodes strings as strings and maps with string keys, as
// Kong's and the PDKs' messages have.
func msgpackHandle() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.RawToString = true
	h.MapType = reflect.TypeOf(map[string]any(nil))
	return h
}

// MsgPack:1 (mp_rpc.lua; Python and JavaScript PDKs): Kong sends a request
// [0, msgid, method, params] and reads values until the response
// [1, msgid, error, result], skipping notifications [2, label, args]. An
// event is plugin.HandleEvent and then one plugin.Step* call per PDK call,
// each a request and a response of its own.
func decodeMsgPack(rep *Reporter, fromKong, fromServer io.Reader) error {
	handle := msgpackHandle()
	kong, server := codec.NewDecoder(fromKong, handle), codec.NewDecoder(fromServer, handle)
	for {
		var request []any
		if err := kong.Decode(&request); err != nil {
			return streamEnd(err)
		}
		method, params, err := parseRequest(request)
		if err != nil {
			return err
		}
		name, id := describeMethod(method, params)
		response, failure, err := msgpackAnswer(server)
		switch {
		case err != nil:
			return err
		case failure != "":
			rep.Error(name, id, failure)
			return nil
		case response[2] != nil:
			rep.Error(name, id, protocol.Text(response[2]))
			continue
		}
		switch method {
		case protocol.MsgPackStartInstance:
			if started, ok := field(response[3], "Id"); ok {
				rep.InstanceStarted(started)
			} else {
				rep.Error(name, id, "answer without instance id")
			}
		case protocol.MsgPackCloseInstance:
			rep.InstanceClosed(id)
		case protocol.MsgPackHandleEvent:
			rep.Event(eventName(params))
		}
	}
}

func msgpackAnswer(server *codec.Decoder) ([]any, string, error) {
	for {
		var response []any
		if err := server.Decode(&response); err != nil {
			failure, err := endedAt(err, serverClosed)
			return nil, failure, err
		}
		if len(response) > 0 && protocol.Int(response[0]) == protocol.MsgPackNotification {
			continue
		}
		if len(response) != 4 || protocol.Int(response[0]) != protocol.MsgPackResponse {
			return nil, "", fmt.Errorf("not a msgpack-rpc response: %v", response)
		}
		return response, "", nil
	}
}

func parseRequest(request []any) (string, []any, error) {
	if len(request) != 4 || protocol.Int(request[0]) != protocol.MsgPackRequest {
		return "", nil, fmt.Errorf("not a msgpack-rpc request: %v", request)
	}
	method, ok := request[2].(string)
	if !ok {
		return "", nil, fmt.Errorf("msgpack-rpc request without a method name: %v", request)
	}
	params, _ := request[3].([]any)
	return method, params, nil
}

// describeMethod names a MsgPack call as describeCall does, with its instance.
func describeMethod(method string, params []any) (string, int64) {
	switch method {
	case protocol.MsgPackStartInstance:
		return "StartInstance", -1
	case protocol.MsgPackCloseInstance:
		if len(params) > 0 {
			return "CloseInstance", protocol.Int(params[0])
		}
		return "CloseInstance", -1
	case protocol.MsgPackHandleEvent:
		if len(params) > 0 {
			if id, ok := field(params[0], "InstanceId"); ok {
				return "HandleEvent", id
			}
		}
		return "HandleEvent", -1
	}
	return method, -1
}

// eventName is plugin.HandleEvent's EventName ("" when it has none).
func eventName(params []any) string {
	if len(params) == 0 {
		return ""
	}
	m, _ := params[0].(map[string]any)
	name, _ := m["EventName"].(string)
	return name
}

func field(value any, key string) (int64, bool) {
	m, ok := value.(map[string]any)
	if !ok {
		return 0, false
	}
	v, ok := m[key]
	if !ok {
		return 0, false
	}
	return protocol.Int(v), true
}
