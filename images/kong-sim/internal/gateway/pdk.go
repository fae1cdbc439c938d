package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
	"github.com/kong-plugin-matrix/kong-sim/internal/pluginserver"
	"github.com/kong-plugin-matrix/kong-sim/internal/protocol"
)

// kongMethods are the PDK methods real Kong exposes to external plugins
// (go-pdk's `Kong` service; mp_rpc.lua exposes the same exposed_api).
var kongMethods = pluginserver.KongMethods()

// logLevels maps kong.log.<name> to the level it logs at.
var logLevels = map[string]konglog.Level{
	"alert": konglog.Alert, "crit": konglog.Crit, "err": konglog.Error, "warn": konglog.Warn,
	"notice": konglog.Notice, "info": konglog.Info, "debug": konglog.Debug,
}

// pdkLine is where pb_rpc.lua's call_pdk invokes the PDK function, so it is
// the file:line Kong's namespaced logger reports for a plugin's kong.log.*.
const pdkLine = 251

// mpPDKLine is the same place in mp_rpc.lua (call_pdk_method), and
// mpNoMethodLine its "could not find pdk method" line.
const (
	mpPDKLine      = 155
	mpNoMethodLine = 144
)

// errUnknownMethod is a method Kong does not have; errUnimplemented one
// Kong has and kong-sim does not model.
type (
	errUnknownMethod struct{ method string }
	errUnimplemented struct{ method string }
)

func (e errUnknownMethod) Error() string { return fmt.Sprintf("method %q not found", e.method) }
func (e errUnimplemented) Error() string {
	return fmt.Sprintf("kong-sim does not implement PDK method %q", e.method)
}

// pdk answers the PDK calls plugin p makes during one event of req, with the
// failures of its protocol: over ProtoBuf:1 any error drops the connection
// (as a failed call_pdk does); over MsgPack:1 an unknown method is logged
// and answered with nil, as mp_rpc.lua's call_pdk_method does, and a method
// kong-sim lacks is logged once and answered with plugin.StepError.
func (req *request) pdk(w *worker, p config.Plugin, wire string) pluginserver.PDK {
	return func(method string, args []any) (any, error) {
		result, err := req.callPDK(w, p, wire, method, args)
		if err == nil || wire != protocol.MsgPack {
			return result, err
		}
		var unknown errUnknownMethod
		var missing errUnimplemented
		switch {
		case errors.As(err, &unknown):
			w.log(konglog.Error, req.logContext(), konglog.KongMessage("mp_rpc.lua", mpNoMethodLine, req.namespace(p.Name), "could not find pdk method: "+method))
			return nil, nil
		case errors.As(err, &missing):
			if _, logged := w.g.unimplementedLogged.LoadOrStore(method, true); !logged {
				w.log(konglog.Warn, req.logContext(), konglog.KongMessage("mp_rpc.lua", mpPDKLine, req.namespace(p.Name), err.Error()))
			}
			return nil, &pluginserver.StepError{Text: err.Error()}
		}
		return nil, err
	}
}

// callPDK answers one call with decoded values, whatever the protocol.
func (req *request) callPDK(w *worker, p config.Plugin, wire, method string, args []any) (any, error) {
	if level, ok := logLevels[strings.TrimPrefix(method, "kong.log.")]; ok && strings.HasPrefix(method, "kong.log.") {
		file, line := "pb_rpc.lua", pdkLine
		if wire == protocol.MsgPack {
			file, line = "mp_rpc.lua", mpPDKLine
		}
		w.log(level, req.logContext(), konglog.KongMessage(file, line, req.namespace(p.Name), luaConcat(args)))
		return nil, nil
	}
	if answer, ok := pdkAnswers[method]; ok {
		return answer(req, w, args)
	}
	if kongMethods[method] {
		return nil, errUnimplemented{method}
	}
	return nil, errUnknownMethod{method}
}

