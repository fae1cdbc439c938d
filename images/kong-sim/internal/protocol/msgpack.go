package protocol

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
