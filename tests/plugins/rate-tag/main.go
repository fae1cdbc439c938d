// Command rate-tag is a test fixture shaped like a user's plugin, not ours: a
// different name, the newest go-pdk, two phases and a config with a string and
// an integer. It logs nothing and sets none of the example plugin's headers,
// so the harness can read its churn only from the plugin-server tap.
package main

import (
	"strconv"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

const (
	Version  = "1.2.3"
	Priority = 900
)

// Config is what a route gives the plugin.
type Config struct {
	Tag   string `json:"tag"`
	Limit int    `json:"limit"`
}

// New returns a fresh config for go-pdk to fill.
func New() interface{} {
	return &Config{}
}

// Access tags the response with the configured tag and limit.
func (conf Config) Access(kong *pdk.PDK) {
	kong.Response.SetHeader("X-Rate-Tag", conf.Tag+"/"+strconv.Itoa(conf.Limit))
}

// Log runs after the response, from a timer: a second event per request.
func (conf Config) Log(kong *pdk.PDK) {}

func main() {
	server.StartServer(New, Version, Priority)
}
