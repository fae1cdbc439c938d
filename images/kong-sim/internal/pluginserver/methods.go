package pluginserver

import (
	"regexp"
	"strings"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

var lowerBeforeUpper = regexp.MustCompile(`([a-z][0-9]*)([A-Z])`)

// KongMethods lists the PDK method names Kong exposes over ProtoBuf:1, read
// from the `Kong` service of go-pdk's compiled pluginsocket.proto and named
// the way pb_rpc.lua's load_service names them: the MethodName option, else
// "Kong.Request_GetHeader" -> "kong.request.get_header".
func KongMethods() map[string]bool {
	names := map[string]bool{}
	services := pb.File_server_kong_plugin_protocol_pluginsocket_proto.Services()
	for i := 0; i < services.Len(); i++ {
		service := services.Get(i)
		methods := service.Methods()
		for j := 0; j < methods.Len(); j++ {
			method := methods.Get(j)
			names[methodName(string(service.Name())+"."+string(method.Name()), method.Options())] = true
		}
	}
	return names
}

func methodName(full string, options proto.Message) string {
	if opts, ok := options.(*descriptorpb.MethodOptions); ok && opts != nil {
		if name, _ := proto.GetExtension(opts, pb.E_MethodName).(string); name != "" {
			return name
		}
	}
	name := strings.ReplaceAll(full, "_", ".")
	name = lowerBeforeUpper.ReplaceAllString(name, "${1}_${2}")
	return strings.ToLower(name)
}
