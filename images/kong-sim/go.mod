module github.com/kong-plugin-matrix/kong-sim

go 1.21

require (
	github.com/Kong/go-pdk v0.10.0
	github.com/ugorji/go/codec v1.2.7
	google.golang.org/protobuf v1.28.0
	gopkg.in/yaml.v3 v3.0.1
)
