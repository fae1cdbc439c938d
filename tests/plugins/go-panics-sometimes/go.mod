module github.com/kong-plugin-matrix/go-panics-sometimes

go 1.21

require github.com/Kong/go-pdk v0.10.0

require (
	github.com/ugorji/go/codec v1.2.7 // indirect
	google.golang.org/protobuf v1.28.0 // indirect
)
