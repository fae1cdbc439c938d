package gateway

import (
	"net/http"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func transformerConfig(t *testing.T, text string) map[string]any {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestResponseTransformerAddsMissingHeadersOnly(t *testing.T) {
	tr, err := parseResponseTransformer(transformerConfig(t, `
add:
  headers: ["X-Example-Message:lua", "X-Set:new", "X-Colons::a:b"]
remove: {headers: []}
append: null
`))
	if err != nil {
		t.Fatal(err)
	}
	headers := http.Header{"X-Set": {"old"}}
	tr.headerFilter(headers)
	for name, want := range map[string]string{"X-Example-Message": "lua", "X-Set": "old", "X-Colons": "a:b"} {
		if got := headers.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestResponseTransformerRefusesWhatItDoesNotModel(t *testing.T) {
	for text, want := range map[string]string{
		`{remove: {headers: ["X-A"]}}`:   "in 'config.remove.headers': not implemented by kong-sim",
		`{add: {json: ["a:b"]}}`:         "in 'config.add.json': not implemented by kong-sim",
		`{append: {headers: ["X-A:b"]}}`: "in 'config.append.headers': not implemented by kong-sim",
		`{add: {headers: ["no-colon"]}}`: "in 'config.add.headers': entry 1: invalid value: no-colon",
		`{add: {headers: [":v"]}}`:       "invalid value: :v",
		`{add: {headers: "X-A:b"}}`:      "in 'config.add.headers': expected an array",
		`{add: {bodies: []}}`:            "in 'config.add.bodies': unknown field",
		`{transform: {}}`:                "in 'config.transform': unknown field",
		`{add: ["X-A:b"]}`:               "in 'config.add': expected a record",
		`{add: {headers: [1]}}`:          "entry 1: expected a string",
	} {
		_, err := parseResponseTransformer(transformerConfig(t, text))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", text, err, want)
		}
	}
}
