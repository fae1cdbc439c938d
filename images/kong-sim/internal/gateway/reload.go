package gateway

import (
	"bytes"
	"crypto/md5"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
)

// maxConfigBytes bounds a POST /config body.
const maxConfigBytes = 16 << 20

// errNoConfig is Kong's answer to a POST /config that carries no config.
var errNoConfig = errors.New("expected a declarative configuration")

// postConfig is the DB-less admin endpoint POST /config (kong/api/routes/
// config.lua): the declarative config comes as the JSON body itself (with
// _format_version at its top), as a form or JSON field `config` holding YAML
// or JSON text, or as the raw body. It is validated as at start-up; on
// success every worker runs the new config from its next request and the
// answer is 201 with the loaded entities.
func (g *Gateway) postConfig(rw http.ResponseWriter, r *http.Request) {
	text, err := declarativeText(r)
	if err != nil {
		g.writeJSON(rw, http.StatusBadRequest, map[string]string{"message": err.Error()})
		return
	}
	decl, err := g.parseConfig(text)
	if err != nil {
		// errors:declarative_config: code 14, with the reason in `message`.
		g.writeJSON(rw, http.StatusBadRequest, map[string]any{
			"code": 14, "name": "invalid declarative configuration",
			"message": "declarative config is invalid: " + err.Error(),
		})
		return
	}
	g.Reload(decl, fmt.Sprintf("%x", md5.Sum(text)))
	g.writeJSON(rw, http.StatusCreated, entities(decl))
}

// declarativeText finds the config in a POST /config request, in the order
// Kong's hydrate_config_from_request does.
func declarativeText(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxConfigBytes))
	if err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mediaType {
	case "application/json":
		var params map[string]any
		if json.Unmarshal(body, &params) == nil {
			if _, whole := params["_format_version"]; whole {
				return body, nil
			}
			switch field := params["config"].(type) {
			case string:
				return nonEmpty([]byte(field))
			case map[string]any:
				return json.Marshal(field)
			}
		}
	case "application/x-www-form-urlencoded", "multipart/form-data":
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := r.ParseMultipartForm(maxConfigBytes); err != nil && !errors.Is(err, http.ErrNotMultipart) {
			return nil, fmt.Errorf("reading the form: %w", err)
		}
		if value := r.FormValue("config"); value != "" {
			return nonEmpty([]byte(value))
		}
		return nonEmpty(formFile(r, "config")) // curl -F config=@kong.yml, as Kong's docs have it
	}
	return nonEmpty(body)
}

// formFile is the content of an uploaded file field, or nil.
func formFile(r *http.Request, field string) []byte {
	if r.MultipartForm == nil || len(r.MultipartForm.File[field]) == 0 {
		return nil
	}
	f, err := r.MultipartForm.File[field][0].Open()
	if err != nil {
		return nil
	}
	defer f.Close()
	content, _ := io.ReadAll(io.LimitReader(f, maxConfigBytes))
	return content
}

func nonEmpty(text []byte) ([]byte, error) {
	if len(bytes.TrimSpace(text)) == 0 {
		return nil, errNoConfig
	}
	return text, nil
}

// parseConfig validates a declarative config the way start-up does: known
// plugin names, then the configs of the bundled plugins kong-sim runs. JSON
// text goes through encoding/json, its integers kept as integers (as YAML
// gives them), then on as YAML.
func (g *Gateway) parseConfig(text []byte) (*config.Declarative, error) {
	if trimmed := bytes.TrimSpace(text); len(trimmed) > 0 && trimmed[0] == '{' {
		decoder := json.NewDecoder(bytes.NewReader(trimmed))
		decoder.UseNumber()
		var value any
		if err := decoder.Decode(&value); err != nil {
			return nil, fmt.Errorf("failed parsing: %w", err)
		}
		var err error
		if text, err = yaml.Marshal(integersAsInts(value)); err != nil {
			return nil, fmt.Errorf("failed parsing: %w", err)
		}
	}
	decl, err := config.ParseDeclarative(text, g.enabled())
	if err != nil {
		return nil, err
	}
	if err := g.checkBundledPlugins(decl); err != nil {
		return nil, err
	}
	return decl, nil
}

// integersAsInts turns the json.Numbers of a decoded value into int where
// they are integers and float64 elsewhere.
func integersAsInts(value any) any {
	switch v := value.(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return int(n)
		}
		f, _ := v.Float64()
		return f
	case map[string]any:
		for k, item := range v {
			v[k] = integersAsInts(item)
		}
	case []any:
		for i, item := range v {
			v[i] = integersAsInts(item)
		}
	}
	return value
}

// Reload applies a validated declarative config to every worker, as each
// worker's reconfigure handler does (kong/runloop/handler.lua): new router,
// new plugins iterator with fresh __seq__ values, the same plugin ids. The
// running plugin instances stay; whether the next event reuses one is the
// release's reuse test, as always. Requests in flight finish with the
// config they started with.
func (g *Gateway) Reload(decl *config.Declarative, hash string) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	began := time.Now()
	timers := make([]konglog.Context, len(g.workers))
	for _, w := range g.workers {
		timers[w.id] = konglog.Context{Conn: w.nextConn(), Phase: "ngx.timer"}
		w.log(konglog.Info, timers[w.id], fmt.Sprintf("[lua] handler.lua:604: declarative reconfigure was started on worker #%d", w.id))
		w.log(konglog.Info, timers[w.id], fmt.Sprintf("[lua] handler.lua:639: building a new router took 0 ms on worker #%d", w.id))
	}
	gen := g.newGeneration(decl, hash)
	for _, w := range g.workers {
		w.log(konglog.Info, timers[w.id], fmt.Sprintf("[lua] handler.lua:652: building a new plugins iterator took 0 ms on worker #%d", w.id))
	}
	g.current.Store(gen)
	took := time.Since(began).Milliseconds()
	for _, w := range g.workers {
		w.log(konglog.Info, timers[w.id], fmt.Sprintf("[lua] handler.lua:692: declarative reconfigure took %d ms on worker #%d", took, w.id))
	}
}

// entities is the loaded config as POST /config answers it: each entity
// type, keyed by id.
func entities(decl *config.Declarative) map[string]any {
	services := map[string]any{}
	for _, s := range decl.Services {
		services[s.ID] = map[string]any{"id": s.ID, "name": s.Name}
	}
	routes := map[string]any{}
	for _, r := range decl.Routes {
		routes[r.ID] = map[string]any{"id": r.ID, "name": r.Name, "paths": r.Paths, "service": reference(r.ServiceID)}
	}
	plugins := map[string]any{}
	for _, p := range decl.Plugins {
		plugins[p.ID] = map[string]any{
			"id": p.ID, "name": p.Name, "config": p.Config, "enabled": true,
			"route": reference(p.RouteID), "service": reference(p.ServiceID),
		}
	}
	return map[string]any{"services": services, "routes": routes, "plugins": plugins}
}

// reference is a foreign key as Kong renders it: {"id": ...}, or null.
func reference(id string) any {
	if id == "" {
		return nil
	}
	return map[string]string{"id": id}
}
