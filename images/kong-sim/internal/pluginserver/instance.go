package pluginserver

import (
	"fmt"

	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
)

// PDK answers one PDK call with decoded Go values (strings, numbers as
// float64 or int64, bool, nil, []any, map[string]any): the result, nil for
// none. A *StepError is an answer the plugin sees (plugin.StepError over
// MsgPack:1); any other error makes Kong abandon the connection.
type PDK func(method string, args []any) (any, error)

// StepError is a PDK call's failure that the plugin is told about.
type StepError struct{ Text string }

func (e *StepError) Error() string { return e.Text }

// RPC is one nginx worker's RPC object for one plugin server, in the
// protocol the server's `-dump` named: what init.lua calls through
// plugin_info.rpc whatever the protocol.
type RPC interface {
	// StartInstance starts an instance of plugin name with its JSON config
	// and returns the instance id the server gave it.
	StartInstance(name string, config []byte) (int32, error)
	CloseInstance(id int32) error
	// HandleEvent runs one phase on an instance, answering its PDK calls.
	HandleEvent(id int32, phase string, pdk PDK) error
	// Close drops the idle connections.
	Close()
}

// NewRPC returns the client for a server speaking wire (ProtoBuf:1 or
// MsgPack:1, as kong/runloop/plugin_servers/init.lua picks pb_rpc or mp_rpc).
func NewRPC(wire, socket string) (RPC, error) {
	switch wire {
	case protocol.ProtoBuf:
		return protoBufRPC{NewClient(socket)}, nil
	case protocol.MsgPack:
		return NewMsgPackClient(socket), nil
	}
	return nil, fmt.Errorf("unknown protocol %q (Kong knows %s and %s)", wire, protocol.ProtoBuf, protocol.MsgPack)
}

// protoBufRPC is the ProtoBuf:1 Client behind the RPC interface.
type protoBufRPC struct{ *Client }

func (c protoBufRPC) StartInstance(name string, config []byte) (int32, error) {
	status, err := c.Client.StartInstance(name, config)
	if err != nil {
		return 0, err
	}
	return status.InstanceId, nil
}

func (c protoBufRPC) HandleEvent(id int32, phase string, pdk PDK) error {
	return c.Client.HandleEvent(id, phase, ProtoBufPDK(pdk))
}
