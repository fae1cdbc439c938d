package config

import (
	"crypto/sha1"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Plugin is one plugin entity: global, or scoped to a service or a route.
type Plugin struct {
	ID        string
	Name      string
	Config    map[string]any
	RouteID   string // "" unless scoped to a route
	ServiceID string // "" unless scoped to a service
	Key       string // Kong's cache key, sent to the plugin as __key__
}

// Route is a route with its prefix paths and the service it belongs to.
type Route struct {
	ID        string
	Name      string
	Paths     []string
	ServiceID string // "" for a route without a service (Kong answers 503)
	StripPath bool   // strip_path: the matched prefix is left out upstream (Kong's default)
}

// Service is a service entity: where its routes' requests are proxied.
type Service struct {
	ID   string
	Name string
	URL  *url.URL // http://host:port[/path]
}

// Declarative is a loaded declarative config: the entities kong-sim uses.
type Declarative struct {
	Services []Service
	Routes   []Route
	Plugins  []Plugin // every plugin, in file order
}

type rawFile struct {
	FormatVersion string       `yaml:"_format_version"`
	Services      []rawService `yaml:"services"`
	Routes        []rawRoute   `yaml:"routes"`
	Plugins       []rawPlugin  `yaml:"plugins"`
}

type rawService struct {
	ID      string      `yaml:"id"`
	Name    string      `yaml:"name"`
	URL     string      `yaml:"url"`
	Routes  []rawRoute  `yaml:"routes"`
	Plugins []rawPlugin `yaml:"plugins"`
}

type rawRoute struct {
	ID      string      `yaml:"id"`
	Name    string      `yaml:"name"`
	Paths   []string    `yaml:"paths"`
	Service string      `yaml:"service"`
	Plugins []rawPlugin `yaml:"plugins"`

	StripPath *bool `yaml:"strip_path"`
}

type rawPlugin struct {
	ID      string         `yaml:"id"`
	Name    string         `yaml:"name"`
	Config  map[string]any `yaml:"config"`
	Enabled *bool          `yaml:"enabled"`
}

// workspaceID is the id kong-sim gives the default workspace; it ends every
// plugin cache key.
var workspaceID = stableUUID("workspace:default")

// LoadDeclarative reads and validates the declarative config at path.
// known says whether a plugin name is enabled on this node.
func LoadDeclarative(path string, known func(name string) bool) (*Declarative, error) {
	if path == "" {
		return nil, fmt.Errorf("declarative_config is not set: kong-sim runs DB-less only, set KONG_DECLARATIVE_CONFIG or KONG_DECLARATIVE_CONFIG_STRING")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to open declarative config file %s: %w", path, err)
	}
	decl, err := ParseDeclarative(data, known)
	if err != nil {
		return nil, fmt.Errorf("error parsing declarative config file %s: %w", path, err)
	}
	return decl, nil
}

// LoadConfigured loads the declarative config the way kong/init.lua's
// parse_declarative_config picks it: declarative_config (a file) when set,
// else declarative_config_string (the config itself).
func LoadConfigured(file, text string, known func(name string) bool) (*Declarative, error) {
	if file != "" || text == "" {
		return LoadDeclarative(file, known)
	}
	decl, err := ParseDeclarative([]byte(text), known)
	if err != nil {
		return nil, fmt.Errorf("error parsing declarative string %s:\n%w", text, err)
	}
	return decl, nil
}

// ParseDeclarative parses a declarative config; errors name the offending
// entity the way Kong's schema errors do ("in 'plugins': in entry 1 ...").
func ParseDeclarative(data []byte, known func(name string) bool) (*Declarative, error) {
	var raw rawFile
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("failed parsing: %w", err)
	}
	switch raw.FormatVersion {
	case "":
		return nil, fmt.Errorf("in '_format_version': required field missing")
	case "1.1", "2.1", "3.0":
	default:
		return nil, fmt.Errorf("in '_format_version': expected one of: 1.1, 2.1, 3.0")
	}
	b := builder{known: known, decl: &Declarative{}, services: map[string]string{}}
	if err := b.add(raw); err != nil {
		return nil, err
	}
	return b.decl, nil
}

type builder struct {
	known    func(string) bool
	decl     *Declarative
	services map[string]string // name or id -> id
}

func (b *builder) add(raw rawFile) error {
	if err := b.addPlugins("plugins", raw.Plugins, "", ""); err != nil {
		return err
	}
	for i, s := range raw.Services {
		if err := b.addService(s); err != nil {
			return entryError("services", i, err)
		}
	}
	for i, r := range raw.Routes {
		serviceID := b.services[r.Service]
		if r.Service != "" && serviceID == "" {
			return entryError("routes", i, fmt.Errorf("in 'service': could not find service %q", r.Service))
		}
		if err := b.addRoute(r, serviceID); err != nil {
			return entryError("routes", i, err)
		}
	}
	return nil
}

