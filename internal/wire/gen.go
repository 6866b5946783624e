package wire

// Regenerate with protoc 3.21 and protoc-gen-go v1.36.12 on PATH:
//   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//go:generate protoc --go_out=. --go_opt=paths=source_relative wire.proto
