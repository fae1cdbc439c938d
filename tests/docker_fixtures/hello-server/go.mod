module github.com/kong-plugin-matrix/hello-server

go 1.21