func (b *builder) addService(s rawService) error {
	id := orDefault(s.ID, stableUUID("service:"+s.Name))
	target, err := serviceURL(s.URL)
	if err != nil {
		return err
	}
	b.decl.Services = append(b.decl.Services, Service{ID: id, Name: s.Name, URL: target})
	b.services[id] = id
	if s.Name != "" {
		b.services[s.Name] = id
	}
	if err := b.addPlugins("plugins", s.Plugins, "", id); err != nil {
		return err
	}
	for i, r := range s.Routes {
		if err := b.addRoute(r, id); err != nil {
			return entryError("routes", i, err)
		}
	}
	return nil
}

func (b *builder) addRoute(r rawRoute, serviceID string) error {
	if len(r.Paths) == 0 {
		return fmt.Errorf("in 'paths': kong-sim routes by path only, and this route has none")
	}
	for _, p := range r.Paths {
		switch {
		case strings.HasPrefix(p, "~/"):
			return fmt.Errorf("in 'paths': regex path %q: kong-sim supports prefix paths only", p)
		case !strings.HasPrefix(p, "/"):
			return fmt.Errorf("in 'paths': should start with: / (fixed path) or ~/ (regex path)")
		}
	}
	id := orDefault(r.ID, stableUUID(fmt.Sprintf("route:%s:%s:%v", serviceID, r.Name, r.Paths)))
	strip := r.StripPath == nil || *r.StripPath
	b.decl.Routes = append(b.decl.Routes, Route{ID: id, Name: r.Name, Paths: r.Paths, ServiceID: serviceID, StripPath: strip})
	return b.addPlugins("plugins", r.Plugins, id, serviceID)
}

// addPlugins adds plugins scoped to a route, a service, or (both empty) the node.
// A plugin nested under a route is scoped to the route only, as in Kong.
func (b *builder) addPlugins(field string, plugins []rawPlugin, routeID, serviceID string) error {
	if routeID != "" {
		serviceID = ""
	}
	for i, p := range plugins {
		if p.Name == "" {
			return entryError(field, i, fmt.Errorf("in 'name': required field missing"))
		}
		if !b.known(p.Name) {
			return entryError(field, i, fmt.Errorf(
				"in 'name': plugin '%s' not enabled; add it to the 'plugins' configuration property", p.Name))
		}
		if p.Enabled != nil && !*p.Enabled {
			continue
		}
		key := fmt.Sprintf("plugins:%s:%s:%s:::%s", p.Name, routeID, serviceID, workspaceID)
		b.decl.Plugins = append(b.decl.Plugins, Plugin{
			ID:        orDefault(p.ID, stableUUID(key)),
			Name:      p.Name,
			Config:    orEmpty(p.Config),
			RouteID:   routeID,
			ServiceID: serviceID,
			Key:       key,
		})
	}
	return nil
}

// serviceURL reads a service's url: kong-sim proxies plain HTTP to a host
// and port (the service's host, port, path fields are not read).
func serviceURL(text string) (*url.URL, error) {
	if text == "" {
		return nil, fmt.Errorf("in 'url': kong-sim needs each service's url (http://HOST:PORT[/PATH])")
	}
	target, err := url.Parse(text)
	switch {
	case err != nil:
		return nil, fmt.Errorf("in 'url': %w", err)
	case target.Scheme != "http":
		return nil, fmt.Errorf("in 'url': %q: kong-sim proxies http:// only", text)
	case target.Hostname() == "" || target.User != nil || target.RawQuery != "" || target.Fragment != "":
		return nil, fmt.Errorf("in 'url': %q is not http://HOST[:PORT][/PATH]", text)
	}
	if target.Port() == "" {
		target.Host = net.JoinHostPort(target.Hostname(), "80")
	}
	return target, nil
}

func entryError(field string, index int, err error) error {
	return fmt.Errorf("in '%s': in entry %d of '%s': %w", field, index+1, field, err)
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// stableUUID makes a name-based (version 5 style) UUID, so entities without
// an id keep the same id across restarts, as Kong's DB-less ids do.
func stableUUID(name string) string {
	sum := sha1.Sum([]byte("kong-sim:" + name))
	sum[6] = (sum[6] & 0x0f) | 0x50
	sum[8] = (sum[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
}

// Service is the service with id, if the config has it.
func (d *Declarative) Service(id string) (Service, bool) {
	for _, s := range d.Services {
		if s.ID == id && id != "" {
			return s, true
		}
	}
	return Service{}, false
}
