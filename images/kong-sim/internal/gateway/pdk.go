package gateway

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	pb "github.com/Kong/go-pdk/server/kong_plugin_protocol"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
	"github.com/kong-plugin-matrix/kong-sim/internal/pluginserver"
)

// kongMethods are the PDK methods real Kong answers over ProtoBuf:1.
var kongMethods = pluginserver.KongMethods()

// logLevels maps kong.log.<name> to the level it logs at.
var logLevels = map[string]konglog.Level{
	"alert": konglog.Alert, "crit": konglog.Crit, "err": konglog.Error, "warn": konglog.Warn,
	"notice": konglog.Notice, "info": konglog.Info, "debug": konglog.Debug,
}

// pdkLine is where pb_rpc.lua's call_pdk invokes the PDK function, so it is
// the file:line Kong's namespaced logger reports for a plugin's kong.log.*.
const pdkLine = 251

// pdk answers the PDK calls plugin p makes during one event of req.
func (req *request) pdk(w *worker, p config.Plugin) pluginserver.PDKFunc {
	return func(method string, args []byte) ([]byte, error) {
		return req.callPDK(w, p, method, args)
	}
}

// callPDK answers one call. An error makes the caller drop the connection
// without a reply, which is what Kong does when call_pdk fails: the plugin's
// bridge then reads EOF.
func (req *request) callPDK(w *worker, p config.Plugin, method string, args []byte) ([]byte, error) {
	if level, ok := logLevels[strings.TrimPrefix(method, "kong.log.")]; ok && strings.HasPrefix(method, "kong.log.") {
		var list structpb.ListValue
		if err := proto.Unmarshal(args, &list); err != nil {
			return nil, fmt.Errorf("decoding the arguments of %s: %w", method, err)
		}
		w.log(level, req.logContext(), konglog.KongMessage("pb_rpc.lua", pdkLine, req.namespace(p.Name), luaConcat(list.Values)))
		return []byte{}, nil
	}
	if answer, ok := pdkAnswers[method]; ok {
		return answer(req, w, args)
	}
	if kongMethods[method] {
		return nil, fmt.Errorf("kong-sim does not implement PDK method %q", method)
	}
	return nil, fmt.Errorf("method %q not found", method)
}

// pdkAnswers implements the non-logging PDK methods kong-sim supports.
var pdkAnswers = map[string]func(req *request, w *worker, args []byte) ([]byte, error){
	"kong.response.set_header": func(req *request, _ *worker, args []byte) ([]byte, error) {
		return editHeaders(args, req, func(h http.Header, k, v string) { h.Set(k, v) })
	},
	"kong.response.add_header": func(req *request, _ *worker, args []byte) ([]byte, error) {
		return editHeaders(args, req, func(h http.Header, k, v string) { h.Add(k, v) })
	},
	"kong.response.clear_header": func(req *request, _ *worker, args []byte) ([]byte, error) {
		var name pb.String
		if err := proto.Unmarshal(args, &name); err != nil {
			return nil, err
		}
		req.mu.Lock()
		req.headers.Del(name.V)
		req.mu.Unlock()
		return []byte{}, nil
	},
	"kong.response.exit": func(req *request, _ *worker, args []byte) ([]byte, error) {
		var exit pb.ExitArgs
		if err := proto.Unmarshal(args, &exit); err != nil {
			return nil, err
		}
		headers := http.Header{}
		for name, value := range exit.Headers.GetFields() {
			for _, v := range headerValues(value) {
				headers.Add(name, v)
			}
		}
		req.setExit(&exitResponse{status: int(exit.Status), body: exit.Body, headers: headers})
		return []byte{}, nil
	},
	"kong.request.get_method": stringAnswer(func(req *request, _ *worker) string { return req.http.Method }),
	"kong.request.get_path":   stringAnswer(func(req *request, _ *worker) string { return req.http.URL.Path }),
	"kong.request.get_scheme": stringAnswer(func(*request, *worker) string { return "http" }),
	"kong.request.get_host": stringAnswer(func(req *request, _ *worker) string {
		return strings.Split(req.http.Host, ":")[0]
	}),
	"kong.client.get_ip":       stringAnswer(func(req *request, _ *worker) string { return req.clientIP() }),
	"kong.nginx.get_subsystem": stringAnswer(func(*request, *worker) string { return "http" }),
	"kong.node.get_id":         stringAnswer(func(_ *request, w *worker) string { return w.g.nodeID }),
	"kong.request.get_header": func(req *request, _ *worker, args []byte) ([]byte, error) {
		var name pb.String
		if err := proto.Unmarshal(args, &name); err != nil {
			return nil, err
		}
		return proto.Marshal(&pb.String{V: req.http.Header.Get(name.V)})
	},
}

func stringAnswer(value func(*request, *worker) string) func(*request, *worker, []byte) ([]byte, error) {
	return func(req *request, w *worker, _ []byte) ([]byte, error) {
		return proto.Marshal(&pb.String{V: value(req, w)})
	}
}

func editHeaders(args []byte, req *request, edit func(h http.Header, k, v string)) ([]byte, error) {
	var kv pb.KV
	if err := proto.Unmarshal(args, &kv); err != nil {
		return nil, err
	}
	req.mu.Lock()
	edit(req.headers, kv.K, luaString(kv.V))
	req.mu.Unlock()
	return []byte{}, nil
}

// luaConcat joins log arguments as Kong's logger does: tostring'ed and
// concatenated without separators.
func luaConcat(values []*structpb.Value) string {
	var b strings.Builder
	for _, v := range values {
		b.WriteString(luaString(v))
	}
	return b.String()
}

// headerValues reads a header given as a string or a list of strings.
func headerValues(value *structpb.Value) []string {
	list := value.GetListValue()
	if list == nil {
		return []string{luaString(value)}
	}
	values := make([]string, 0, len(list.Values))
	for _, v := range list.Values {
		values = append(values, luaString(v))
	}
	return values
}

// luaString renders a value like Lua's tostring (numbers as %.14g); lists
// and tables, which Lua would print as addresses, are shown as JSON.
func luaString(value *structpb.Value) string {
	switch x := value.AsInterface().(type) {
	case nil:
		return "nil"
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'g', 14, 64)
	}
	text, err := protojson.Marshal(value)
	if err != nil {
		return value.String()
	}
	return string(text)
}
