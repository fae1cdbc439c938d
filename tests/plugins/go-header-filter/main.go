// Command go-header-filter is a test plugin with only a HeaderFilter method,
// as a user might write one by analogy with a Lua plugin. go-pdk (v0.6 to
// v0.11) knows no such handler: its `-dump` lists no phase for it, so Kong
// never sends it an event and the plugin never runs. The harness must say
// so, not read its zero instances as "stable".
package main

import (
	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

// Version and Priority are what `-dump` reports to Kong.
const (
	Version  = "0.1.0"
	Priority = 1
)

// Config is the plugin's configuration: nothing to set.
type Config struct{}

// New is called by go-pdk once at server start and once per StartInstance.
func New() interface{} {
	return &Config{}
}

// HeaderFilter would mark the response, if go-pdk ever called it.
func (conf Config) HeaderFilter(kong *pdk.PDK) {
	kong.Response.SetHeader("x-header-filter", "ran")
}

func main() {
	server.StartServer(New, Version, Priority)
}
