module example.com/go-pdk-06

go 1.13

require github.com/Kong/go-pdk v0.6.1
