package protocol

import "fmt"

// MsgPack:1 is a msgpack-rpc stream: Kong sends requests
// [0, msgid, method, params] and reads responses [1, msgid, error, result]
// (and notifications [2, label, args]) on the same connection, one call at a
// time. Method names as Kong's kong/runloop/plugin_servers/mp_rpc.lua sends
// them and the Python (kong_pdk/listener.py) and JavaScript PDKs dispatch them.
const (
	MsgPackRequest      = 0
	MsgPackResponse     = 1
	MsgPackNotification = 2

	// params: [{Name, Config}]; result: {Name, Id, Config, StartTime}.
	MsgPackStartInstance = "plugin.StartInstance"
	// params: [instance id].
	MsgPackCloseInstance = "plugin.CloseInstance"
	// params: [{InstanceId, EventName}]; result: the first step {EventId, Data}.
	MsgPackHandleEvent = "plugin.HandleEvent"
)

// Int reads a decoded msgpack integer, whichever Go type the codec gave it
// (-1 if it is none).
func Int(value any) int64 {
	switch v := value.(type) {
	case int64:
		return v
	case uint64:
		return int64(v)
	case int:
		return int64(v)
	case float64:
		return int64(v)
	}
	return -1
}

// Text reads a decoded msgpack error value: a string, raw bytes, or anything
// else as Go prints it.
func Text(value any) string {
	switch v := value.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return fmt.Sprint(value)
}
