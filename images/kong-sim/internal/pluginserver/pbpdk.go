package pluginserver

import (
	"fmt"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// signature is the protobuf message names of a PDK method's argument and
// result, from go-pdk's `Kong` service.
type signature struct{ in, out string }

var kongSignatures = func() map[string]signature {
	signatures := map[string]signature{}
	services := pb.File_server_kong_plugin_protocol_pluginsocket_proto.Services()
	for i := 0; i < services.Len(); i++ {
		service := services.Get(i)
		for j := 0; j < service.Methods().Len(); j++ {
			m := service.Methods().Get(j)
			name := methodName(string(service.Name())+"."+string(m.Name()), m.Options())
			signatures[name] = signature{in: string(m.Input().FullName()), out: string(m.Output().FullName())}
		}
	}
	return signatures
}()

// ProtoBufPDK adapts a PDK to ProtoBuf:1's bridge: it decodes the argument
// frame into Go values by the method's argument message, and encodes the
// result as its result message. An argument message kong-sim does not decode
// reaches pdk as no arguments (pdk refuses the methods it lacks).
func ProtoBufPDK(pdk PDK) PDKFunc {
	return func(method string, raw []byte) ([]byte, error) {
		sig := kongSignatures[method]
		args, err := decodeProtoBufArgs(sig.in, raw)
		if err != nil {
			return nil, fmt.Errorf("decoding the arguments of %s: %w", method, err)
		}
		result, err := pdk(method, args)
		if err != nil {
			return nil, err
		}
		return encodeProtoBufResult(sig.out, result)
	}
}

func decodeProtoBufArgs(message string, raw []byte) ([]any, error) {
	switch message {
	case "kong_plugin_protocol.String":
		var s pb.String
		if err := proto.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []any{s.V}, nil
	case "kong_plugin_protocol.KV":
		var kv pb.KV
		if err := proto.Unmarshal(raw, &kv); err != nil {
			return nil, err
		}
		return []any{kv.K, kv.V.AsInterface()}, nil
	case "kong_plugin_protocol.ExitArgs":
		var exit pb.ExitArgs
		if err := proto.Unmarshal(raw, &exit); err != nil {
			return nil, err
		}
		var headers any
		if exit.Headers != nil {
			headers = exit.Headers.AsMap()
		}
		return []any{float64(exit.Status), string(exit.Body), headers}, nil
	case "google.protobuf.ListValue":
		var list structpb.ListValue
		if err := proto.Unmarshal(raw, &list); err != nil {
			return nil, err
		}
		return list.AsSlice(), nil
	}
	return nil, nil
}

func encodeProtoBufResult(message string, result any) ([]byte, error) {
	switch message {
	case "kong_plugin_protocol.String":
		text, _ := result.(string) // nil (Lua's nil) is the empty string
		return proto.Marshal(&pb.String{V: text})
	case "google.protobuf.Empty":
		return []byte{}, nil
	}
	if result == nil {
		return []byte{}, nil
	}
	return nil, fmt.Errorf("kong-sim does not encode %s results", message)
}
