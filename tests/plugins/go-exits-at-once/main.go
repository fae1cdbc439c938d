// Command go-exits-at-once is a test plugin whose server answers Kong's query
// (`-dump`) and then crashes whenever Kong starts it: the plugin never runs,
// and no row may read stable or churn for it.
package main

import (
	"os"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

// Version and Priority are what `-dump` reports to Kong.
const (
	Version  = "0.1.0"
	Priority = 1000
)

// Config is empty.
type Config struct{}

// New is called by go-pdk once at server start and once per StartInstance.
func New() interface{} {
	return &Config{}
}

// Access would mark the response, had the server lived.
func (conf Config) Access(kong *pdk.PDK) {
	kong.Response.SetHeader("x-alive", "yes")
}

func main() {
	for _, arg := range os.Args[1:] {
		if arg == "-dump" {
			server.StartServer(New, Version, Priority)
			return
		}
	}
	panic("go-exits-at-once: this plugin server crashes at start")
}
