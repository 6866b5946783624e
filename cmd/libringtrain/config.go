package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ringtrain/ringtrain/node"
)

// settings is what rt_init is told: a JSON object whose keys are the
// trainer's flag names (node.Keys: seeds, listen, advertise, quic-listen,
// quic-advertise, node-id, secret, secret-file, insecure, min-peers,
// chunk-bytes, op-timeout, fingerprint, state-file, transport, lanes), read by node.ConfigFromMap like
// the trainer's flags, plus the binding's own keys.
type settings struct {
	Node     node.Config
	Wire     string // wire-dtype: the wire format of fp32 all-reduces
	LogLevel string // log-level: debug, info, warn (default), error
	// GoThreads (go-threads) sets GOMAXPROCS for the Go runtime in the
	// host process; 0 leaves Go's default (one per CPU). Several workers
	// on one host each run a Go runtime beside their framework's compute
	// threads: with one P per CPU each runtime's idle Ps spin looking for
	// work and take CPU from the compute. The Python binding sets
	// cpus / LOCAL_WORLD_SIZE when torchrun or ringtrain.launch says how
	// many workers share the host.
	GoThreads int
}

// parseSettings reads the JSON object; values may be strings, numbers or
// booleans. Unknown keys are an error, so a typo never silently falls back
// to a default.
func parseSettings(js []byte) (settings, error) {
	s := settings{Wire: "fp32", LogLevel: "warn"}
	var raw map[string]any
	if len(strings.TrimSpace(string(js))) > 0 {
		if err := json.Unmarshal(js, &raw); err != nil {
			return s, fmt.Errorf("config: not a JSON object: %w", err)
		}
	}
	kv := map[string]string{}
	var errs []error
	for k, v := range raw {
		str := ""
		switch x := v.(type) {
		case string:
			str = x
		case float64:
			str = strconv.FormatFloat(x, 'f', -1, 64)
		case bool:
			str = strconv.FormatBool(x)
		case nil:
			continue
		default:
			errs = append(errs, fmt.Errorf("config: %s: want a string, number or boolean, got %T", k, v))
			continue
		}
		k = strings.ReplaceAll(k, "_", "-")
		switch k {
		case "wire-dtype":
			if _, err := parseDType(str); err != nil {
				errs = append(errs, fmt.Errorf("config: wire-dtype=%q: %w", str, err))
			}
			s.Wire = str
		case "log-level":
			switch str {
			case "debug", "info", "warn", "error":
			default:
				errs = append(errs, fmt.Errorf("config: log-level=%q: want debug, info, warn or error", str))
			}
			s.LogLevel = str
		case "go-threads":
			n, err := strconv.Atoi(str)
			if err != nil || n < 0 || n > 1024 {
				errs = append(errs, fmt.Errorf("config: go-threads=%q: want a whole number from 0 (Go's default) to 1024", str))
			}
			s.GoThreads = n
		case "op-timeout":
			// Python users pass seconds as a number; node wants a duration.
			if f, err := strconv.ParseFloat(str, 64); err == nil {
				str = strconv.FormatFloat(f, 'f', -1, 64) + "s"
			}
			kv[k] = str
		default:
			kv[k] = str
		}
	}
	cfg, err := node.ConfigFromMap(kv)
	if err != nil {
		errs = append(errs, fmt.Errorf("config: %w", err))
	}
	s.Node = cfg
	return s, errors.Join(errs...)
}