// pdkAnswers implements the non-logging PDK methods kong-sim supports, on
// the Lua functions' arguments.
var pdkAnswers = map[string]func(req *request, w *worker, args []any) (any, error){
	"kong.response.set_header": func(req *request, _ *worker, args []any) (any, error) {
		return editHeaders(args, req, func(h http.Header, k, v string) { h.Set(k, v) })
	},
	"kong.response.add_header": func(req *request, _ *worker, args []any) (any, error) {
		return editHeaders(args, req, func(h http.Header, k, v string) { h.Add(k, v) })
	},
	"kong.response.clear_header": func(req *request, _ *worker, args []any) (any, error) {
		req.mu.Lock()
		req.headers.Del(luaString(arg(args, 0)))
		req.mu.Unlock()
		return nil, nil
	},
	"kong.response.get_header": func(req *request, _ *worker, args []any) (any, error) {
		req.mu.Lock()
		defer req.mu.Unlock()
		return headerOrNil(req.headers, luaString(arg(args, 0))), nil
	},
	"kong.response.exit": func(req *request, _ *worker, args []any) (any, error) {
		status, ok := luaNumber(arg(args, 0))
		if !ok {
			return nil, fmt.Errorf("kong.response.exit: code must be a number, got %v", arg(args, 0))
		}
		exit := &exitResponse{status: int(status), headers: http.Header{}}
		switch body := arg(args, 1).(type) {
		case nil:
		case string:
			if body != "" {
				exit.body = []byte(body)
			}
		case []byte:
			exit.body = body
		default: // a table: Kong encodes it as JSON
			exit.body = kongJSON(body)
			exit.headers = jsonContentType()
		}
		if headers, ok := arg(args, 2).(map[string]any); ok {
			for name, value := range headers {
				for _, v := range headerValues(value) {
					exit.headers.Add(name, v)
				}
			}
		}
		req.setExit(exit)
		return nil, nil
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
	"kong.request.get_header": func(req *request, _ *worker, args []any) (any, error) {
		name := luaString(arg(args, 0))
		if strings.EqualFold(name, "host") { // Go keeps the Host header apart from the others
			return req.http.Host, nil
		}
		return headerOrNil(req.http.Header, name), nil
	},
}

func stringAnswer(value func(*request, *worker) string) func(*request, *worker, []any) (any, error) {
	return func(req *request, w *worker, _ []any) (any, error) {
		return value(req, w), nil
	}
}

// arg is args[i], nil when the plugin passed fewer (Lua's missing argument).
func arg(args []any, i int) any {
	if i < len(args) {
		return args[i]
	}
	return nil
}

// headerOrNil is a header's first value, nil (Lua's) when it is absent.
func headerOrNil(h http.Header, name string) any {
	if values := h.Values(name); len(values) > 0 {
		return values[0]
	}
	return nil
}

func editHeaders(args []any, req *request, edit func(h http.Header, k, v string)) (any, error) {
	req.mu.Lock()
	edit(req.headers, luaString(arg(args, 0)), luaString(arg(args, 1)))
	req.mu.Unlock()
	return nil, nil
}

// luaConcat joins log arguments as Kong's logger does: tostring'ed and
// concatenated without separators.
func luaConcat(values []any) string {
	var b strings.Builder
	for _, v := range values {
		b.WriteString(luaString(v))
	}
	return b.String()
}

// headerValues reads a header given as a string or a list of strings.
func headerValues(value any) []string {
	list, ok := value.([]any)
	if !ok {
		return []string{luaString(value)}
	}
	values := make([]string, 0, len(list))
	for _, v := range list {
		values = append(values, luaString(v))
	}
	return values
}

// luaNumber reads a number of either protocol (Lua has only doubles).
func luaNumber(value any) (float64, bool) {
	switch x := value.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case int:
		return float64(x), true
	}
	return 0, false
}

// luaString renders a value like Lua's tostring (numbers as %.14g); lists
// and tables, which Lua would print as addresses, are shown as JSON.
func luaString(value any) string {
	if number, ok := luaNumber(value); ok {
		return strconv.FormatFloat(number, 'g', 14, 64)
	}
	switch x := value.(type) {
	case nil:
		return "nil"
	case string:
		return x
	case []byte:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	}
	text, err := json.Marshal(value)
	if err != nil {
		return fmt.Sprint(value)
	}
	return string(text)
}
