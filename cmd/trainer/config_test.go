package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
)

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(*config) bool
		wantErr string
	}{
		{"defaults", nil, nil, func(c *config) bool {
			return c.Model == "mlp" && c.Batch == 64 && c.Node.Listen == "0.0.0.0:7946" && c.Node.QUICListen == "0.0.0.0:7947" && c.Node.MinPeers == 1
		}, ""},
		{"env twin", nil, map[string]string{"RINGTRAIN_MODEL": "cnn", "RINGTRAIN_MIN_PEERS": "3"}, func(c *config) bool { return c.Model == "cnn" && c.Node.MinPeers == 3 }, ""},
		{"flag beats env", []string{"--model", "mlp"}, map[string]string{"RINGTRAIN_MODEL": "cnn"}, func(c *config) bool { return c.Model == "mlp" }, ""},
		{"bad env value", nil, map[string]string{"RINGTRAIN_BATCH": "many"}, nil, "RINGTRAIN_BATCH"},
		{"bad model", []string{"--model", "resnet"}, nil, nil, "--model"},
		{"resume needs dir", []string{"--resume"}, nil, nil, "--checkpoint-dir"},
		{"two secrets", []string{"--secret", "a-secret-of-16-bytes", "--secret-file", "b"}, nil, nil, "not both"},
		{"node flags", []string{"--seeds", "10.0.0.1:7946, 10.0.0.2:7946", "--insecure", "--chunk-bytes", "4096", "--op-timeout", "3s", "--node-id", "n1"}, nil,
			func(c *config) bool {
				return strings.Join(c.Node.Seeds, " ") == "10.0.0.1:7946 10.0.0.2:7946" && c.Node.Insecure && c.Node.ChunkBytes == 4096 &&
					c.Node.OpTimeout == 3*time.Second && c.Node.ID == "n1"
			}, ""},
		{"bad node flag", []string{"--min-peers", "0"}, nil, nil, `--min-peers "0": must be at least 1`},
		{"bad node env", nil, map[string]string{"RINGTRAIN_OP_TIMEOUT": "soon"}, nil, `RINGTRAIN_OP_TIMEOUT="soon"`},
		{"short secret not echoed", []string{"--secret", "hunter2"}, nil, nil, "--secret: 7 bytes, want at least 16"},
		{"stray argument", []string{"train"}, nil, nil, "unexpected"},
		{"wire and bucket defaults", nil, nil, func(c *config) bool {
			return c.wire() == collective.Float32 && c.BucketBytes == collective.DefaultBucketBytes
		}, ""},
		{"bucket off", []string{"--bucket-bytes", "0"}, nil, func(c *config) bool { return c.BucketBytes == 0 }, ""},
		{"wire and bucket flags", []string{"--wire-dtype", "bf16", "--bucket-bytes", "1048576"}, nil,
			func(c *config) bool { return c.wire() == collective.BFloat16 && c.BucketBytes == 1<<20 }, ""},
		{"wire and bucket env twins", nil, map[string]string{"RINGTRAIN_WIRE_DTYPE": "fp16", "RINGTRAIN_BUCKET_BYTES": "4096"},
			func(c *config) bool { return c.wire() == collective.Float16 && c.BucketBytes == 4096 }, ""},
		{"bad wire dtype", []string{"--wire-dtype", "int8"}, nil, nil, "--wire-dtype"},
		{"negative bucket", []string{"--bucket-bytes", "-1"}, nil, nil, "--bucket-bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("unexpected config %+v", c)
			}
		})
	}
}

func TestHelpListsEveryFlagAndEnv(t *testing.T) {
	var sb strings.Builder
	_, err := parseConfig([]string{"--help"}, func(string) string { return "" }, &sb)
	if err == nil {
		t.Fatal("--help should stop parsing")
	}
	for _, want := range []string{"--seeds", "RINGTRAIN_SEEDS", "--secret-file", "--local", "--summary-json", "--metrics-addr", "--resume", "--insecure"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("--help lacks %s", want)
		}
	}
}
