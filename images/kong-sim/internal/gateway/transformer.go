package gateway

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
)

const responseTransformer = "response-transformer"

// responseTransformation is a validated response-transformer config. kong-sim
// models only `add.headers`, in-process, with no plugin server: it is here so
// that a route can do the same work as the Go plugin (set a response header)
// the way a bundled Lua plugin does, as the overhead scenario's baseline. It
// is a model of the plugin, not its Lua code.
type responseTransformation struct {
	addHeaders [][2]string // name, value; in config order
}

// transformerSections are response-transformer's config records; each holds
// lists, and only add.headers may be non-empty here.
var transformerSections = map[string][]string{
	"remove":  {"headers", "json"},
	"rename":  {"headers", "json"},
	"replace": {"headers", "json", "json_types"},
	"add":     {"headers", "json", "json_types"},
	"append":  {"headers", "json", "json_types"},
}

// parseResponseTransformer validates a response-transformer config. Fields
// kong-sim does not model are refused unless empty, so a config never seems
// to work while doing nothing.
func parseResponseTransformer(cfg map[string]any) (responseTransformation, error) {
	var t responseTransformation
	for _, field := range sortedKeys(cfg) {
		lists, known := transformerSections[field]
		if !known {
			return t, fmt.Errorf("in 'config.%s': unknown field", field)
		}
		if cfg[field] == nil {
			continue
		}
		section, ok := cfg[field].(map[string]any)
		if !ok {
			return t, fmt.Errorf("in 'config.%s': expected a record", field)
		}
		for _, name := range sortedKeys(section) {
			if !contains(lists, name) {
				return t, fmt.Errorf("in 'config.%s.%s': unknown field", field, name)
			}
			values, err := stringList(section[name], field+"."+name)
			if err != nil {
				return t, err
			}
			if len(values) == 0 {
				continue
			}
			if field != "add" || name != "headers" {
				return t, fmt.Errorf("in 'config.%s.%s': not implemented by kong-sim (it models response-transformer's add.headers only)", field, name)
			}
			if t.addHeaders, err = colonHeaders(values, field+"."+name); err != nil {
				return t, err
			}
		}
	}
	return t, nil
}

func stringList(value any, field string) ([]string, error) {
	if value == nil {
		return nil, nil
	}
	items, ok := value.([]any)
	if !ok {
		return nil, fmt.Errorf("in 'config.%s': expected an array", field)
	}
	values := make([]string, len(items))
	for i, item := range items {
		s, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf("in 'config.%s': entry %d: expected a string", field, i+1)
		}
		values[i] = s
	}
	return values, nil
}

// colonHeaders splits "name:value" entries as the plugin's iterator does
// (the name up to the first colon, then the colons after it are skipped).
func colonHeaders(values []string, field string) ([][2]string, error) {
	headers := make([][2]string, len(values))
	for i, v := range values {
		name, value, found := strings.Cut(v, ":")
		if !found || name == "" {
			return nil, fmt.Errorf("in 'config.%s': entry %d: invalid value: %s", field, i+1, v)
		}
		headers[i] = [2]string{name, strings.TrimLeft(value, ":")}
	}
	return headers, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// headerFilter is the plugin's header_filter phase: `add` sets a header only
// when the response does not have it yet.
func (t responseTransformation) headerFilter(headers http.Header) {
	for _, h := range t.addHeaders {
		if len(headers.Values(h[0])) == 0 {
			headers.Set(h[0], h[1])
		}
	}
}
